"""Messages: sending a failed one again."""


from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..models import (
    Message,
    StepLog,
)
from ..queue import enqueue

RESENDABLE = (Message.Status.FAILED, Message.Status.UNDELIVERABLE)


@transaction.atomic
def message_resend(*, message: Message, by: str = "") -> bool:
    """Queue a failed (or undeliverable) message again, as a new send: its `send_number` goes
    up by one and its `attempts` back to 0, and delivery reads only the new send's
    DeliveryAttempts (delivery/batch.py), so every provider, and every push device set, gets a
    fresh chance; the earlier attempts stay in the ledger, under their own send. A `queued`
    timeline entry says so (`resent`, the new `send_number`, and `by`, who resent it, when
    given). Returns False (and changes nothing) when the message is not failed any more, so
    two people resending at once send it once."""
    now = timezone.now()
    queued = Message.objects.filter(pk=message.pk, status__in=RESENDABLE).update(
        status=Message.Status.QUEUED, attempts=0, send_number=F("send_number") + 1,
        next_attempt_at=None, error="", updated_at=now)
    if not queued:
        return False
    run_id, step_ref, send_number = Message.objects.filter(pk=message.pk).values_list(
        "run_id", "step_ref", "send_number").get()
    detail = {"message_id": str(message.pk), "resent": True, "send_number": send_number}
    if by:
        detail["by"] = by
    StepLog.objects.create(run_id=run_id, step_ref=step_ref, event=StepLog.Event.QUEUED,
                           detail=detail)
    enqueue("notifications.tasks.deliver_message", str(message.pk))
    return True
