"""The engine asks preferences before every channel step: opt-outs and quiet hours."""

from datetime import UTC, datetime, timedelta

import pytest
from django_q.models import OrmQ

from inbox.models import InboxItem
from notifications.models import Message, Recipient, Run, Step, StepLog
from notifications.services import TriggerRequest, tenant_upsert, trigger_workflow
from preferences.models import WorkflowDefault
from preferences.selectors import allowed
from preferences.services import preference_set_update

from ..conftest import advance_at as advance
from ..conftest import delay_step, email_step, in_app_step, queued_tasks
from ..conftest import timeline_events as events

T0 = datetime(2026, 6, 10, 16, 0, tzinfo=UTC)  # 12:00 in New York
PROFILE = {"id": "u1", "name": "Ada", "email": "ada@example.com",
           "timezone": "America/New_York"}
NIGHT = {"start": "22:00", "end": "08:00"}


@pytest.fixture
def trigger(db):
    def make(workflow, recipient=None, **fields):
        _, runs = trigger_workflow(
            TriggerRequest(workflow=workflow, recipients=[recipient or dict(PROFILE)], **fields))
        OrmQ.objects.all().delete()  # tests drive the engine themselves
        return runs[0]

    return make




def prefs(recipient_id="u1", tenant=None, **data):
    recipient = Recipient.objects.get(external_id=recipient_id) if recipient_id else None
    return preference_set_update(recipient=recipient, tenant=tenant, data=data, merge=True)


@pytest.fixture
def newsletter(make_workflow):
    return make_workflow("newsletter", category="marketing",
                         steps=[email_step(), in_app_step()])


def test_an_opted_out_step_is_suppressed_with_its_rule_and_the_run_goes_on(newsletter, trigger):
    run = trigger(newsletter)
    prefs(categories={"marketing": {"channel_types": {"email": False}}})
    run = advance(run, T0)
    assert run.status == Run.Status.COMPLETED
    assert events(run) == [("", "triggered"), ("mail", "opted_out"), ("inbox", "sent"),
                           ("", "completed")]
    message = Message.objects.get(channel="email")
    assert message.status == Message.Status.SUPPRESSED
    assert run.step_logs.get(event="opted_out").detail == {
        "rule": "recipient:categories.marketing.channel_types.email", "channel": "email",
        "message_id": str(message.id)}
    assert InboxItem.objects.count() == 1
    assert not OrmQ.objects.exists()  # nothing to deliver


def test_the_gate_is_generic_on_the_channel_step_type(newsletter, trigger):
    """Any channel step asks, including types whose handlers are not built yet (sms)."""
    Step.objects.create(workflow=newsletter, position=5, ref="text", type="sms")
    run = trigger(newsletter)
    prefs(channel_types={"sms": False})
    run = advance(run, T0)
    log = run.step_logs.get(step_ref="text")
    assert (log.event, log.detail["rule"]) == ("opted_out", "recipient:channel_types.sms")


def test_critical_workflow_ignores_email_opt_out_and_urgent_steps_pass_quiet_hours(
        make_workflow, trigger):
    workflow = make_workflow("password-reset", category="account", critical=True,
                             steps=[email_step(urgent=True)])
    run = trigger(workflow)
    prefs(channel_types={"email": False}, categories={"account": False}, quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))  # 23:00 in New York
    assert events(run) == [("", "triggered"), ("mail", "queued"), ("", "completed")]


def test_critical_workflow_step_not_marked_urgent_waits_for_quiet_hours(make_workflow, trigger):
    workflow = make_workflow("security-digest", category="account", critical=True,
                             steps=[email_step()])
    run = trigger(workflow)
    prefs(channel_types={"email": False}, quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))  # 23:00 in New York
    assert events(run) == [("", "triggered"), ("mail", "quiet_hours")]
    run = advance(run, run.wake_at)
    assert events(run)[-3:] == [("mail", "resumed"), ("mail", "queued"), ("", "completed")]


def test_per_tenant_preferences_and_tenant_defaults(newsletter, trigger):
    acme, _ = tenant_upsert(key="acme", name="Acme")
    globex, _ = tenant_upsert(key="globex", name="Globex")
    recipient = trigger(newsletter).recipient
    prefs(recipient_id=None, tenant=acme, categories={"marketing": False})  # acme's default
    prefs(tenant=globex, workflows={"newsletter": {"channel_types": {"email": False}}})
    assert allowed(recipient, newsletter, "email").rule == "default"
    assert allowed(recipient, newsletter, "email", acme).rule == \
        "tenant_default:categories.marketing"
    assert allowed(recipient, newsletter, "email", globex).rule == \
        "recipient_tenant:workflows.newsletter.channel_types.email"
    prefs(channel_types={"email": True})  # their own choice beats acme's default
    decision = allowed(recipient, newsletter, "email", acme)
    assert (decision.allowed, decision.rule) == (True, "recipient:channel_types.email")


def test_a_workflow_default_keeps_a_channel_off_until_the_person_opts_in(newsletter, trigger):
    WorkflowDefault.objects.create(workflow=newsletter, channel_types={"email": False})
    run = advance(trigger(newsletter), T0)
    assert run.step_logs.get(event="opted_out").detail["rule"] == \
        "workflow_default:channel_types.email"
    other = trigger(newsletter, recipient={**PROFILE, "id": "u2"})
    prefs(recipient_id="u2", workflows={"newsletter": {"channel_types": {"email": True}}})
    other = advance(other, T0)
    assert ("mail", "queued") in events(other)


