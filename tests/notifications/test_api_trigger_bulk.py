"""The bulk trigger: one 207 answer with a result per trigger, each trigger on its own."""

import pytest

from notifications.models import IdempotencyRecord, Run, Trigger

from ..conftest import email_step, in_app_step

BULK = "/api/v1/workflows/welcome/trigger/bulk"
TRIGGER = "/api/v1/workflows/welcome/trigger"


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", steps=[in_app_step(), email_step()])


def test_bulk_answers_207_with_one_accepted_result_per_trigger_in_order(api, welcome):
    response = api.post(BULK, {"triggers": [
        {"recipients": ["u1", "u2"], "data": {"n": 1}},
        {"recipients": ["u3"], "data": {"n": 2}, "cancellation_key": "c2"},
    ]})

    assert response.status_code == 207, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 202]
    first, second = (Trigger.objects.get(pk=r["trigger_id"]) for r in results)
    assert first.data == {"n": 1} and second.data == {"n": 2}
    assert second.cancellation_key == "c2"
    assert [run["recipient"] for run in results[0]["runs"]] == ["u1", "u2"]
    assert results[1]["runs"] == [{"id": str(second.runs.get().id), "recipient": "u3"}]
    assert set(results[0]) == {"status", "trigger_id", "runs"}


def test_bulk_mixed_valid_and_invalid_commits_the_valid_and_names_each_bad_field(api, welcome):
    response = api.post(BULK, {"triggers": [
        {"recipients": ["u1"]},
        {"recipients": [{"id": "u2", "email": "not-an-email"}]},
        {"recipients": ["u3"], "tenant": "nope"},
        {"recipients": ["u4"], "recipent": "typo"},
        "not an object",
        {"recipients": ["u5"]},
    ]})

    assert response.status_code == 207, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 400, 400, 400, 400, 202]
    assert results[1] == {"status": 400, "error": "invalid_request",
                          "detail": "The request is not valid; see `fields`.",
                          "fields": {"recipients[0].email": ["Enter a valid email address."]}}
    assert results[2]["fields"] == {"tenant": ["Unknown tenant 'nope'."]}
    assert results[3]["fields"] == {"recipent": [
        "Unknown field; expected one of: recipients, data, actor, tenant, cancellation_key, "
        "idempotency_key."]}
    assert list(results[4]["fields"]) == ["body"]
    assert sorted(Run.objects.values_list("recipient__external_id", flat=True)) == ["u1", "u5"]
    assert Trigger.objects.count() == 2


def test_bulk_of_more_than_1000_triggers_is_400_naming_triggers(api, welcome):
    response = api.post(BULK, {"triggers": [{"recipients": ["u1"]}] * 1001})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["triggers"]
    assert Trigger.objects.count() == 0


def test_bulk_of_exactly_1000_triggers_is_accepted(api, welcome):
    response = api.post(BULK, {"triggers": [{"recipients": [f"u{i}"]} for i in range(1000)]})

    assert response.status_code == 207
    assert {r["status"] for r in response.json()["results"]} == {202}
    assert Trigger.objects.count() == 1000 and Run.objects.count() == 1000


@pytest.mark.parametrize("body, field", [
    ({}, "triggers"),
    ({"triggers": []}, "triggers"),
    ({"triggers": "x"}, "triggers"),
    ({"triggers": [{"recipients": ["u1"]}], "extra": 1}, "extra"),
])
def test_bulk_body_that_is_not_a_list_of_triggers_is_400_naming_the_field(api, welcome, body,
                                                                          field):
    response = api.post(BULK, body)

    assert response.status_code == 400
    assert field in response.json()["fields"]


def test_bulk_to_unknown_workflow_is_404(api, db):
    response = api.post("/api/v1/workflows/nope/trigger/bulk",
                        {"triggers": [{"recipients": ["u"]}]})

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_bulk_idempotency_key_replays_the_first_answer_and_triggers_once(api, welcome):
    item = {"recipients": ["u1"], "idempotency_key": "order-1"}
    first = api.post(BULK, {"triggers": [item]}).json()["results"][0]
    again = api.post(BULK, {"triggers": [item, {**item, "data": {"other": True}}]})

    results = again.json()["results"]
    assert results[0] == {**first, "replayed": True}
    assert results[1]["status"] == 422
    assert results[1]["error"] == "idempotency_key_reused"
    assert Trigger.objects.count() == 1


