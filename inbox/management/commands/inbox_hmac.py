"""`manage.py inbox_hmac <recipient id>`: the HMAC a browser presents for that recipient."""

from django.core.management.base import BaseCommand

from inbox.auth import inbox_hmac


class Command(BaseCommand):
    help = "Print HMAC-SHA256(INBOX_HMAC_SECRET, recipient id), hex: the widget's `hmac`."

    def add_arguments(self, parser):
        parser.add_argument("recipient_id")

    def handle(self, *args, recipient_id, **options):
        self.stdout.write(inbox_hmac(recipient_id))
