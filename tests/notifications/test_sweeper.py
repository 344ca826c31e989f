"""The sweeper re-enqueues what is due or stuck, and never re-sends an unknown outcome."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.signing import SignedPackage

from notifications.models import DeliveryAttempt, IdempotencyRecord, Message, Run, StepLog
from notifications.services import TriggerRequest, api_key_create, trigger_workflow
from notifications.tasks import advance_run, sweep

from ..conftest import delay_step, email_step


def queued_tasks() -> list[tuple[str, tuple]]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [(task["func"], tuple(task["args"])) for task in tasks]


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
    log = StepLog.objects.filter(run=run, event=StepLog.Event.RETRYING).get()  # on the timeline
    assert log.detail["message_id"] == str(message.id) and "sweeper" in log.detail["reason"]


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


@pytest.mark.django_db(transaction=True)
def test_one_sweep_finishes_with_stuck_runs_due_messages_and_stuck_sends_all_at_once(
        make_workflow):
    """Outside a transaction (as the scheduler runs it) with CONN_MAX_AGE=0: django-q2's ORM
    broker closes old connections on each enqueue, which on PostgreSQL closed the connection
    under the sweeper's open server-side cursor ("the connection is closed") and skipped the
    rest of the sweep. The suite runs this on PostgreSQL when DATABASE_URL names one."""
    from notifications.models import Trigger

    workflow = make_workflow("w", steps=[email_step()])
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[
        {"id": f"u{n}", "email": f"u{n}@example.com"} for n in range(6)]))
    stuck_runs, queued, sending, recovered = runs[:2], runs[2:4], runs[4], runs[5]
    for run in [*queued, sending, recovered]:
        advance_run(str(run.id))
    messages = {run.id: Message.objects.get(run=run) for run in [*queued, sending, recovered]}
    Message.objects.filter(pk=messages[sending.id].pk).update(status=Message.Status.SENDING)
    Message.objects.filter(pk=messages[recovered.id].pk).update(status=Message.Status.SENDING)
    DeliveryAttempt.objects.create(message=messages[recovered.id], provider="smtp",
                                   started_at=timezone.now(),
                                   outcome=DeliveryAttempt.Outcome.SUCCEEDED)
    key, _ = api_key_create(name="k")
    IdempotencyRecord.objects.create(api_key=key, key="old", request_hash="x")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    Trigger.objects.update(fanout=Trigger.Fanout.PENDING)  # a stalled fan-out too
    OrmQ.objects.all().delete()  # every task was lost

    counts = sweep(now=timezone.now() + timedelta(minutes=5))

    assert counts == {"runs": 2, "messages": 3, "unknown": 0, "recovered": 1, "fanouts": 1,
                      "schedules": 0, "counters": 0,
                      "failed_parts": []}
    assert sorted(queued_tasks()) == sorted(
        [("notifications.tasks.fanout_trigger", (str(runs[0].trigger_id),))]
        + [("notifications.tasks.advance_run", (str(run.id),)) for run in stuck_runs]
        + [("notifications.tasks.deliver_message", (str(messages[run.id].id),))
           for run in [*queued, sending]])
    assert Message.objects.get(pk=messages[sending.id].pk).status == Message.Status.QUEUED
    assert Message.objects.get(pk=messages[recovered.id].pk).status == Message.Status.SENT
    assert not IdempotencyRecord.objects.exists()


def test_a_failing_part_of_the_sweep_is_logged_and_the_other_parts_still_run(
        run_of, monkeypatch, caplog):
    from notifications import delivery

    def broken(message, attempt):
        raise RuntimeError("the ledger cannot be read")

    run = run_of(email_step())
    advance_run(str(run.id))
    message = Message.objects.get()
    other = Message.objects.create(run=run, step_ref="second", recipient=message.recipient,
                                   workflow=message.workflow, channel="email",
                                   status=Message.Status.SENDING, attempts=1)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING)
    DeliveryAttempt.objects.create(message=message, provider="smtp", started_at=timezone.now(),
                                   outcome=DeliveryAttempt.Outcome.SUCCEEDED)
    key, _ = api_key_create(name="k")
    IdempotencyRecord.objects.create(api_key=key, key="old", request_hash="x")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=25))
    OrmQ.objects.all().delete()
    monkeypatch.setattr(delivery, "message_mark_sent_from_ledger", broken)

    counts = sweep(now=timezone.now() + timedelta(minutes=5))

    assert counts["failed_parts"] == ["sending"]
    assert counts["messages"] == 1  # the other stuck message went back to the queue
    assert Message.objects.get(pk=other.pk).status == Message.Status.QUEUED
    assert Message.objects.get(pk=message.pk).status == Message.Status.SENDING  # rolled back
    assert queued_tasks() == [("notifications.tasks.deliver_message", (str(other.id),))]
    assert not IdempotencyRecord.objects.exists()  # the part after it ran
    assert f"could not handle message {message.id} stuck in sending" in caplog.text
    assert "The sweeper's 'sending' part failed; its other parts go on." in caplog.text
