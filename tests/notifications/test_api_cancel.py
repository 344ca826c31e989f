"""POST workflows/{key}/cancel stops unfinished runs triggered with a cancellation key."""

import pytest
from django_q.models import OrmQ
from rest_framework.test import APIClient

from notifications import services
from notifications.delivery import deliver
from notifications.models import Message, Recipient, Run, Topic, Trigger
from notifications.tasks import advance_run

from ..conftest import client_for, delay_step, email_step, in_app_step

CANCEL = "/api/v1/workflows/reminder/cancel"


@pytest.fixture
def reminder(make_workflow):
    return make_workflow("reminder", steps=[in_app_step(), delay_step(hours=1), email_step()])


def trigger(api, recipients, key="invoice-42", **extra):
    response = api.post("/api/v1/workflows/reminder/trigger",
                        {"recipients": recipients, "cancellation_key": key, **extra})
    assert response.status_code == 202, response.content
    return response.json()


def test_cancel_stops_waiting_runs_before_their_next_step(api, reminder, run_tasks):
    body = trigger(api, [{"id": "a", "email": "a@example.com"}, {"id": "b", "email": "b@x.io"}])
    other = trigger(api, [{"id": "c", "email": "c@example.com"}], key="invoice-43")
    run_tasks()
    assert set(Run.objects.values_list("status", flat=True)) == {"waiting"}

    response = api.post(CANCEL, {"cancellation_key": "invoice-42"})
    assert response.status_code == 200
    assert sorted(response.json()["cancelled"], key=lambda r: r["recipient"]) == sorted(
        body["runs"], key=lambda r: r["recipient"])

    for run in body["runs"]:
        detail = api.get(f"/api/v1/runs/{run['id']}").json()
        assert detail["status"] == "cancelled"
        assert detail["steps"][-1]["event"] == "cancelled"
        assert detail["steps"][-1]["detail"] == {"cancellation_key": "invoice-42"}
        advance_run(run["id"])  # the wake-up comes anyway
    assert not Message.objects.filter(channel="email").exists()
    assert Run.objects.get(pk=other["runs"][0]["id"]).status == "waiting"
    # Cancelling again finds nothing left to cancel.
    assert api.post(CANCEL, {"cancellation_key": "invoice-42"}).json() == {"cancelled": []}


def test_cancel_naming_recipients_cancels_only_their_runs(api, reminder, run_tasks):
    trigger(api, [{"id": "a", "email": "a@example.com"}, {"id": "b", "email": "b@x.io"}])
    run_tasks()
    response = api.post(CANCEL, {"cancellation_key": "invoice-42", "recipients": ["b"]})
    assert [r["recipient"] for r in response.json()["cancelled"]] == ["b"]
    assert dict(Run.objects.values_list("recipient__external_id", "status")) == {
        "a": "waiting", "b": "cancelled"}
    assert Trigger.objects.get().cancelled_at is None


def test_a_queued_email_of_a_cancelled_run_is_not_sent(api, make_workflow, run_tasks, smtp):
    make_workflow("reminder", steps=[email_step()])
    trigger(api, [{"id": "a", "email": "a@example.com"}])
    advance_run(str(Run.objects.get().id))
    OrmQ.objects.all().delete()
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED
    # The run is already completed (its email is queued): cancel still stops the email.
    assert Run.objects.get().status == Run.Status.COMPLETED
    assert api.post(CANCEL, {"cancellation_key": "invoice-42"}).json() == {"cancelled": []}
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert Run.objects.get().step_logs.last().detail == {
        "cancellation_key": "invoice-42", "message_id": str(message.id)}
    assert smtp.messages == []
    assert not message.delivery_attempts.exists()


def test_cancel_stops_a_topic_fanout_that_has_not_run(api, reminder, run_tasks):
    topic = Topic.objects.create(key="team")
    services.topic_subscribe(topic=topic, recipients=[
        Recipient.objects.create(external_id=f"s{i}") for i in range(3)])
    trigger(api, [{"topic": "team"}])
    api.post(CANCEL, {"cancellation_key": "invoice-42"})
    run_tasks()
    assert not Run.objects.exists()
    assert Trigger.objects.get().fanout == Trigger.Fanout.DONE


def test_a_tenant_key_cancels_only_its_tenant_runs(api, reminder, run_tasks):
    acme, _ = services.tenant_upsert(key="acme", name="Acme")
    services.tenant_upsert(key="globex", name="Globex")
    trigger(api, ["a"], tenant="acme")
    trigger(api, ["b"], tenant="globex")
    run_tasks()
    _, secret = services.api_key_create(name="acme-key", tenant=acme)
    response = client_for(secret).post(CANCEL, {"cancellation_key": "invoice-42"})
    assert [r["recipient"] for r in response.json()["cancelled"]] == ["a"]
    assert dict(Run.objects.values_list("recipient__external_id", "status")) == {
        "a": "cancelled", "b": "waiting"}


def test_cancel_refuses_an_unknown_workflow_a_bad_body_and_no_key(api, reminder):
    assert api.post("/api/v1/workflows/nope/cancel", {"cancellation_key": "k"}).json() == {
        "error": "not_found", "detail": "No workflow 'nope'."}
    response = api.post(CANCEL, {"recipients": []})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "cancellation_key": ["This field is required."],
        "recipients": ["This list may not be empty."],
    }
    assert APIClient().post(CANCEL, {"cancellation_key": "k"}, format="json").status_code == 401
