"""The trigger endpoint's Idempotency-Key: a replay answers the first response and writes
nothing; a key reused with another body or workflow is 422, one in progress 409; keys expire,
are per API key, and are released by a request that fails."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import idempotency, services
from notifications.models import (
    IdempotencyRecord,
    Recipient,
    Run,
    Trigger,
)

from ..conftest import client_for, in_app_step
from .trigger_support import TRIGGER, row_counts, welcome_workflow


@pytest.fixture
def welcome(make_workflow):
    return welcome_workflow(make_workflow)


# --- Idempotency-Key --------------------------------------------------------------------------

def test_idempotent_replay_answers_the_first_response_and_triggers_nothing(api, welcome):
    body = {"recipients": ["u1", "u2"], "data": {"n": 1}}
    first = api.post(TRIGGER, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == 202, first.content
    assert "Idempotent-Replayed" not in first
    counts = row_counts()

    replay = api.post(TRIGGER, {"data": {"n": 1}, "recipients": ["u1", "u2"]},
                      HTTP_IDEMPOTENCY_KEY="order-1")

    assert replay.status_code == 202
    assert replay.json() == first.json()
    assert replay["Idempotent-Replayed"] == "true"
    assert row_counts() == counts
    assert (counts["triggers"], counts["runs"]) == (1, 2)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement trigger")
def test_a_replay_the_statement_did_not_see_is_read_on_its_own(api, welcome, monkeypatch):
    # The key's record committed while the statement waited on it: not in the statement's
    # snapshot, so the statement gives none and the record is read after it.
    from notifications.services import triggers

    write = triggers.trigger_rows_write
    monkeypatch.setattr(triggers, "trigger_rows_write",
                        lambda **kwargs: (*write(**kwargs)[:2], None))
    first = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="late")

    with CaptureQueriesContext(connection) as queries:
        replay = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="late")

    assert (replay.status_code, replay["Idempotent-Replayed"]) == (202, "true")
    assert replay.json() == first.json()
    assert sum("notifications_idempotencyrecord" in query["sql"]
               and query["sql"].startswith("SELECT") for query in queries) == 1
    assert Trigger.objects.count() == 1


def test_idempotent_trigger_service_triggers_once_and_replays_without_http(api_key, welcome):
    request = services.TriggerRequest(workflow=welcome, recipients=["u1"], api_key=api_key[0])

    first = services.trigger_workflow_idempotent(request=request, idempotency_key="k",
                                                 request_fingerprint=["a", 1])
    again = services.trigger_workflow_idempotent(request=request, idempotency_key="k",
                                                 request_fingerprint=["a", 1])

    assert (first.status, first.replayed, again.replayed) == (202, False, True)
    assert again.body == first.body == {
        "trigger_id": str(Trigger.objects.get().id),
        "runs": [{"id": str(Run.objects.get().id), "recipient": "u1"}]}
    with pytest.raises(idempotency.IdempotencyMismatch):
        services.trigger_workflow_idempotent(request=request, idempotency_key="k",
                                             request_fingerprint=["b", 1])
    assert row_counts()["triggers"] == 1


def test_idempotency_key_reused_with_another_body_is_422(api, welcome):
    api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")

    response = api.post(TRIGGER, {"recipients": ["u2"]}, HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 422
    assert response.json() == {"error": "idempotency_key_reused",
                               "detail": "This Idempotency-Key was used with a different request."}
    assert Trigger.objects.count() == 1


def test_idempotency_key_reused_on_another_workflow_is_422(api, welcome, make_workflow):
    make_workflow("other", steps=[in_app_step()])
    api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")

    response = api.post("/api/v1/workflows/other/trigger", {"recipients": ["u1"]},
                        HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 422
    assert response.json() == {"error": "idempotency_key_reused",
                               "detail": "This Idempotency-Key was used with a different request."}
    assert Trigger.objects.count() == 1


@pytest.mark.parametrize("second_body", [{"recipients": ["u1"]}, {"recipients": ["u2"]}],
                         ids=["same-body", "other-body"])
def test_idempotency_key_in_progress_is_409(api, api_key, welcome, second_body):
    # A claim without its answer, as an older Clarion wrote before its trigger.
    IdempotencyRecord.objects.create(api_key=api_key[0], key="busy", request_hash="0" * 64)

    response = api.post(TRIGGER, second_body, HTTP_IDEMPOTENCY_KEY="busy")

    assert response.status_code == 409
    assert response["Retry-After"] == "1"
    assert response.json() == {
        "error": "idempotency_key_in_use",
        "detail": "A request with this Idempotency-Key is still being processed.",
    }
    assert Trigger.objects.count() == 0
    assert IdempotencyRecord.objects.get().in_progress


def test_idempotency_key_held_past_the_lock_time_is_taken_over(api, api_key, welcome, settings):
    record = IdempotencyRecord.objects.create(api_key=api_key[0], key="dead",
                                              request_hash="0" * 64)
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        created_at=timezone.now()
        - timedelta(seconds=settings.CLARION["IDEMPOTENCY_LOCK_SECONDS"] + 1))

    response = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="dead")

    assert response.status_code == 202, response.content
    assert "Idempotent-Replayed" not in response
    record = IdempotencyRecord.objects.get()
    assert (record.response_status, record.response_body) == (202, response.json())


def test_idempotency_key_expires_after_24_hours(api, welcome):
    first = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="old")
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))

    again = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="old")

    assert again.status_code == 202
    assert "Idempotent-Replayed" not in again
    assert again.json()["trigger_id"] != first.json()["trigger_id"]
    assert Trigger.objects.count() == 2


@pytest.mark.parametrize("key", ["", "k" * 256], ids=["empty", "256-chars"])
def test_idempotency_key_of_bad_length_is_400(api, welcome, key):
    response = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY=key)

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "detail": "Idempotency-Key must have 1 to 255 characters."}
    assert row_counts()["triggers"] == 0


def test_idempotency_key_of_255_chars_is_accepted(api, welcome):
    key = "k" * 255
    first = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY=key)
    replay = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY=key)

    assert first.status_code == 202, first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.get().key == key


def test_a_rejected_request_does_not_consume_the_idempotency_key(api, welcome):
    bad = api.post(TRIGGER, {"recipients": [{"id": "u1", "email": "nope"}]},
                   HTTP_IDEMPOTENCY_KEY="k")
    assert bad.status_code == 400
    assert IdempotencyRecord.objects.count() == 0

    good = api.post(TRIGGER, {"recipients": [{"id": "u1", "email": "u1@example.com"}]},
                    HTTP_IDEMPOTENCY_KEY="k")

    assert good.status_code == 202, good.content
    assert "Idempotent-Replayed" not in good
    assert Trigger.objects.count() == 1


def test_a_request_that_fails_in_the_service_releases_the_idempotency_key(
        api, welcome, monkeypatch):
    def explode(request, ids):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services.triggers, "_trigger_write", explode)
    api.raise_request_exception = False
    failed = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")
    assert failed.status_code == 500
    assert IdempotencyRecord.objects.count() == 0

    monkeypatch.undo()
    retried = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")

    assert retried.status_code == 202, retried.content
    assert "Idempotent-Replayed" not in retried


def test_a_trigger_whose_one_statement_fails_writes_nothing_and_releases_the_key(
        api, welcome, monkeypatch):
    # With a profile, on PostgreSQL the record, the recipient and the trigger's rows are one
    # statement (services/trigger_statement.py): a Trigger row the database refuses (no data:
    # NOT NULL) fails all of it; elsewhere the transaction.
    make_row = services.triggers._trigger_row

    def refused(request, ids, **kwargs):
        trigger = make_row(request, ids, **kwargs)
        trigger.data = None
        return trigger

    monkeypatch.setattr(services.triggers, "_trigger_row", refused)
    api.raise_request_exception = False
    body = {"recipients": [{"id": "u1", "name": "U1"}]}
    failed = api.post(TRIGGER, body, HTTP_IDEMPOTENCY_KEY="k")
    assert failed.status_code == 500
    assert not IdempotencyRecord.objects.exists()
    assert not Recipient.objects.filter(external_id="u1").exists()
    assert not Trigger.objects.exists() and not Run.objects.exists()

    monkeypatch.undo()
    retried = api.post(TRIGGER, body, HTTP_IDEMPOTENCY_KEY="k")
    assert retried.status_code == 202, retried.content
    assert "Idempotent-Replayed" not in retried
    assert Recipient.objects.get(external_id="u1").name == "U1"
    assert Run.objects.get().recipient.external_id == "u1"


def test_idempotency_keys_are_per_api_key(api, welcome):
    _, other_secret = services.api_key_create(name="other")
    other = client_for(other_secret)

    first = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")
    second = other.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k")

    assert second.status_code == 202
    assert "Idempotent-Replayed" not in second
    assert second.json()["trigger_id"] != first.json()["trigger_id"]
    assert Trigger.objects.count() == 2
