"""`manage.py inbox_hmac <recipient id> [--tenant <key>]`: the HMAC a browser presents for that
recipient, with the tenant's current inbox secret or the global one."""

from django.core.management.base import BaseCommand, CommandError

from inbox.auth import inbox_hmac
from notifications.models import Tenant


class Command(BaseCommand):
    help = ("Print HMAC-SHA256(inbox secret, recipient id), hex: the widget's `hmac`. With "
            "--tenant, the tenant's current inbox secret; else INBOX_HMAC_SECRET (items without "
            "a tenant).")

    def add_arguments(self, parser):
        parser.add_argument("recipient_id")
        parser.add_argument("--tenant", help="a tenant key")

    def handle(self, *args, recipient_id, tenant=None, **options):
        secret = None
        if tenant:
            found = Tenant.objects.filter(key=tenant).first()
            if found is None:
                raise CommandError(f"No tenant '{tenant}'.")
            secret = found.inbox_secrets.get("current")
            if not secret:
                raise CommandError(f"Tenant '{tenant}' has no inbox secret yet: rotate one in "
                                   "the admin or with POST /api/v1/tenants/{key}/inbox-secret.")
        self.stdout.write(inbox_hmac(recipient_id, secret))
