"""The engine walks runs: conditions, delays, rendering, and re-runs that never send twice."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django_q.models import OrmQ

from inbox.models import InboxItem
from notifications import engine
from notifications.models import Message, Run, StepLog
from notifications.services import (
    StepSpec,
    TriggerRequest,
    recipient_upsert,
    tenant_upsert,
    trigger_workflow,
)
from notifications.tasks import advance_run, deliver_message

from ..conftest import advance_at as advance
from ..conftest import delay_step, email_step, in_app_step, queued_tasks
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROFILE = {"id": "u1", "name": "Ada", "email": "ada@example.com"}


@pytest.fixture
def trigger(db):
    """trigger(workflow, recipient=PROFILE, **request fields) → the recipient's Run."""

    def make(workflow, recipient=None, **fields):
        _, runs = trigger_workflow(
            TriggerRequest(workflow=workflow, recipients=[recipient or dict(PROFILE)], **fields)
        )
        OrmQ.objects.all().delete()  # tests drive the engine themselves
        return runs[0]

    return make




def test_steps_run_in_order_and_every_decision_is_logged(make_workflow, trigger):
    workflow = make_workflow("w", steps=[in_app_step(), email_step()])
    run = advance(trigger(workflow), T0)
    assert run.status == Run.Status.COMPLETED
    assert run.cursor == 2
    assert events(run) == [("", "triggered"), ("inbox", "sent"), ("mail", "queued"),
                           ("", "completed")]
    item = InboxItem.objects.get()
    assert item.content == {"body": "Hi Ada"}
    assert item.message.status == Message.Status.SENT
    email = Message.objects.get(channel="email")
    assert email.status == Message.Status.QUEUED
    assert email.content["subject"] == "Hello Ada"
    assert email.template_version.number == 1
    assert OrmQ.objects.count() == 1  # deliver_message, committed with the run's progress


def test_false_condition_skips_the_step_and_the_run_goes_on(make_workflow, trigger):
    pro_only = {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}
    workflow = make_workflow("w", steps=[email_step(conditions=pro_only), in_app_step()])
    run = advance(trigger(workflow, data={"plan": "free"}), T0)
    assert events(run) == [("", "triggered"), ("mail", "condition_false"), ("inbox", "sent"),
                           ("", "completed")]
    log = run.step_logs.get(event="condition_false")
    assert log.detail == {"conditions": [
        {"path": "data.plan", "op": "eq", "value": "pro", "actual": "free", "held": False}
    ]}
    assert not Message.objects.filter(channel="email").exists()


def test_conditions_see_recipient_tenant_and_actor(make_workflow, trigger):
    tenant, _ = tenant_upsert(key="acme", name="Acme")
    recipient_upsert(external_id="boss", name="Grace")
    cond = {"all": [
        {"path": "recipient.data.vip", "op": "eq", "value": True},
        {"path": "tenant.key", "op": "eq", "value": "acme"},
        {"path": "actor.name", "op": "eq", "value": "Grace"},
    ]}
    workflow = make_workflow("w", steps=[in_app_step(conditions=cond)])
    vip = {**PROFILE, "data": {"vip": True}}
    run = advance(trigger(workflow, recipient=vip, tenant=tenant, actor="boss"), T0)
    assert ("inbox", "sent") in events(run)
    other = advance(trigger(workflow, recipient={"id": "u2", "data": {"vip": True}},
                            actor="boss"), T0)
    assert ("inbox", "condition_false") in events(other)  # no tenant


def test_delay_parks_the_run_and_resumes_when_due(make_workflow, trigger):
    workflow = make_workflow("w", steps=[in_app_step("first"), delay_step(seconds=60),
                                         in_app_step("second")])
    run = advance(trigger(workflow), T0)
    assert run.status == Run.Status.WAITING
    assert run.cursor == 1
    assert run.wake_at == T0 + timedelta(seconds=60)
    assert events(run)[-1] == ("wait", "delayed")
    assert queued_tasks("notifications.tasks.advance_run")[-1] == (
        (str(run.id),), T0 + timedelta(seconds=60))

    early = advance(run, T0 + timedelta(seconds=30))
    assert early.status == Run.Status.WAITING
    assert len(events(early)) == len(events(run))  # an early wake-up decides nothing

    done = advance(run, T0 + timedelta(seconds=61))
    assert done.status == Run.Status.COMPLETED
    assert events(done)[-3:] == [("wait", "resumed"), ("second", "sent"), ("", "completed")]
    assert InboxItem.objects.count() == 2


