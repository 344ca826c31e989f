"""The sweeper's decisions about a message stuck in `sending` are made on what it read; by the
time it acts, the message may have moved on (another sweep queued it again and a worker claimed
it, or it failed, was resent and claimed). The sweeper then leaves it to the worker that holds
it: acting on the stale read would queue a message a worker is sending (a second send) or fail
one that is being delivered (and a resend of it would be a second send)."""

from datetime import timedelta

from django.db.models import F
from django.utils import timezone
from django_q.models import OrmQ

from notifications import delivery, tasks
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.services import message_resend
from notifications.tasks import advance_run

from ..conftest import email_step, queued_tasks


def claim(message: Message, now) -> None:
    """What a worker's claim writes (delivery/claim.py): queued -> sending, one more attempt."""
    assert Message.objects.filter(pk=message.pk, status=Message.Status.QUEUED).update(
        status=Message.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)


def stuck_mid_call(run, kind: str) -> Message:
    """The run's message in `sending` with a call of `kind` on the wire, 5 minutes ago."""
    advance_run(str(run.id))
    OrmQ.objects.all().delete()
    message = Message.objects.get()
    then = timezone.now() - timedelta(minutes=5)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1,
                                                 updated_at=then)
    DeliveryAttempt.objects.create(message=message, provider=kind, provider_kind=kind,
                                   started_at=then, send_number=message.send_number)
    return Message.objects.get(pk=message.pk)


def test_a_requeue_decided_before_a_resend_does_not_queue_the_resent_send_again(run_of):
    """The webhook de-duplicates on its key, so a cut-short call is queued again; but the
    message was failed, resent and claimed (a worker is sending send 2) after the sweeper read
    it: the sweeper's requeue must not hand send 2 to a second worker."""
    run = run_of(email_step())
    read = stuck_mid_call(run, "webhook")  # what the sweeper read
    Message.objects.filter(pk=read.pk).update(status=Message.Status.FAILED)
    assert message_resend(message=read)
    OrmQ.objects.all().delete()
    claim(read, timezone.now())

    delivery.message_mark_outcome_unknown(read, now=timezone.now())

    message = Message.objects.get(pk=read.pk)
    assert (message.status, message.send_number) == (Message.Status.SENDING, 2)
    assert queued_tasks("notifications.tasks.deliver_message") == []
    assert not StepLog.objects.filter(event=StepLog.Event.RETRYING).exists()


def test_a_message_claimed_again_since_it_was_found_stuck_is_left_to_its_worker(run_of):
    """Found stuck, then queued again (by an earlier sweep) and claimed by a worker whose call
    is on the wire: the sweeper must not fail it as of unknown outcome."""
    run = run_of(email_step())
    found = stuck_mid_call(run, "smtp")
    DeliveryAttempt.objects.filter(message=found).update(
        outcome=DeliveryAttempt.Outcome.UNKNOWN)  # the earlier sweep's verdict on the first call
    Message.objects.filter(pk=found.pk).update(status=Message.Status.QUEUED)
    now = timezone.now()
    claim(found, now)
    DeliveryAttempt.objects.create(message=found, provider="smtp", provider_kind="smtp",
                                   started_at=now, send_number=found.send_number)

    assert tasks._sweep_one_sending(found.pk, now + timedelta(seconds=1)) == {}

    message = Message.objects.get(pk=found.pk)
    assert message.status == Message.Status.SENDING
    assert message.delivery_attempts.filter(outcome=DeliveryAttempt.Outcome.STARTED).count() == 1
