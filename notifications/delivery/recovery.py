"""After a crash: a worker killed between a provider call and its write of the outcome leaves a
message in `sending` with a `started` attempt. The sweeper (tasks.sweep) finds it and asks here
what became of it."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from ..models import DeliveryAttempt, Message, StepLog
from ..providers import registry
from ..queue import enqueue
from .batch import Delivery, _finish


def _supports_idempotency(kind: str) -> bool:
    try:
        return registry.get(kind).supports_idempotency
    except KeyError:
        return False


def message_mark_sent_from_ledger(message: Message, attempt: DeliveryAttempt) -> None:
    """A worker stopped after a provider accepted the message but before the message was marked
    sent (a batch's later failover round was running): the ledger says it was accepted, so it is
    sent, with the provider's id, and never sent again."""
    d = Delivery(message, [])
    d.outcome = ("sent", attempt.provider, str((attempt.response or {}).get("message_id") or ""))
    _finish([d], timezone.now())


def message_mark_outcome_unknown(message: Message) -> None:
    """A worker stopped during a provider call: we cannot know whether it was accepted.

    Where the provider de-duplicates on the message's idempotency key (the signed webhook), the
    message is queued again and the same key makes a second call harmless. Anywhere else it is
    not sent again (a second send would risk a duplicate): it is marked failed with the reason,
    so support sees it on the run's timeline.
    """
    now = timezone.now()
    started = list(message.delivery_attempts.filter(outcome=DeliveryAttempt.Outcome.STARTED))
    DeliveryAttempt.objects.filter(pk__in=[a.pk for a in started]).update(
        outcome=DeliveryAttempt.Outcome.UNKNOWN,
        error="The worker stopped before the provider answered.")
    last = started[-1] if started else None
    if last is not None and _supports_idempotency(last.provider_kind):
        with transaction.atomic():
            requeued = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING) \
                .update(status=Message.Status.QUEUED, next_attempt_at=None, updated_at=now,
                        error="Outcome unknown (worker stopped); sent again with the same "
                              "idempotency key.")
            if requeued:
                StepLog.objects.create(
                    run_id=message.run_id, step_ref=message.step_ref,
                    event=StepLog.Event.RETRYING,
                    detail={"message_id": str(message.id), "provider": last.provider,
                            "reason": "outcome unknown; the provider de-duplicates on the "
                                      "idempotency key"})
                enqueue("notifications.tasks.deliver_message", str(message.id))
        return
    message.provider = last.provider if last is not None else message.provider
    d = Delivery(message, [], last_provider=message.provider,
                 last_error="Delivery outcome unknown: the worker stopped during the "
                            "provider call.")
    d.outcome = ("failed", message.provider, "")
    _finish([d], now)
