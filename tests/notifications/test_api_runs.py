"""Runs and triggers read back through the API: a run's status, timeline and messages after
its tasks ran, delays waited and woken, a trigger's runs, and the 404s."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from inbox.models import InboxItem
from notifications import tasks
from notifications.models import (
    DeliveryAttempt,
    IdempotencyRecord,
    Run,
)

from ..conftest import delay_step, email_step, in_app_step
from .trigger_support import TRIGGER, welcome_workflow


@pytest.fixture
def welcome(make_workflow):
    return welcome_workflow(make_workflow)


# --- Runs and triggers read back --------------------------------------------------------------

def test_run_shows_status_timeline_and_messages_after_the_tasks_ran(api, welcome, run_tasks,
                                                                     locmem):
    body = api.post(TRIGGER, {"recipients": [{"id": "u1", "name": "Ada",
                                              "email": "ada@example.com"}],
                              "data": {"body": "hello"}}).json()
    run_id = body["runs"][0]["id"]

    before = api.get(f"/api/v1/runs/{run_id}").json()
    assert before["status"] == "running"
    assert [(s["step"], s["event"]) for s in before["steps"]] == [("", "triggered")]
    assert before["messages"] == []

    run_tasks()
    response = api.get(f"/api/v1/runs/{run_id}")

    assert response.status_code == 200
    run = response.json()
    assert set(run) == {"id", "trigger_id", "workflow", "workflow_version", "recipient",
                        "tenant", "status", "cursor", "wake_at", "created_at", "updated_at",
                        "steps", "messages", "approvals"}
    assert (run["id"], run["trigger_id"], run["workflow"], run["workflow_version"],
            run["recipient"], run["tenant"], run["status"], run["cursor"], run["wake_at"]) == (
        run_id, body["trigger_id"], "welcome", 1, "u1", None, "completed", 2, None)
    # Email delivery is its own task, so its "sent" follows the run's "completed".
    assert [(s["step"], s["event"]) for s in run["steps"]] == [
        ("", "triggered"), ("inbox", "sent"), ("mail", "queued"), ("", "completed"),
        ("mail", "sent"),
    ]
    assert all(set(s) == {"step", "event", "detail", "at"} for s in run["steps"])
    assert run["steps"][2]["detail"]["to"] == "ada@example.com"

    in_app, email = sorted(run["messages"], key=lambda m: m["step"])
    assert (in_app["step"], in_app["channel"], in_app["status"]) == ("inbox", "in_app", "sent")
    assert in_app["content"]["body"] == "Hi Ada"
    assert in_app["attempts"] == []
    assert (email["step"], email["channel"], email["status"], email["to"]) == (
        "mail", "email", "sent", "ada@example.com")
    assert email["content"]["subject"] == "Hello Ada"
    assert email["template_version"] == 1
    assert email["sent_at"] is not None
    assert len(email["attempts"]) == 1
    attempt = email["attempts"][0]
    assert (attempt["outcome"], attempt["error"]) == ("succeeded", "")
    assert attempt["provider"] == DeliveryAttempt.objects.get().provider
    assert isinstance(attempt["duration_ms"], int)

    assert [m.subject for m in locmem.outbox] == ["Hello Ada"]
    assert locmem.outbox[0].to == ["Ada <ada@example.com>"]
    assert InboxItem.objects.get().content["body"] == "Hi Ada"


def test_run_shows_a_condition_false_and_a_waiting_delay(api, make_workflow, run_tasks, locmem):
    make_workflow("welcome", steps=[
        email_step(conditions={"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}),
        delay_step(minutes=5),
        in_app_step(),
    ])
    run_id = api.post(TRIGGER, {"recipients": [{"id": "u1", "email": "u1@example.com"}],
                                "data": {"plan": "free"}}).json()["runs"][0]["id"]

    run_tasks()
    run = api.get(f"/api/v1/runs/{run_id}").json()

    assert run["status"] == "waiting"
    assert run["wake_at"] is not None
    assert [(s["step"], s["event"]) for s in run["steps"]] == [
        ("", "triggered"), ("mail", "condition_false"), ("wait", "delayed"),
    ]
    assert run["steps"][1]["detail"]["conditions"] == [
        {"path": "data.plan", "op": "eq", "value": "pro", "actual": "free", "held": False}
    ]
    assert run["messages"] == []
    assert locmem.outbox == []


def test_a_woken_run_continues_after_its_delay_step(api, make_workflow, run_tasks):
    make_workflow("welcome", steps=[
        in_app_step(ref="first", conditions={"all": [{"path": "data.plan", "op": "eq",
                                                      "value": "pro"}]}),
        delay_step(minutes=5),
        in_app_step(),
    ])
    run_id = api.post(TRIGGER, {"recipients": ["u1"], "data": {"plan": "free"}}
                      ).json()["runs"][0]["id"]
    run_tasks()
    assert api.get(f"/api/v1/runs/{run_id}").json()["cursor"] == 1

    Run.objects.filter(pk=run_id).update(wake_at=timezone.now() - timedelta(seconds=1))
    tasks.advance_run(run_id)
    run = api.get(f"/api/v1/runs/{run_id}").json()

    assert run["status"] == "completed"
    assert [(s["step"], s["event"]) for s in run["steps"]] == [
        ("", "triggered"), ("first", "condition_false"), ("wait", "delayed"),
        ("wait", "resumed"), ("inbox", "sent"), ("", "completed"),
    ]


def test_a_run_passes_two_delays_in_a_row(api, make_workflow, run_tasks):
    make_workflow("welcome", steps=[delay_step(ref="a", minutes=5), delay_step(ref="b", minutes=5),
                                    in_app_step()])
    run_id = api.post(TRIGGER, {"recipients": ["u1"]}).json()["runs"][0]["id"]
    run_tasks()

    for _ in range(2):
        Run.objects.filter(pk=run_id).update(wake_at=timezone.now() - timedelta(seconds=1))
        tasks.advance_run(run_id)
    run = api.get(f"/api/v1/runs/{run_id}").json()

    assert run["status"] == "completed"
    assert [(s["step"], s["event"]) for s in run["steps"]] == [
        ("", "triggered"), ("a", "delayed"), ("a", "resumed"), ("b", "delayed"),
        ("b", "resumed"), ("inbox", "sent"), ("", "completed"),
    ]


def test_trigger_detail_lists_its_runs(api, welcome, acme):
    body = api.post(TRIGGER, {"recipients": ["u1", "u2"], "data": {"x": 1}, "tenant": "acme",
                              "actor": "boss", "cancellation_key": "c1"}).json()

    response = api.get(f"/api/v1/triggers/{body['trigger_id']}")

    assert response.status_code == 200
    detail = response.json()
    assert set(detail) == {"id", "workflow", "tenant", "actor", "data", "cancellation_key",
                           "idempotency_key", "fanout", "recipients_total", "runs_created",
                           "created_at", "runs", "page_info"}
    assert (detail["id"], detail["workflow"], detail["tenant"], detail["actor"], detail["data"],
            detail["cancellation_key"], detail["idempotency_key"], detail["fanout"]) == (
        body["trigger_id"], "welcome", "acme", "boss", {"x": 1}, "c1", "", "done")
    assert sorted(({"id": r["id"], "recipient": r["recipient"]} for r in detail["runs"]),
                  key=lambda r: r["recipient"]) == body["runs"]
    assert [r["status"] for r in detail["runs"]] == ["running", "running"]


def test_trigger_detail_keeps_the_idempotency_key_after_its_replay_record_expires(api, welcome):

    body = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="signup-u1").json()
    IdempotencyRecord.objects.all().delete()
    detail = api.get(f"/api/v1/triggers/{body['trigger_id']}").json()
    assert detail["idempotency_key"] == "signup-u1"


@pytest.mark.parametrize(("path", "what"), [("runs", "run"), ("triggers", "trigger")])
def test_unknown_run_or_trigger_is_404(api, db, path, what):
    response = api.get(f"/api/v1/{path}/00000000-0000-0000-0000-000000000000")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found",
                               "detail": f"No {what} '00000000-0000-0000-0000-000000000000'."}


@pytest.mark.parametrize("path", ["/api/v1/runs/not-a-uuid", "/api/v1/triggers/42",
                                  "/api/v1/workflows/welcome/trigger/", "/api/v1/nothing"])
def test_unknown_api_paths_answer_the_json_404(api, db, path):
    for response in (api.get(path), api.post(path, {}), APIClient().options(path)):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {"error": "not_found", "detail": f"No endpoint {path!r}."}


def test_reading_a_run_needs_a_key(welcome, api, db):
    run_id = api.post(TRIGGER, {"recipients": ["u1"]}).json()["runs"][0]["id"]

    response = APIClient().get(f"/api/v1/runs/{run_id}")

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized",
                               "detail": "Authentication credentials were not provided."}
