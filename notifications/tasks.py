"""django-q2 tasks. Thin: take ids, call a service. Each may run twice and must not send twice."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from . import delivery, engine, services
from .models import DeliveryAttempt, IdempotencyRecord, Message, Run, Trigger
from .queue import enqueue


def advance_run(run_id: str) -> None:
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("workflow", "recipient", "tenant", "trigger")
            .filter(pk=run_id)
            .first()
        )
        if run is not None:
            engine.advance(run, now=timezone.now())


def deliver_message(message_id: str) -> None:
    """Deliver this message, and up to DELIVERY_BATCH_SIZE - 1 other due ones concurrently."""
    delivery.deliver_batch(message_id)


def fanout_trigger(trigger_id: str) -> None:
    services.trigger_fanout(trigger_id=trigger_id)


def sweep(now: datetime | None = None) -> dict:
    """Re-enqueue what is due or stuck; runs every minute on the scheduler.

    - waiting runs whose wake-up time has passed;
    - running runs untouched for STUCK_AFTER_SECONDS (their task was lost);
    - queued messages whose retry is due, or that were never picked up;
    - topic fan-outs that did not finish (their task was lost or failed part-way);
    - messages stuck in `sending`: marked sent when their latest provider call succeeded (the
      worker stopped before recording it), re-queued when no provider call started, else of
      unknown outcome (see delivery.message_mark_outcome_unknown: sent again only where the
      provider de-duplicates on the idempotency key);
    - idempotency records past their 24 hours.
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"])
    counts = {"runs": 0, "messages": 0, "unknown": 0, "recovered": 0, "fanouts": 0}

    stalled_fanouts = Trigger.objects.filter(
        fanout=Trigger.Fanout.PENDING, created_at__lt=stuck_before
    ).values_list("id", flat=True)
    for trigger_id in stalled_fanouts.iterator():
        enqueue("notifications.tasks.fanout_trigger", str(trigger_id))
        counts["fanouts"] += 1

    due_runs = Run.objects.filter(
        Q(status=Run.Status.WAITING, wake_at__lte=now)
        | Q(status=Run.Status.RUNNING, updated_at__lt=stuck_before)
    ).values_list("id", flat=True)
    for run_id in due_runs.iterator():
        enqueue("notifications.tasks.advance_run", str(run_id))
        counts["runs"] += 1

    due_messages = Message.objects.filter(
        Q(status=Message.Status.QUEUED, next_attempt_at__lte=now)
        | Q(status=Message.Status.QUEUED, next_attempt_at__isnull=True,
            updated_at__lt=stuck_before)
    ).values_list("id", flat=True)
    for message_id in due_messages.iterator():
        enqueue("notifications.tasks.deliver_message", str(message_id))
        counts["messages"] += 1

    stuck_sending = Message.objects.filter(
        status=Message.Status.SENDING, updated_at__lt=stuck_before
    ).select_related("run")
    for message in stuck_sending:
        latest = message.delivery_attempts.order_by("-started_at", "-id").first()
        started = message.delivery_attempts.filter(
            outcome=DeliveryAttempt.Outcome.STARTED
        ).exists()
        if latest is not None and latest.outcome == DeliveryAttempt.Outcome.SUCCEEDED:
            delivery.message_mark_sent_from_ledger(message, latest)  # accepted: never again
            counts["recovered"] += 1
        elif started:
            delivery.message_mark_outcome_unknown(message)
            counts["unknown"] += 1
        elif Message.objects.filter(pk=message.pk, status=Message.Status.SENDING).update(
            status=Message.Status.QUEUED, attempts=max(message.attempts - 1, 0), updated_at=now
        ):
            enqueue("notifications.tasks.deliver_message", str(message.pk))
            counts["messages"] += 1

    ttl = timedelta(seconds=settings.CLARION["IDEMPOTENCY_TTL_SECONDS"])
    IdempotencyRecord.objects.filter(created_at__lt=now - ttl).delete()
    return counts