def test_quiet_hours_park_an_email_until_morning_and_in_app_goes_at_once(make_workflow,
                                                                        trigger):
    workflow = make_workflow("w", steps=[in_app_step(), email_step(), in_app_step("after")])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    night = datetime(2026, 6, 11, 3, 0, tzinfo=UTC)  # 23:00 EDT
    morning = datetime(2026, 6, 11, 12, 0, tzinfo=UTC)  # 08:00 EDT
    run = advance(run, night)
    assert run.status == Run.Status.WAITING
    assert run.wake_at == morning
    assert events(run)[-2:] == [("inbox", "sent"), ("mail", "quiet_hours")]
    assert run.step_logs.get(event="quiet_hours").detail == {
        "until": "2026-06-11T12:00:00+00:00", "window": "22:00-08:00", "rule": "recipient",
        "timezone": "America/New_York"}
    assert queued_tasks("notifications.tasks.advance_run")[-1] == ((str(run.id),), morning)
    assert not Message.objects.filter(channel="email").exists()

    assert len(events(advance(run, morning - timedelta(minutes=1)))) == len(events(run))
    run = advance(run, morning)
    assert run.status == Run.Status.COMPLETED
    assert events(run)[-4:] == [("mail", "resumed"), ("mail", "queued"), ("after", "sent"),
                                ("", "completed")]


def test_quiet_hours_across_the_spring_forward_night(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step()])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 3, 8, 4, 0, tzinfo=UTC))  # 23:00 EST, Mar 7
    assert run.wake_at == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 08:00 EDT
    assert advance(run, datetime(2026, 3, 8, 12, 0, tzinfo=UTC)).status == Run.Status.COMPLETED


def test_quiet_hours_across_the_fall_back_night(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step()])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 11, 1, 5, 30, tzinfo=UTC))  # 01:30 EST (second time)
    assert run.wake_at == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST


def test_an_opt_out_made_during_quiet_hours_is_honoured_at_wake_up(make_workflow, trigger):
    workflow = make_workflow("w", category="marketing", steps=[email_step()])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))
    prefs(categories={"marketing": False})
    run = advance(run, datetime(2026, 6, 11, 12, 0, tzinfo=UTC))
    assert events(run)[-3:] == [("mail", "resumed"), ("mail", "opted_out"), ("", "completed")]


def test_a_tenant_default_sets_quiet_hours_and_the_person_may_say_none(make_workflow, trigger):
    acme, _ = tenant_upsert(key="acme", name="Acme")
    workflow = make_workflow("w", steps=[email_step()])
    prefs(recipient_id=None, tenant=acme, quiet_hours=NIGHT)
    night = datetime(2026, 6, 11, 3, 0, tzinfo=UTC)
    run = advance(trigger(workflow, tenant=acme), night)
    assert run.step_logs.get(event="quiet_hours").detail["rule"] == "tenant_default"
    other = trigger(workflow, recipient={**PROFILE, "id": "u2"}, tenant=acme)
    prefs(recipient_id="u2", quiet_hours=False)
    other = advance(other, night)
    assert ("mail", "queued") in events(other)


def test_a_run_waiting_for_quiet_hours_goes_on_if_its_step_was_removed(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step(), in_app_step()])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))
    make_workflow("w", steps=[in_app_step()])
    run = advance(run, datetime(2026, 6, 11, 12, 0, tzinfo=UTC))
    assert run.status == Run.Status.COMPLETED
    assert ("mail", "skipped") in events(run)


def test_a_delay_before_a_channel_step_still_resumes(make_workflow, trigger):
    workflow = make_workflow("w", steps=[delay_step(seconds=60), email_step()])
    run = advance(trigger(workflow), T0)
    run = advance(run, T0 + timedelta(seconds=60))
    assert events(run)[-3:] == [("wait", "resumed"), ("mail", "queued"), ("", "completed")]
    assert not StepLog.objects.filter(event="quiet_hours").exists()


def test_the_sweeper_wakes_a_run_whose_quiet_hours_wake_up_was_lost(make_workflow, trigger,
                                                                   run_tasks, locmem):
    from notifications.tasks import sweep

    workflow = make_workflow("w", steps=[email_step()])
    run = trigger(workflow)
    prefs(quiet_hours=NIGHT)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))
    OrmQ.objects.all().delete()  # the scheduled wake-up is lost
    sweep(now=datetime(2026, 6, 11, 12, 0, 1, tzinfo=UTC))
    assert OrmQ.objects.count() == 1
    run_tasks()
    run = Run.objects.get(pk=run.pk)
    assert run.status == Run.Status.COMPLETED
    assert events(run)[-4:] == [("mail", "resumed"), ("mail", "queued"), ("", "completed"),
                                ("mail", "sent")]
    assert Message.objects.get().status == Message.Status.SENT
    assert len(locmem.outbox) == 1


def test_a_step_back_from_quiet_hours_asks_its_conditions_again(make_workflow, trigger):
    workflow = make_workflow("w", steps=[email_step("mail"), in_app_step("after")])
    run = trigger(workflow, data={"plan": "free"})
    preference_set_update(recipient=Recipient.objects.get(external_id="u1"), tenant=None,
                          data={"quiet_hours": NIGHT}, merge=True)
    run = advance(run, datetime(2026, 6, 11, 3, 0, tzinfo=UTC))  # 23:00 in New York
    assert run.status == Run.Status.WAITING
    # While it waits, the step gains a condition this run does not meet.
    make_workflow("w", steps=[
        email_step("mail", conditions={"all": [{"path": "data.plan", "op": "eq",
                                                "value": "pro"}]}),
        in_app_step("after")])
    run = advance(run, datetime(2026, 6, 11, 12, 0, tzinfo=UTC))
    assert run.status == Run.Status.COMPLETED and run.wake_at is None
    assert events(run)[-3:] == [("mail", "condition_false"), ("after", "sent"), ("", "completed")]
    assert not Message.objects.filter(run=run, step_ref="mail").exists()
