"""Wait-for-engagement fallback: a channel step with `unless` is skipped when an earlier step's
message reached a state; the demo `comment-mentioned` (in-app, 15 minutes, email if unread)."""

from datetime import UTC, datetime, timedelta

import pytest
from django_q.models import OrmQ

from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications.demo import seed_demo
from notifications.models import Message, Recipient, Run, StepLog, Workflow
from notifications.services import TriggerRequest, trigger_workflow

from ..conftest import advance_at, delay_step, email_step, in_app_step, invalid
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _trigger(workflow, recipient=None, **fields) -> Run:
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, recipients=[recipient or {"id": "u1", "name": "Ada",
                                                     "email": "ada@example.com"}], **fields))
    OrmQ.objects.all().delete()  # the test drives the engine with its own clock
    return runs[0]


@pytest.fixture
def fallback(make_workflow):
    return make_workflow("fallback", steps=[
        in_app_step(), delay_step(minutes=15),
        email_step(unless={"step": "inbox", "is": "read"})])


@pytest.mark.parametrize(("action", "state", "skipped"), [
    ("read", "read", True), ("seen", "read", False), ("seen", "seen", True),
    ("clicked", "clicked", True), ("read", "clicked", False), (None, "delivered", True),
    (None, "seen", False),
])
def test_unless_skips_the_step_only_when_the_earlier_message_reached_the_state(
        make_workflow, action, state, skipped):
    workflow = make_workflow("w", steps=[
        in_app_step(), delay_step(minutes=15), email_step(unless={"step": "inbox", "is": state})])
    run = advance_at(_trigger(workflow), T0)
    assert run.status == Run.Status.WAITING
    if action:
        inbox_item_mark(item=InboxItem.objects.get(), action=action)
    run = advance_at(run, T0 + timedelta(minutes=16))
    assert run.status == Run.Status.COMPLETED
    assert Message.objects.filter(channel="email").exists() is not skipped
    assert (("mail", "condition_false") in events(run)) is skipped


def test_the_skip_entry_says_what_was_checked(fallback):
    run = advance_at(_trigger(fallback), T0)
    inbox_item_mark(item=InboxItem.objects.get(), action="read")
    run = advance_at(run, T0 + timedelta(minutes=16))
    entry = run.step_logs.get(step_ref="mail")
    inbox = Message.objects.get(step_ref="inbox")
    assert entry.event == StepLog.Event.CONDITION_FALSE
    assert entry.detail == {"unless": {"step": "inbox", "is": "read"},
                            "message_id": str(inbox.id),
                            "reached_at": inbox.read_at.isoformat()}


def test_unless_naming_a_step_that_sent_nothing_lets_the_step_go_on(make_workflow):
    workflow = make_workflow("w", steps=[
        in_app_step(conditions={"all": [{"path": "data.inbox", "op": "eq", "value": True}]}),
        email_step(unless={"step": "inbox", "is": "delivered"})])
    run = advance_at(_trigger(workflow), T0)
    assert events(run) == [("", "triggered"), ("inbox", "condition_false"), ("mail", "queued"),
                           ("", "completed")]


def test_put_and_get_round_trip_unless(api, db):
    body = {"name": "Fallback", "steps": [
        {"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Hi"}}},
        {"ref": "wait", "type": "delay", "config": {"minutes": 15}},
        {"ref": "mail", "type": "email", "unless": {"step": "inbox", "is": "read"},
         "templates": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}}},
    ]}
    assert api.put("/api/v1/workflows/fallback", body, format="json").status_code == 201
    got = api.get("/api/v1/workflows/fallback").json()
    assert got["steps"][2]["unless"] == {"step": "inbox", "is": "read"}
    assert "unless" not in got["steps"][0]
    again = api.put("/api/v1/workflows/fallback", got, format="json")
    assert again.status_code == 200
    assert again.json() == got


INBOX = {"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Hi"}}}
WAIT = {"ref": "wait", "type": "delay", "config": {"minutes": 15}}


def _mail(**unless) -> dict:
    return {"ref": "mail", "type": "email", "unless": unless,
            "templates": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}}}


@pytest.mark.parametrize(("steps", "fields"), [
    ([INBOX, _mail(step="nope", is_="read")], {"steps[1].unless.step": [
        "No step 'nope' before this one: \"unless\" names an earlier channel step."]}),
    ([_mail(step="inbox", is_="read"), INBOX], {"steps[0].unless.step": [
        "No step 'inbox' before this one: \"unless\" names an earlier channel step."]}),
    ([INBOX, WAIT, _mail(step="wait", is_="read")], {"steps[2].unless.step": [
        "Step 'wait' is a delay step: it sends no message."]}),
    ([INBOX, _mail(step="inbox", is_="opened")], {"steps[1].unless.is": [
        "Expected one of: seen, read, clicked, delivered."]}),
    ([INBOX, _mail(step="inbox", is_="read", extra=1)], {"steps[1].unless": [
        "Unknown keys: extra."]}),
    ([INBOX, {**WAIT, "unless": {"step": "inbox", "is": "read"}}], {"steps[1].unless": [
        'Only channel steps can have "unless".']}),
])
def test_put_refuses_a_bad_unless_naming_the_field(api, db, steps, fields):
    steps = [{**step, "unless": {k.rstrip("_"): v for k, v in step["unless"].items()}}
             if "unless" in step else step for step in steps]
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": steps}, format="json")
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert not Workflow.objects.exists()


# --- The demo: comment-mentioned, end to end on a real SMTP server ---------------------------

@pytest.fixture
def mention(db, settings, tmp_path, smtp):
    settings.VAR_DIR = tmp_path
    seed_demo()
    workflow = Workflow.objects.get(key="comment-mentioned")
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, recipients=["demo-user"], actor="grace",
        data={"document": "Q3 roadmap", "excerpt": "Can you check the dates?",
              "url": "https://example.com/docs/q3"}))
    OrmQ.objects.all().delete()
    return runs[0], smtp


def test_comment_mentioned_read_within_the_wait_sends_no_email(mention, run_tasks):
    run, smtp = mention
    run = advance_at(run, T0)
    assert run.wake_at == T0 + timedelta(minutes=15)
    item = InboxItem.objects.get(recipient__external_id="demo-user")
    inbox_item_mark(item=item, action="read")
    run = advance_at(run, T0 + timedelta(minutes=15))
    run_tasks()
    assert run.status == Run.Status.COMPLETED
    assert events(run)[-2:] == [("mail", "condition_false"), ("", "completed")]
    assert not Message.objects.filter(channel="email").exists()
    assert smtp.messages == []


def test_comment_mentioned_unread_sends_one_email(mention, run_tasks):
    run, smtp = mention
    run = advance_at(run, T0)
    assert advance_at(run, T0 + timedelta(minutes=14)).status == Run.Status.WAITING
    run = advance_at(run, T0 + timedelta(minutes=15))
    run_tasks()
    assert run.status == Run.Status.COMPLETED
    (email,) = smtp.wait_for(1)
    assert email["To"].addresses[0].addr_spec == Recipient.objects.get(
        external_id="demo-user").email
    assert email["Subject"] == "Grace Hopper mentioned you in Q3 roadmap"
    assert "Can you check the dates?" in email.get_body(("plain",)).get_content()
    assert Message.objects.get(channel="email").status == Message.Status.SENT
    run_tasks()
    assert len(smtp.messages) == 1
