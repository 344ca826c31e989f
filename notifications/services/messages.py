"""Messages: sending a failed one again."""


from django.db import transaction
from django.utils import timezone

from ..models import (
    Message,
)
from ..queue import enqueue

RESENDABLE = (Message.Status.FAILED, Message.Status.UNDELIVERABLE)


@transaction.atomic
def message_resend(*, message: Message) -> bool:
    """Queue a failed (or undeliverable) message again, through the same delivery as its first
    send: every provider may be tried again, with a fresh count of attempts; the earlier
    attempts stay in the ledger. Returns False (and changes nothing) when the message is not
    failed any more, so two people resending at once send it once."""
    queued = Message.objects.filter(pk=message.pk, status__in=RESENDABLE).update(
        status=Message.Status.QUEUED, attempts=0, next_attempt_at=None, error="",
        updated_at=timezone.now())
    if queued:
        enqueue("notifications.tasks.deliver_message", str(message.pk))
    return bool(queued)
