"""The sweeper re-enqueues what is due or stuck, and never re-sends an unknown outcome."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from notifications.models import DeliveryAttempt, IdempotencyRecord, Message, Run
from notifications.services import TriggerRequest, api_key_create, trigger_workflow
from notifications.tasks import advance_run, sweep

from ..conftest import delay_step, email_step


def queued_tasks() -> list[tuple[str, tuple]]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [(task["func"], tuple(task["args"])) for task in tasks]


@pytest.fixture
def run_of(make_workflow):
    def make(*steps):
        workflow = make_workflow("w", steps=list(steps))
        _, runs = trigger_workflow(TriggerRequest(
            workflow=workflow, recipients=[{"id": "u1", "email": "ada@example.com"}]))
        return runs[0]

    return make


def test_sweeper_schedule_is_installed_by_migration(db):
    schedule = Schedule.objects.get(name="clarion.sweep")
    assert (schedule.func, schedule.schedule_type, schedule.minutes) == (
        "notifications.tasks.sweep", Schedule.MINUTES, 1)


def test_wakes_waiting_runs_that_are_due(run_of):
    run = run_of(delay_step(seconds=30), email_step())
    advance_run(str(run.id))
    OrmQ.objects.all().delete()
    run.refresh_from_db()
    assert sweep(now=run.wake_at - timedelta(seconds=1))["runs"] == 0
    assert sweep(now=run.wake_at + timedelta(seconds=1))["runs"] == 1
    assert queued_tasks() == [("notifications.tasks.advance_run", (str(run.id),))]


def test_re_enqueues_running_runs_whose_task_was_lost(run_of):
    run = run_of(email_step())
    OrmQ.objects.all().delete()  # the broker lost it
    assert sweep(now=timezone.now())["runs"] == 0  # not stuck yet
    assert sweep(now=timezone.now() + timedelta(minutes=5))["runs"] == 1
    assert queued_tasks() == [("notifications.tasks.advance_run", (str(run.id),))]


def test_re_enqueues_queued_messages_never_picked_up(run_of):
    run = run_of(email_step())
    advance_run(str(run.id))
    OrmQ.objects.all().delete()
    message = Message.objects.get()
    assert sweep(now=timezone.now() + timedelta(minutes=5))["messages"] == 1
    assert queued_tasks() == [("notifications.tasks.deliver_message", (str(message.id),))]


def test_message_stuck_sending_before_any_provider_call_is_requeued(run_of):
    run = run_of(email_step())
    advance_run(str(run.id))
    OrmQ.objects.all().delete()
    message = Message.objects.get()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1)
    sweep(now=timezone.now() + timedelta(minutes=5))
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.QUEUED, 0)
    assert queued_tasks() == [("notifications.tasks.deliver_message", (str(message.id),))]


def test_message_stuck_mid_provider_call_is_failed_not_resent(run_of):
    run = run_of(email_step())
    advance_run(str(run.id))
    OrmQ.objects.all().delete()
    message = Message.objects.get()
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1)
    DeliveryAttempt.objects.create(message=message, provider="smtp", started_at=timezone.now())
    counts = sweep(now=timezone.now() + timedelta(minutes=5))
    assert counts["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == ("Delivery outcome unknown: the worker stopped during the provider "
                             "call.")
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.UNKNOWN
    assert queued_tasks() == []
    assert Run.objects.get(pk=run.pk).step_logs.last().event == "failed"


def test_expires_idempotency_records_after_a_day(db):
    key, _ = api_key_create(name="k")
    old = IdempotencyRecord.objects.create(api_key=key, key="a", request_hash="x")
    IdempotencyRecord.objects.filter(pk=old.pk).update(
        created_at=timezone.now() - timedelta(hours=25))
    IdempotencyRecord.objects.create(api_key=key, key="b", request_hash="x")
    sweep()
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["b"]


def test_re_enqueues_a_topic_fanout_that_did_not_finish(db, make_workflow):
    from notifications.models import Recipient, Topic, Trigger
    from notifications.services import topic_subscribe

    topic = Topic.objects.create(key="t")
    topic_subscribe(topic=topic, recipients=[Recipient.objects.create(external_id="s1")])
    workflow = make_workflow("w", steps=[email_step()])
    trigger, _ = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{"topic": "t"}]))
    OrmQ.objects.all().delete()  # the fan-out task was lost
    assert sweep(now=timezone.now())["fanouts"] == 0
    assert sweep(now=timezone.now() + timedelta(minutes=5))["fanouts"] == 1
    assert queued_tasks() == [("notifications.tasks.fanout_trigger", (str(trigger.id),))]
    Trigger.objects.filter(pk=trigger.pk).update(fanout=Trigger.Fanout.DONE)
    OrmQ.objects.all().delete()
    assert sweep(now=timezone.now() + timedelta(minutes=5))["fanouts"] == 0