def test_delay_sums_units(make_workflow, trigger):
    workflow = make_workflow("w", steps=[delay_step(days=1, hours=2, minutes=3, seconds=4),
                                         in_app_step()])
    run = advance(trigger(workflow), T0)
    assert run.wake_at == T0 + timedelta(days=1, hours=2, minutes=3, seconds=4)


def test_delay_until_a_timestamp_from_data(make_workflow, trigger):
    workflow = make_workflow("w", steps=[delay_step(until="data.remind_at"), in_app_step()])
    run = advance(trigger(workflow, data={"remind_at": "2026-03-02T09:30:00+01:00"}), T0)
    assert run.status == Run.Status.WAITING
    assert run.wake_at == datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    assert run.step_logs.get(event="delayed").detail == {"until": "2026-03-02T08:30:00+00:00"}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "data.remind_at is not an ISO 8601 timestamp: None"),
        ({"remind_at": "next tuesday"}, "data.remind_at is not an ISO 8601 timestamp: "
                                        "'next tuesday'"),
        ({"remind_at": "2020-01-01T00:00:00Z"}, "the delay has already passed"),
        # Beyond what a datetime holds once moved to UTC: was an OverflowError, the run stuck.
        ({"remind_at": "0001-01-01T00:00:00+14:00"}, "data.remind_at is not an ISO 8601 "
                                                     "timestamp: '0001-01-01T00:00:00+14:00'"),
    ],
)
def test_delay_until_a_missing_bad_or_past_timestamp_goes_straight_on(make_workflow, trigger,
                                                                      data, reason):
    workflow = make_workflow("w", steps=[delay_step(until="data.remind_at"), in_app_step()])
    run = advance(trigger(workflow, data=data), T0)
    assert run.status == Run.Status.COMPLETED
    assert run.step_logs.get(event="skipped").detail["reason"] == reason
    assert InboxItem.objects.count() == 1


def test_running_a_task_twice_never_sends_twice(make_workflow, trigger, smtp):
    workflow = make_workflow("w", steps=[in_app_step(), email_step()])
    run = trigger(workflow)
    advance_run(str(run.id))
    advance_run(str(run.id))  # redelivered task
    assert Message.objects.count() == 2
    assert InboxItem.objects.count() == 1
    email = Message.objects.get(channel="email")
    deliver_message(str(email.id))
    deliver_message(str(email.id))  # redelivered task
    mails = smtp.wait_for(1)
    email.refresh_from_db()
    assert email.status == Message.Status.SENT
    assert email.delivery_attempts.count() == 1
    assert len(mails) == 1
    assert mails[0]["Message-ID"] == email.provider_message_id
    assert [e for e in events(Run.objects.get(pk=run.pk)) if e[1] == "sent"] == [
        ("inbox", "sent"), ("mail", "sent")]


def test_a_run_rewound_after_its_message_exists_does_not_create_another(make_workflow, trigger):
    """A worker killed after the message row committed but before moving on: no duplicate."""
    workflow = make_workflow("w", steps=[email_step()])
    run = advance(trigger(workflow), T0)
    Run.objects.filter(pk=run.pk).update(cursor=0, status=Run.Status.RUNNING)
    run = advance(run, T0)
    assert Message.objects.count() == 1
    assert run.status == Run.Status.COMPLETED


def test_html_is_escaped_and_text_part_generated(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step(html="<p>{{ data.body }}</p>")])
    advance(trigger(workflow, data={"body": "<script>alert(1)</script>"}), T0)
    content = Message.objects.get().content
    assert content["html"] == "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"
    assert content["text"] == "<script>alert(1)</script>"


def test_a_template_error_fails_that_message_and_the_run_goes_on(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step(subject="{{ data.x | nosuchfilter }}"),
                                         in_app_step()])
    run = advance(trigger(workflow), T0)
    message = Message.objects.get(channel="email")
    assert message.status == Message.Status.FAILED
    assert "template error in subject" in message.error
    assert "nosuchfilter" in message.error
    assert events(run)[1:] == [("mail", "failed"), ("inbox", "sent"), ("", "completed")]


def test_recipient_without_email_is_undeliverable(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step()])
    run = advance(trigger(workflow, recipient={"id": "no-mail"}), T0)
    message = Message.objects.get()
    assert message.status == Message.Status.UNDELIVERABLE
    assert run.step_logs.get(event="skipped").detail == {
        "reason": "the recipient has no email address"}


