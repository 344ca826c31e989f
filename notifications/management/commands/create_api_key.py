from django.core.management.base import BaseCommand, CommandError

from notifications.models import Tenant
from notifications.services import api_key_create


class Command(BaseCommand):
    help = "Create a server API key. Its secret is printed once, alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="What the key is for, e.g. 'billing-service'.")
        parser.add_argument("--tenant", help="Restrict the key to this tenant's key.")

    def handle(self, *args, name, tenant=None, **options):
        tenant_obj = None
        if tenant:
            tenant_obj = Tenant.objects.filter(key=tenant).first()
            if tenant_obj is None:
                raise CommandError(f"No tenant {tenant!r}.")
        api_key, secret = api_key_create(name=name, tenant=tenant_obj)
        scope = f" for tenant {tenant}" if tenant else ""
        self.stderr.write(f"Created API key {api_key.prefix}{scope}. Store the secret now; "
                          "it is not shown again.")
        self.stdout.write(secret)
