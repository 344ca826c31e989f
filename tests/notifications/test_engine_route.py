"""The route step: cheapest channel first, the next one only while none has reached success;
opted-out and address-less channels passed over with the reason; `always` channels at once;
quiet hours; cancellation; a pass run twice sends nothing twice (controlled clock, real SMTP)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django_q.models import OrmQ

from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications.models import (
    ChannelData,
    Message,
    ProviderConfig,
    Recipient,
    Run,
    StepLog,
    Workflow,
)
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_cancel
from preferences.services import preference_set_update

from ..conftest import advance_at, in_app_step, invalid, queued_tasks
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC
TEMPLATES = {
    "in_app": {"en": {"body": "{{ actor.name }} mentioned you"}},
    "push": {"en": {"title": "Mention", "body": "{{ actor.name }} mentioned you"}},
    "email": {"en": {"subject": "{{ actor.name }} mentioned you", "html": "<p>See it</p>",
                     "text": "See it"}},
    "sms": {"en": {"text": "{{ actor.name }} mentioned you"}},
    "chat": {"en": {"text": "{{ actor.name }} mentioned you"}},
}
ADA = {"id": "u1", "name": "Ada", "email": "ada@example.com", "phone": "+15550001111"}


def route_step(channels=("in_app", "push", "email", "sms"), ref="route", ttl=None,
               success="read", always=None, **extra) -> StepSpec:
    config = {"channels": list(channels), "ttl": ttl or {"hours": 1}, "success": success}
    if always is not None:
        config["always"] = list(always)
    return StepSpec(ref=ref, type="route", config=config,
                    templates={c: TEMPLATES[c] for c in channels}, **extra)


def _trigger(workflow, recipient=None) -> Run:
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[recipient or ADA],
                                              actor={"id": "grace", "name": "Grace"}))
    OrmQ.objects.all().delete()  # the test drives the engine with its own clock
    return runs[0]


def _sent(run) -> list[str]:
    return list(run.messages.order_by("created_at", "id").values_list("channel", flat=True))


def _log(run, event, **match) -> dict:
    (entry,) = [log.detail for log in run.step_logs.filter(event=event).order_by("id")
                if all(log.detail.get(k) == v for k, v in match.items())]
    return entry


def _push_token(external_id="u1"):
    ChannelData.objects.create(recipient=Recipient.objects.get(external_id=external_id),
                               channel="push", provider_kind="fcm", data={"tokens": ["tok-1"]})


def test_the_first_channel_goes_at_once_and_each_next_after_ttl_over_channels_minus_one(
        make_workflow):
    workflow = make_workflow("w", steps=[route_step(), in_app_step("after")])
    run = _trigger(workflow)
    _push_token()
    run = advance_at(run, T0)
    assert (run.status, run.wake_at, _sent(run)) == (Run.Status.WAITING,
                                                     T0 + timedelta(minutes=20), ["in_app"])
    assert queued_tasks("notifications.tasks.advance_run") == [
        ((str(run.id),), T0 + timedelta(minutes=20))]  # a precise wake-up, not a poll
    assert advance_at(run, T0 + timedelta(minutes=19)).wake_at == T0 + timedelta(minutes=20)
    run = advance_at(run, T0 + timedelta(minutes=20))
    assert (run.wake_at, _sent(run)) == (T0 + timedelta(minutes=40), ["in_app", "push"])
    run = advance_at(run, T0 + timedelta(minutes=40))
    assert _sent(run) == ["in_app", "push", "email"]
    run = advance_at(run, T0 + timedelta(minutes=60))
    assert run.status == Run.Status.COMPLETED
    assert _sent(run) == ["in_app", "push", "email", "sms", "in_app"]
    assert events(run) == [
        ("", "triggered"), ("route", "started"), ("route", "sent"), ("route", "delayed"),
        ("route", "resumed"), ("route", "queued"), ("route", "delayed"),
        ("route", "resumed"), ("route", "queued"), ("route", "delayed"),
        ("route", "resumed"), ("route", "queued"), ("route", "exhausted"),
        ("after", "sent"), ("", "completed")]
    assert _log(run, "started") == {"channels": ["in_app", "push", "email", "sms"],
                                    "always": [], "success": "read", "interval_seconds": 1200.0}
    assert _log(run, "delayed", next="push") == {
        "until": (T0 + timedelta(minutes=20)).isoformat(), "next": "push", "unless": "read"}
    assert _log(run, "queued", channel="sms")["to"] == "+15550001111"
    assert _log(run, "exhausted") == {"sent": ["in_app", "push", "email", "sms"],
                                      "passed_over": [], "state": "read"}


def test_in_app_read_within_the_wait_stops_the_email(make_workflow, smtp, run_tasks):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], ttl={"minutes": 15})])
    run = advance_at(_trigger(workflow), T0)
    item = InboxItem.objects.get()
    inbox_item_mark(item=item, action="read")
    run = advance_at(run, T0 + timedelta(minutes=15))
    run_tasks()
    assert run.status == Run.Status.COMPLETED
    assert _sent(run) == ["in_app"]
    assert smtp.messages == []
    inbox = Message.objects.get(channel="in_app")
    assert _log(run, "succeeded") == {
        "channel": "in_app", "message_id": str(inbox.id), "state": "read",
        "reached_at": inbox.read_at.isoformat(), "not_sent": ["email"]}


def test_in_app_unread_sends_exactly_one_email_on_a_real_smtp_server(make_workflow, smtp,
                                                                     run_tasks):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], ttl={"minutes": 15})])
    run = advance_at(_trigger(workflow), T0)
    inbox_item_mark(item=InboxItem.objects.get(), action="seen")  # seen is not read
    run = advance_at(run, T0 + timedelta(minutes=15))
    run_tasks()
    (email,) = smtp.wait_for(1)
    assert email["Subject"] == "Grace mentioned you"
    assert email["To"].addresses[0].addr_spec == "ada@example.com"
    assert Message.objects.get(channel="email").status == Message.Status.SENT
    # The same wake-up delivered again, the delivery task run again: nothing sent twice.
    run = advance_at(run, T0 + timedelta(minutes=16))
    run_tasks()
    assert len(smtp.messages) == 1
    assert run.messages.count() == 2


def test_a_pass_killed_before_commit_sends_nothing_and_its_rerun_sends_once(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], ttl={"minutes": 15})])
    run = advance_at(_trigger(workflow), T0)
    with pytest.raises(RuntimeError), transaction.atomic():  # the worker dies mid-pass
        advance_at(run, T0 + timedelta(minutes=15))
        assert Message.objects.filter(channel="email").exists()
        raise RuntimeError
    assert not Message.objects.filter(channel="email").exists()
    assert not queued_tasks("notifications.tasks.deliver_message")
    run = advance_at(run, T0 + timedelta(minutes=15))
    run = advance_at(run, T0 + timedelta(minutes=15))  # the task handed out twice
    assert _sent(run) == ["in_app", "email"]
    assert len(queued_tasks("notifications.tasks.deliver_message")) == 1
    assert InboxItem.objects.count() == 1


def test_a_second_message_for_the_same_channel_is_refused_by_the_database(make_workflow):
    from django.db import IntegrityError

    workflow = make_workflow("w", steps=[route_step(["in_app", "email"])])
    run = advance_at(_trigger(workflow), T0)
    first = run.messages.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(run=run, step_ref="route", channel="in_app",
                               recipient=first.recipient, workflow=workflow)


def test_an_opted_out_channel_is_passed_over_with_its_rule_and_the_next_goes_at_once(
        make_workflow):
    workflow = make_workflow("w", category="social", steps=[route_step()])
    run = _trigger(workflow)
    preference_set_update(recipient=Recipient.objects.get(external_id="u1"), merge=True,
                          data={"channel_types": {"in_app": False}})
    _push_token()
    run = advance_at(run, T0)
    assert _sent(run) == ["push"]
    assert run.wake_at == T0 + timedelta(minutes=20)
    assert _log(run, "opted_out") == {"channel": "in_app", "rule": "recipient:channel_types.in_app"}
    assert events(run)[1:4] == [("route", "started"), ("route", "opted_out"), ("route", "queued")]


def test_channels_without_an_address_are_passed_over_with_the_reason(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["push", "sms", "email"])])
    run = advance_at(_trigger(workflow, {"id": "u2", "name": "Bo", "email": "bo@example.com"}),
                     T0)
    assert _sent(run) == ["email"]
    assert _log(run, "skipped", channel="push") == {
        "channel": "push", "reason": "the recipient has no push channel data (device tokens)"}
    assert _log(run, "skipped", channel="sms") == {
        "channel": "sms", "reason": "the recipient has no phone number"}
    # Nothing is left to try: the route ends without waiting out its ttl.
    assert run.status == Run.Status.COMPLETED
    assert _log(run, "exhausted") == {"sent": ["email"], "passed_over": ["push", "sms"],
                                      "state": "read"}
    assert not Message.objects.filter(channel__in=["push", "sms"]).exists()


def test_always_channels_go_at_once_and_take_their_turn_in_the_chain(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email", "sms"],
                                                    always=["email"])])
    run = advance_at(_trigger(workflow), T0)
    assert _sent(run) == ["email", "in_app"]
    assert run.wake_at == T0 + timedelta(minutes=30)
    run = advance_at(run, T0 + timedelta(minutes=30))  # email's turn: it went already
    assert _sent(run) == ["email", "in_app"]
    assert run.wake_at == T0 + timedelta(minutes=60)
    run = advance_at(run, T0 + timedelta(minutes=60))
    assert _sent(run) == ["email", "in_app", "sms"]
    assert run.status == Run.Status.COMPLETED


def test_success_of_an_always_channel_stops_the_route(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["email", "sms"], success="delivered",
                                                    always=["email"])])
    run = advance_at(_trigger(workflow), T0)
    Message.objects.filter(channel="email").update(status="delivered",
                                                   delivered_at=T0 + timedelta(minutes=5))
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["email"]
    assert _log(run, "succeeded")["channel"] == "email"


def test_quiet_hours_hold_the_channels_that_honour_them_and_the_run_waits(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], always=["in_app",
                                                                                   "email"])])
    run = _trigger(workflow)
    preference_set_update(recipient=Recipient.objects.get(external_id="u1"), merge=True,
                          data={"quiet_hours": {"start": "11:00", "end": "13:00"}})
    run = advance_at(run, T0)
    assert _sent(run) == ["in_app"]  # in-app honours no quiet hours
    assert run.wake_at == T0 + timedelta(hours=1)
    assert _log(run, "quiet_hours")["channel"] == "email"
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["in_app", "email"]
    assert run.status == Run.Status.COMPLETED


def test_a_route_step_send_window_holds_every_channel(make_workflow):
    window = {"days": ["mon"], "start": "13:00", "end": "17:00", "timezone": "UTC"}
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], send_window=window)])
    run = advance_at(_trigger(workflow), T0)
    assert (_sent(run), run.wake_at) == ([], T0 + timedelta(hours=1))
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["in_app"]


def test_a_cancelled_run_in_a_route_sends_no_further_channel(make_workflow, run_tasks, smtp):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email", "sms"])])
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[ADA],
                                              cancellation_key="c-1"))
    OrmQ.objects.all().delete()
    run = advance_at(runs[0], T0)
    workflow_cancel(workflow=workflow, cancellation_key="c-1")
    run = advance_at(run, T0 + timedelta(minutes=30))
    run = advance_at(run, T0 + timedelta(hours=2))
    run_tasks()
    assert run.status == Run.Status.CANCELLED
    assert _sent(run) == ["in_app"]
    assert smtp.messages == []
    assert events(run)[-1] == ("", "cancelled")


def test_the_timeline_records_the_estimated_cost_of_what_the_route_sent(make_workflow):
    ProviderConfig.objects.create(key="twilio", channel="sms", kind="twilio",
                                  options={"cost_per_message": "0.0079"})
    workflow = make_workflow("w", steps=[route_step(["in_app", "sms"], always=["sms"])])
    run = advance_at(_trigger(workflow), T0)
    assert _log(run, "queued", channel="sms")["estimated_cost"] == str(Decimal("0.007900"))
    assert _log(run, "queued", channel="sms")["cost_currency"] == "USD"
    assert "estimated_cost" not in _log(run, "sent", channel="in_app")


def test_a_run_waiting_in_a_route_resumes_there_after_the_workflow_is_edited(make_workflow):
    steps = [route_step(["in_app", "email"]), in_app_step("after")]
    workflow = make_workflow("w", steps=steps)
    run = advance_at(_trigger(workflow), T0)
    make_workflow("w", steps=[in_app_step("new"), *steps])
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["in_app", "email", "in_app"]
    assert events(run)[-4:] == [("route", "queued"), ("route", "exhausted"), ("after", "sent"),
                                ("", "completed")]


def test_a_route_whose_conditions_are_false_sends_nothing(make_workflow):
    when = {"all": [{"path": "data.go", "op": "eq", "value": True}]}
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], conditions=when)])
    run = advance_at(_trigger(workflow), T0)
    assert events(run) == [("", "triggered"), ("route", "condition_false"), ("", "completed")]
    assert not run.messages.exists()


# --- The workflow API ----------------------------------------------------------------------

ROUTE = {"ref": "route", "type": "route",
         "config": {"channels": ["in_app", "email"], "ttl": {"hours": 1}, "success": "read",
                    "always": ["in_app"]},
         "templates": {"in_app": TEMPLATES["in_app"], "email": TEMPLATES["email"]}}


def test_put_and_get_round_trip_a_route_step_and_its_templates_per_channel(api, db):
    response = api.put("/api/v1/workflows/mention", {"name": "M", "steps": [ROUTE]},
                       format="json")
    assert response.status_code == 201
    got = api.get("/api/v1/workflows/mention").json()
    assert got["steps"] == [ROUTE]
    again = api.put("/api/v1/workflows/mention", got, format="json")
    assert (again.status_code, again.json()) == (200, got)
    workflow = Workflow.objects.get(key="mention")
    step = workflow.steps.get()
    assert sorted(step.templates.values_list("channel", "locale")) == [("email", "en"),
                                                                       ("in_app", "en")]
    less = {**ROUTE, "config": {**ROUTE["config"], "channels": ["in_app", "sms"]},
            "templates": {"in_app": TEMPLATES["in_app"], "sms": TEMPLATES["sms"]}}
    assert api.put("/api/v1/workflows/mention", {"name": "M", "steps": [less]},
                   format="json").status_code == 200
    assert sorted(step.templates.values_list("channel", flat=True)) == ["in_app", "sms"]


def _config(**changes) -> dict:
    config = {**ROUTE["config"], **changes}
    return {k: v for k, v in config.items() if v is not None}


@pytest.mark.parametrize(("step", "fields"), [
    ({**ROUTE, "config": _config(channels=["in_app", "fax"])}, {"steps[0].config.channels": [
        "Unknown channels: fax. A route may use: email, sms, push, chat, whatsapp, in_app."]}),
    ({**ROUTE, "config": _config(channels=["in_app"])}, {"steps[0].config.channels": [
        'Expected two or more channels, cheapest first, e.g. ["in_app", "email", "sms"].']}),
    ({**ROUTE, "config": _config(channels=["in_app", "in_app"])},
     {"steps[0].config.channels": ["Each channel once: in_app is repeated."]}),
    ({**ROUTE, "config": _config(cost=1)}, {"steps[0].config": ["Unknown keys: cost."]}),
    ({**ROUTE, "config": _config(always=["sms"])},
     {"steps[0].config.always": ["Not among the route's channels: sms."]}),
    ({**ROUTE, "config": _config(ttl={"hours": 0})}, {"steps[0].config.ttl": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, longer than 0.']}),
    ({**ROUTE, "config": _config(ttl="1h")}, {"steps[0].config.ttl": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, longer than 0.']}),
    ({**ROUTE, "config": _config(success="opened")},
     {"steps[0].config.success": ["Expected one of: seen, read, clicked, delivered."]}),
    ({**ROUTE, "templates": {"in_app": TEMPLATES["in_app"]}}, {"steps[0].templates.email": [
        'Missing: a route step needs a template for each of its channels '
        '(e.g. {"email": {"en": {…}}}).']}),
    ({**ROUTE, "templates": {**ROUTE["templates"], "sms": TEMPLATES["sms"]}},
     {"steps[0].templates.sms": ["Not one of this route's channels."]}),
    ({**ROUTE, "templates": {**ROUTE["templates"], "email": {"en": {"subject": "Hi"}}}},
     {"steps[0].templates.email.en.html": ["One of html or text is required."]}),
    ({**ROUTE, "unless": {"step": "x", "is": "read"}},
     {"steps[0].unless": ['Only channel steps can have "unless".']}),
])
def test_put_refuses_a_bad_route_step_naming_the_field(api, db, step, fields):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [step]}, format="json")
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert not Workflow.objects.exists()


def test_the_route_logs_name_the_channel_of_each_decision(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"])])
    run = advance_at(_trigger(workflow), T0)
    entry = run.step_logs.get(event=StepLog.Event.SENT)
    assert entry.detail["channel"] == "in_app"
    assert entry.step_ref == "route"


def test_the_admin_run_page_shows_which_channel_won_the_route(make_workflow, admin_client):
    from django.urls import reverse

    from clarion.admin import when

    workflow = make_workflow("w", steps=[route_step(["in_app", "email", "sms"])])
    run = advance_at(_trigger(workflow), T0)
    page = reverse("admin:notifications_run_change", args=[run.pk])
    assert "no channel has reached read yet" in admin_client.get(page).content.decode()
    run = advance_at(run, T0 + timedelta(minutes=30))  # the email goes
    Message.objects.filter(channel="email").update(opened_at=T0 + timedelta(minutes=31))
    html = admin_client.get(page).content.decode()
    assert (f"<td>route</td><td>won by <strong>Email</strong> (read at "
            f"{when(T0 + timedelta(minutes=31))})</td><td>in_app, email</td><td>—</td>") in html


def test_the_preference_center_lists_the_channels_a_route_may_send_on(make_workflow):
    from preferences.selectors import workflow_channels

    workflow = make_workflow("w", steps=[in_app_step(), route_step(["push", "in_app", "sms"])])
    assert workflow_channels([workflow]) == {workflow.pk: ["in_app", "push", "sms"]}


def test_later_steps_read_what_the_route_reached_in_any_of_its_channels(make_workflow):
    read = {"all": [{"path": "steps.route.read", "op": "eq", "value": True}]}
    workflow = make_workflow("w", steps=[
        route_step(["in_app", "email"], always=["email"]),
        in_app_step("thanks", body="{{ steps.route.channel }} {{ steps.route.status }}",
                    conditions=read)])
    run = advance_at(_trigger(workflow), T0)
    assert _sent(run) == ["email", "in_app"]  # the always channel first, then the chain's
    # The email (not the newest message of the route) is opened: read.
    Message.objects.filter(channel="email").update(opened_at=T0 + timedelta(minutes=5))
    run = advance_at(run, T0 + timedelta(hours=1))
    assert events(run)[-2:] == [("thanks", "sent"), ("", "completed")]
    assert InboxItem.objects.get(message__step_ref="thanks").content["body"] == "in_app sent"


def test_a_chain_channel_due_in_quiet_hours_waits_for_their_end_then_goes(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], ttl={"minutes": 20})])
    run = _trigger(workflow)
    preference_set_update(recipient=Recipient.objects.get(external_id="u1"), merge=True,
                          data={"quiet_hours": {"start": "12:10", "end": "13:00"}})
    run = advance_at(run, T0)
    run = advance_at(run, T0 + timedelta(minutes=20))
    assert (_sent(run), run.wake_at) == (["in_app"], T0 + timedelta(hours=1))
    assert _log(run, "quiet_hours")["until"] == (T0 + timedelta(hours=1)).isoformat()
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["in_app", "email"]
    assert run.status == Run.Status.COMPLETED


def test_success_reached_during_quiet_hours_stops_the_held_channel(make_workflow):
    workflow = make_workflow("w", steps=[route_step(["in_app", "email"], ttl={"minutes": 20})])
    run = _trigger(workflow)
    preference_set_update(recipient=Recipient.objects.get(external_id="u1"), merge=True,
                          data={"quiet_hours": {"start": "12:10", "end": "13:00"}})
    run = advance_at(advance_at(run, T0), T0 + timedelta(minutes=20))
    inbox_item_mark(item=InboxItem.objects.get(), action="read")
    run = advance_at(run, T0 + timedelta(hours=1))
    assert _sent(run) == ["in_app"]
    assert _log(run, "succeeded")["not_sent"] == ["email"]


def test_a_route_inside_a_branch_waits_and_goes_on_there(make_workflow):
    from .test_engine_branch import branch_step, when

    workflow = make_workflow("w", steps=[
        branch_step("by-plan", [("pro", when("data.plan", "eq", "pro"), [])],
                    default=[route_step(["in_app", "email"]), in_app_step("after")])])
    run = advance_at(_trigger(workflow), T0)
    assert (run.status, _sent(run)) == (Run.Status.WAITING, ["in_app"])
    run = advance_at(run, T0 + timedelta(hours=1))
    assert run.status == Run.Status.COMPLETED
    assert _sent(run) == ["in_app", "email", "in_app"]
    assert events(run)[-3:] == [("route", "exhausted"), ("after", "sent"), ("", "completed")]


def test_an_always_channel_that_failed_at_once_does_not_take_a_turn_in_the_chain(
        make_workflow, clarion_settings):
    from notifications.ratelimit import rate_limit_hit

    clarion_settings(SMS_RATE_LIMIT_PER_RECIPIENT=1, SMS_RATE_LIMIT_WINDOW_SECONDS=3600)
    rate_limit_hit(key="sms:+15550001111", limit=1, window_seconds=3600, now=T0)
    workflow = make_workflow("w", steps=[route_step(["sms", "in_app", "email"],
                                                    always=["sms"])])
    run = advance_at(_trigger(workflow), T0)
    assert _sent(run) == ["sms", "in_app"]  # the SMS rate limited (suppressed), in-app at once
    assert Message.objects.get(channel="sms").status == Message.Status.SUPPRESSED
    assert ("route", "rate_limited") in events(run)
    assert run.wake_at == T0 + timedelta(minutes=30)