@pytest.mark.parametrize(("locale", "expected"),
                         [("pt-BR", "Olá"), ("pt", "Olá"), ("de", "Hello"), ("", "Hello")])
def test_locale_falls_back_to_language_then_workflow_default(make_workflow, trigger, locale,
                                                             expected):
    step = StepSpec(ref="inbox", type="in_app",
                    templates={"en": {"body": "Hello"}, "pt": {"body": "Olá"}})
    workflow = make_workflow("w", steps=[step])
    advance(trigger(workflow, recipient={"id": "u", "locale": locale}), T0)
    assert InboxItem.objects.get().content["body"] == expected


def test_cancelled_or_completed_runs_do_nothing(make_workflow, trigger):
    workflow = make_workflow("w", steps=[in_app_step()])
    run = trigger(workflow)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.CANCELLED)
    run = advance(run, T0)
    assert events(run) == [("", "triggered")]
    assert not InboxItem.objects.exists()


def test_tasks_enqueued_in_a_rolled_back_transaction_vanish(make_workflow):
    """With the ORM broker a task is a row of the trigger's own transaction (an outbox)."""
    workflow = make_workflow("w", steps=[in_app_step()])
    with pytest.raises(RuntimeError), transaction.atomic():
        trigger_workflow(TriggerRequest(workflow=workflow, recipients=["u1"]))
        assert OrmQ.objects.count() == 1
        raise RuntimeError
    assert OrmQ.objects.count() == 0
    assert not Run.objects.exists()


def test_supported_step_types_are_the_ones_the_engine_runs():
    assert {str(t) for t in engine.SUPPORTED_STEP_TYPES} == {
        "email", "in_app", "delay", "sms", "push", "chat", "whatsapp", "webhook", "throttle",
        "digest", "branch", "route", "approval"}


def test_unsupported_step_in_the_database_is_skipped_not_crashed(make_workflow, trigger):
    workflow = make_workflow("w", steps=[in_app_step()])
    workflow.steps.create(ref="later", type="fax", position=5)
    run = advance(trigger(workflow), T0)
    assert run.status == Run.Status.COMPLETED
    assert run.step_logs.get(event=StepLog.Event.SKIPPED).detail == {
        "reason": "step type 'fax' is not supported"}


def test_a_waiting_run_resumes_at_its_step_after_the_workflow_is_edited(make_workflow, trigger):
    steps = [in_app_step("first"), delay_step(seconds=60), in_app_step("second")]
    workflow = make_workflow("w", steps=steps)
    run = advance(trigger(workflow), T0)
    # Two steps inserted before the one the run waits at.
    make_workflow("w", steps=[in_app_step("new-a"), in_app_step("new-b"), *steps])
    run = advance(run, T0 + timedelta(seconds=61))
    assert events(run)[-3:] == [("wait", "resumed"), ("second", "sent"), ("", "completed")]
    assert not InboxItem.objects.filter(content__body="Hi Ada", message__step_ref="new-a")


def test_a_waiting_run_whose_step_was_removed_goes_on(make_workflow, trigger):
    workflow = make_workflow("w", steps=[delay_step(seconds=60), delay_step("later", seconds=5),
                                         in_app_step()])
    run = advance(trigger(workflow), T0)
    make_workflow("w", steps=[delay_step("later", seconds=5), in_app_step()])
    run = advance(run, T0 + timedelta(seconds=61))
    # The removed step is logged; the next delay starts afresh instead of "resuming".
    assert events(run)[-2:] == [("wait", "skipped"), ("later", "delayed")]
    assert run.wake_at == T0 + timedelta(seconds=66)


@pytest.mark.parametrize("delay", [{"days": 1e300}, {"days": 99999999}, {"seconds": 10**19}])
def test_a_delay_longer_than_ten_years_is_refused_naming_the_step(api, delay):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "wait", "type": "delay", "config": delay}]})
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {"steps[0].config": ["A delay is at most 3660 days."]}


def test_a_delay_stored_beyond_the_calendar_goes_straight_on(make_workflow, trigger):
    workflow = make_workflow("w", steps=[delay_step(seconds=1), in_app_step()])
    workflow.steps.filter(type="delay").update(config={"days": 99999999})
    run = advance(trigger(workflow), T0)
    assert run.status == Run.Status.COMPLETED
    assert run.step_logs.get(event="skipped").detail["reason"] == (
        "A delay of 8639999913600 seconds ends beyond the year 9999.")