def test_bulk_idempotency_key_is_the_single_triggers_idempotency_key(api, welcome):
    single = api.post(TRIGGER, {"recipients": ["u1"]}, HTTP_IDEMPOTENCY_KEY="k1")
    bulk = api.post(BULK, {"triggers": [{"recipients": ["u1"], "idempotency_key": "k1"}]})

    result = bulk.json()["results"][0]
    assert result["status"] == 202 and result["replayed"] is True
    assert result["trigger_id"] == single.json()["trigger_id"]
    assert Trigger.objects.count() == 1


def test_bulk_idempotency_key_still_in_progress_is_a_409_result(api, api_key, welcome):
    IdempotencyRecord.objects.create(api_key=api_key[0], key="busy", request_hash="x")

    response = api.post(BULK, {"triggers": [{"recipients": ["u1"], "idempotency_key": "busy"},
                                            {"recipients": ["u2"]}]})

    results = response.json()["results"]
    assert [r["status"] for r in results] == [409, 202]
    assert results[0]["error"] == "idempotency_key_in_use"
    assert results[0]["retry_after"] == 1 and "retry_after" not in results[1]
    assert response["Retry-After"] == "1"


def test_bulk_answer_without_a_busy_key_has_no_retry_after(api, welcome):
    response = api.post(BULK, {"triggers": [{"recipients": ["u1"]}]})

    assert response.status_code == 207 and not response.has_header("Retry-After")


def test_bulk_invalid_idempotency_key_is_named(api, welcome):
    response = api.post(BULK, {"triggers": [{"recipients": ["u1"], "idempotency_key": ""},
                                            {"recipients": ["u1"], "idempotency_key": "k" * 256}]})

    results = response.json()["results"]
    assert [list(r["fields"]) for r in results] == [["idempotency_key"], ["idempotency_key"]]
    assert Trigger.objects.count() == 0


def test_bulk_failure_of_one_trigger_rolls_back_only_that_trigger(api, welcome, monkeypatch):
    from notifications import idempotency, services

    real = services.triggers._trigger_write

    def fail_for_u2(request, ids):
        trigger, runs = real(request, ids)
        if request.recipients == ["u2"]:
            raise idempotency.IdempotencyMismatch()  # surfaces as that trigger's 422
        return trigger, runs

    monkeypatch.setattr(services.triggers, "_trigger_write", fail_for_u2)
    response = api.post(BULK, {"triggers": [
        {"recipients": ["u1"]},
        {"recipients": ["u2"], "idempotency_key": "k2"},
        {"recipients": ["u3"]},
    ]})

    assert [r["status"] for r in response.json()["results"]] == [202, 422, 202]
    assert sorted(Run.objects.values_list("recipient__external_id", flat=True)) == ["u1", "u3"]
    assert not IdempotencyRecord.objects.filter(key="k2").exists()  # released


def test_bulk_restricted_key_gets_403_for_another_tenant_and_its_own_tenant_elsewhere(
        acme_api, acme, globex, welcome):
    response = acme_api.post(BULK, {"triggers": [
        {"recipients": ["u1"], "tenant": "globex"},
        {"recipients": ["u2"]},
        {"recipients": [{"id": "u3", "name": "Rewritten"}]},
    ]})

    results = response.json()["results"]
    assert [r["status"] for r in results] == [403, 202, 403]
    assert results[0]["error"] == "forbidden"
    assert Trigger.objects.get().tenant == acme


def test_bulk_inactive_workflow_is_422(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()], active=False)

    response = api.post(BULK, {"triggers": [{"recipients": ["u1"]}]})

    assert response.status_code == 422
    assert response.json()["error"] == "workflow_inactive"
