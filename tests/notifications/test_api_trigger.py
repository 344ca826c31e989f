"""The trigger endpoint: accepted and refused triggers, and tenant-restricted keys
(Idempotency-Key: test_api_trigger_idempotency.py; runs and triggers read back:
test_api_runs.py)."""


import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from notifications import services
from notifications.models import (
    ApiKey,
    Recipient,
    Run,
    Subscription,
    Topic,
    Trigger,
    Workflow,
)

from ..conftest import email_step, in_app_step, invalid
from .trigger_support import TRIGGER, row_counts, welcome_workflow


@pytest.fixture
def welcome(make_workflow):
    return welcome_workflow(make_workflow)


# --- Accepted triggers ------------------------------------------------------------------------

def test_trigger_answers_202_with_trigger_id_and_one_run_per_recipient(api, welcome):
    response = api.post(TRIGGER, {"recipients": ["u1", "u2"], "data": {"body": "x"}})

    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == {"trigger_id", "runs"}
    trigger = Trigger.objects.get()
    assert body["trigger_id"] == str(trigger.id)
    run_ids = {run.recipient.external_id: str(run.id) for run in trigger.runs.all()}
    assert body["runs"] == [{"id": run_ids["u1"], "recipient": "u1"},
                            {"id": run_ids["u2"], "recipient": "u2"}]
    assert trigger.data == {"body": "x"}
    assert trigger.workflow == welcome
    assert trigger.fanout == Trigger.Fanout.DONE


def test_trigger_by_id_creates_a_bare_recipient(api, welcome):
    response = api.post(TRIGGER, {"recipients": ["new-user"]})

    assert response.status_code == 202, response.content
    recipient = Recipient.objects.get(external_id="new-user")
    assert (recipient.name, recipient.email, recipient.data) == ("", "", {})


def test_trigger_names_a_recipient_twice_gets_one_run(api, welcome):
    response = api.post(TRIGGER, {"recipients": ["u1", {"id": "u1", "name": "Ada"}]})

    assert response.status_code == 202, response.content
    assert len(response.json()["runs"]) == 1
    assert Run.objects.count() == 1


def test_trigger_inline_recipient_is_created_with_its_channel_data(api, welcome):
    response = api.post(TRIGGER, {"recipients": [{
        "id": "u1", "name": "Ada", "email": "ada@example.com", "phone": "+15550001111",
        "locale": "en-GB", "timezone": "Europe/London", "data": {"plan": "pro"},
        "channel_data": {"push": {"tokens": ["t1"]}},
    }]})

    assert response.status_code == 202, response.content
    recipient = Recipient.objects.get(external_id="u1")
    assert (recipient.name, recipient.email, recipient.phone, recipient.locale,
            recipient.timezone, recipient.data) == (
        "Ada", "ada@example.com", "+15550001111", "en-GB", "Europe/London", {"plan": "pro"})
    assert list(recipient.channel_data.values_list("channel", "provider_kind", "data")) == [
        ("push", "", {"tokens": ["t1"]})
    ]


def test_trigger_inline_recipient_merges_into_an_existing_profile(api, welcome):
    services.recipient_upsert(external_id="u1", name="Ada", email="ada@example.com",
                              timezone="Europe/London", data={"plan": "free"})

    response = api.post(TRIGGER, {"recipients": [{"id": "u1", "name": "Ada L.",
                                                  "data": {"plan": "pro"}}]})

    assert response.status_code == 202, response.content
    recipient = Recipient.objects.get(external_id="u1")
    assert (recipient.name, recipient.email, recipient.timezone, recipient.data) == (
        "Ada L.", "ada@example.com", "Europe/London", {"plan": "pro"})
    assert Recipient.objects.count() == 1


def test_trigger_upserts_an_inline_actor(api, welcome):
    response = api.post(TRIGGER, {"recipients": ["u1"],
                                  "actor": {"id": "boss", "name": "The Boss"}})

    assert response.status_code == 202, response.content
    assert Recipient.objects.get(external_id="boss").name == "The Boss"
    assert Trigger.objects.get().actor == {"id": "boss", "name": "The Boss"}
    assert Run.objects.get().recipient.external_id == "u1"


def test_trigger_stores_cancellation_key_and_tenant(api, welcome, acme):
    response = api.post(TRIGGER, {"recipients": ["u1"], "tenant": "acme",
                                  "cancellation_key": "order-7"})

    assert response.status_code == 202, response.content
    trigger = Trigger.objects.get()
    assert (trigger.tenant, trigger.cancellation_key) == (acme, "order-7")
    assert Run.objects.get().tenant == acme


def test_trigger_records_the_api_key_and_when_it_was_last_used(api, api_key, welcome):
    assert api_key[0].last_used_at is None

    api.post(TRIGGER, {"recipients": ["u1"]})

    assert Trigger.objects.get().api_key == api_key[0]
    api_key[0].refresh_from_db()
    assert api_key[0].last_used_at is not None


def test_topic_runs_are_created_by_the_fanout_task(api, welcome, run_tasks, locmem):
    topic = Topic.objects.create(key="project-42")
    for external_id in ("a", "b", "c"):
        recipient, _ = services.recipient_upsert(external_id=external_id)
        Subscription.objects.create(topic=topic, recipient=recipient)

    response = api.post(TRIGGER, {"recipients": ["b", {"topic": "project-42"}, "d"]})

    assert response.status_code == 202, response.content
    body = response.json()
    assert [run["recipient"] for run in body["runs"]] == ["b", "d"]
    detail = api.get(f"/api/v1/triggers/{body['trigger_id']}").json()
    assert detail["fanout"] == "pending"
    assert sorted(run["recipient"] for run in detail["runs"]) == ["b", "d"]

    run_tasks()

    detail = api.get(f"/api/v1/triggers/{body['trigger_id']}").json()
    assert detail["fanout"] == "done"
    assert sorted(run["recipient"] for run in detail["runs"]) == ["a", "b", "c", "d"]
    assert {run["id"] for run in body["runs"]} <= {run["id"] for run in detail["runs"]}
    assert Run.objects.filter(recipient__external_id="b").count() == 1
    fanned = Run.objects.get(recipient__external_id="a")
    assert fanned.step_logs.first().detail == {"trigger_id": body["trigger_id"],
                                               "via": "topic:project-42"}


def test_topic_fanout_run_twice_creates_no_second_run(api, welcome, run_tasks):
    topic = Topic.objects.create(key="t")
    recipient, _ = services.recipient_upsert(external_id="a")
    Subscription.objects.create(topic=topic, recipient=recipient)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "t"}]}).json()["trigger_id"]

    Trigger.objects.filter(pk=trigger_id).update(fanout=Trigger.Fanout.PENDING)
    services.trigger_fanout(trigger_id=trigger_id)
    Trigger.objects.filter(pk=trigger_id).update(fanout=Trigger.Fanout.PENDING)
    services.trigger_fanout(trigger_id=trigger_id)

    assert Run.objects.filter(trigger_id=trigger_id).count() == 1


# --- Refused triggers -------------------------------------------------------------------------

def test_trigger_of_an_unknown_workflow_is_404(api, db):
    response = api.post("/api/v1/workflows/nope/trigger", {"recipients": ["u1"]})

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No workflow 'nope'."}


def test_trigger_without_a_key_is_401_even_for_an_unknown_workflow(db):
    response = APIClient().post("/api/v1/workflows/nope/trigger", {"recipients": ["u1"]},
                                format="json")

    assert response.status_code == 401


def test_trigger_of_an_inactive_workflow_is_422(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()], active=False)

    response = api.post(TRIGGER, {"recipients": ["u1"]})

    assert response.status_code == 422
    assert response.json() == {"error": "workflow_inactive",
                               "detail": "The workflow 'welcome' is not active."}
    assert row_counts()["triggers"] == 0


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "Authentication credentials were not provided."),
        ({"HTTP_AUTHORIZATION": "Token abc"},
         "Expected 'Authorization: Bearer <api key>'."),
        ({"HTTP_AUTHORIZATION": "Bearer "}, "Expected 'Authorization: Bearer <api key>'."),
        ({"HTTP_AUTHORIZATION": "Bearer ck_nope_not-a-key"}, "Invalid or revoked API key."),
    ],
    ids=["missing", "wrong-scheme", "empty-secret", "unknown-key"],
)
def test_trigger_without_a_valid_key_is_401(welcome, headers, detail):
    response = APIClient().post(TRIGGER, {"recipients": ["u1"]}, format="json", **headers)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": detail}
    assert response["WWW-Authenticate"] == "Bearer"
    assert row_counts()["triggers"] == 0


def test_trigger_with_a_revoked_key_is_401(api, api_key, welcome):
    services.api_key_revoke(api_key=api_key[0])

    response = api.post(TRIGGER, {"recipients": ["u1"]})

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": "Invalid or revoked API key."}
    assert response["WWW-Authenticate"] == "Bearer"
    assert row_counts()["triggers"] == 0


def test_a_key_revoked_here_is_refused_at_once_though_this_process_kept_it(api, api_key,
                                                                           welcome):
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 202  # now kept
    services.api_key_revoke(api_key=api_key[0])

    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 401


def test_a_key_revoked_by_another_process_is_refused_within_the_cache_seconds(
        api, api_key, welcome, clarion_settings, monkeypatch):
    from notifications.services import keys

    clarion_settings(API_KEY_CACHE_SECONDS=5)
    now = [1000.0]
    monkeypatch.setattr(keys, "_clock", lambda: now[0])
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 202  # kept until 1005
    # Another process revokes it: no signal reaches this one.
    ApiKey.objects.filter(pk=api_key[0].pk).update(revoked_at=timezone.now())

    now[0] = 1004.9
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 202
    now[0] = 1005.1
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 401
    clarion_settings(API_KEY_CACHE_SECONDS=0)  # not kept: read every time
    keys.api_keys_forget()
    ApiKey.objects.filter(pk=api_key[0].pk).update(revoked_at=None)
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 202
    ApiKey.objects.filter(pk=api_key[0].pk).update(revoked_at=timezone.now())
    assert api.post(TRIGGER, {"recipients": ["u1"]}).status_code == 401


def test_a_kept_key_answers_each_request_with_its_own_copy(api_key, acme):
    from notifications.services import api_key_authenticate, api_key_create

    _, secret = api_key_create(name="acme", tenant=acme)
    first, second = (api_key_authenticate(secret=secret) for _ in range(2))
    assert first == second and first is not second and first.tenant is not second.tenant
    first.tenant.name = "Changed by one request"
    assert second.tenant.name == "Acme" == api_key_authenticate(secret=secret).tenant.name


# Ids alone: the kept workflow is checked by a read of its own, then the transaction; a profile
# (on PostgreSQL): in the trigger's one statement (services/trigger_statement.py).
@pytest.mark.parametrize("u1", ["u1", {"id": "u1", "name": "U"}], ids=["id", "profile"])
def test_a_workflow_kept_by_the_process_is_read_again_after_any_change(api, make_workflow, u1):
    make_workflow("welcome", steps=[in_app_step()])
    first = api.post(TRIGGER, {"recipients": [u1], "data": {"n": 1}})
    assert first.status_code == 202  # the workflow is now kept
    # A publish (here: the API's PUT) is used by the next trigger.
    workflow = make_workflow("welcome", steps=[in_app_step(), email_step()],
                             data_schema={"type": "object", "required": ["n"]})
    second = api.post(TRIGGER, {"recipients": [u1], "data": {"n": 2}})
    assert Run.objects.get(pk=second.json()["runs"][0]["id"]).workflow_version_id == \
        workflow.published_version_id != Run.objects.get(
            pk=first.json()["runs"][0]["id"]).workflow_version_id
    assert api.post(TRIGGER, {"recipients": [u1], "data": {}}).status_code == 400  # its schema
    # Deactivated (by any process: no signal is needed) is refused at once, and back.
    workflow.active = False
    workflow.save()
    assert api.post(TRIGGER, {"recipients": [u1], "data": {"n": 3}}).status_code == 422
    workflow.active = True
    workflow.save()
    assert api.post(TRIGGER, {"recipients": [u1], "data": {"n": 4}}).status_code == 202
    Workflow.objects.filter(pk=workflow.pk).update(active=False)  # updated_at left alone
    assert api.post(TRIGGER, {"recipients": [u1], "data": {"n": 5}}).status_code == 422


@pytest.mark.parametrize("u1", ["u1", {"id": "u1", "name": "U"}], ids=["id", "profile"])
def test_a_request_refused_by_a_kept_workflow_that_changed_is_judged_by_the_new_one(
        api, make_workflow, u1):
    make_workflow("welcome", steps=[in_app_step()], data_schema={
        "type": "object", "required": ["n"]})
    assert api.post(TRIGGER, {"recipients": [u1], "data": {"n": 1}}).status_code == 202  # kept
    make_workflow("welcome", steps=[in_app_step()])  # published again: no schema
    # The kept copy's schema refuses it; the workflow read again accepts it.
    second = api.post(TRIGGER, {"recipients": [u1], "data": {}}, HTTP_IDEMPOTENCY_KEY="k")
    assert second.status_code == 202, second.content
    assert Trigger.objects.filter(idempotency_key="k").count() == 1


def test_the_bearer_scheme_is_case_insensitive(api_key, welcome):
    client = APIClient()

    response = client.post(TRIGGER, {"recipients": ["u1"]}, format="json",
                           HTTP_AUTHORIZATION=f"bearer {api_key[1]}")

    assert response.status_code == 202, response.content


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"recipients": ["This field is required."]}),
        ({"recipients": []}, {"recipients": ["This list may not be empty."]}),
        ({"recipients": "u1"},
         {"recipients": ['Expected a list of items but got type "str".']}),
        ({"recipients": ["u1", {"id": "u2", "email": "not-an-email"}]},
         {"recipients[1].email": ["Enter a valid email address."]}),
        ({"recipients": [{"id": "u1", "phone": "555-0100"}]},
         {"recipients[0].phone": ["Expected an E.164 number like +15550001111."]}),
        ({"recipients": [{"id": "u1", "timezone": "Mars/Olympus_Mons"}]},
         {"recipients[0].timezone": [
             "Unknown time zone 'Mars/Olympus_Mons'; use an IANA name like 'Europe/Paris'."]}),
        ({"recipients": [{"id": "u1", "locale": "english!"}]},
         {"recipients[0].locale": ["Expected a locale like 'en' or 'pt-BR'."]}),
        ({"recipients": [{"name": "No id"}]},
         {"recipients[0].id": ["This field is required."]}),
        ({"recipients": [{"id": "u1", "nickname": "A"}]},
         {"recipients[0].nickname": [
             "Unknown field; expected one of: name, email, phone, locale, timezone, data, "
             "channel_data, id."]}),
        ({"recipients": [{"id": "u1", "channel_data": {"fax": {"n": 1}}}]},
         {"recipients[0].channel_data.fax": [
             "Unknown channel; expected one of email, sms, push, chat, whatsapp, in_app, "
             "webhook."]}),
        ({"recipients": [""]},
         {"recipients[0]": ["A recipient id has 1 to 255 characters."]}),
        ({"recipients": ["x" * 256]},
         {"recipients[0]": ["A recipient id has 1 to 255 characters."]}),
        ({"recipients": [None]},
         {"recipients[0]": ["This field may not be null."]}),
        ({"recipients": [True]},
         {"recipients[0]": [
             'Expected a recipient id, an object with "id", or {"topic": "<key>"}.']}),
        ({"recipients": [{"topic": "nope"}]},
         {"recipients[0].topic": ["Unknown topic 'nope'."]}),
        ({"recipients": [{"topic": "t", "id": "u1"}]},
         {"recipients[0].id": ["Unknown field; expected one of: topic."]}),
        ({"recipients": ["u1"], "tenant": "nope"}, {"tenant": ["Unknown tenant 'nope'."]}),
        ({"recipients": ["u1"], "data": ["not", "an", "object"]},
         {"data": ['Expected a dictionary of items but got type "list".']}),
        ({"recipients": ["u1"], "actor": 7},
         {"actor": ['Expected a recipient id or an object with "id".']}),
        ({"recipients": ["u1"], "actor": {"id": "a", "email": "nope"}},
         {"actor.email": ["Enter a valid email address."]}),
        ({"recipients": ["u1"], "cancellation_key": "k" * 256},
         {"cancellation_key": ["Ensure this field has no more than 255 characters."]}),
        ({"recipients": ["u1", {"id": "u2", "email": "bad"}, {"topic": "nope"}],
          "tenant": "nope"},
         {"recipients[1].email": ["Enter a valid email address."],
          "recipients[2].topic": ["Unknown topic 'nope'."],
          "tenant": ["Unknown tenant 'nope'."]}),
        (["u1"], {"body": ["Invalid data. Expected a dictionary, but got list."]}),
    ],
    ids=["missing-recipients", "empty-recipients", "recipients-not-a-list", "bad-email",
         "bad-phone", "bad-timezone", "bad-locale", "inline-without-id", "unknown-profile-field",
         "unknown-channel", "empty-id", "long-id", "null-id", "bool-id", "unknown-topic",
         "topic-with-extra-keys", "unknown-tenant", "data-not-an-object", "bad-actor",
         "bad-actor-email", "long-cancellation-key", "several-at-once", "body-not-an-object"],
)
def test_trigger_with_a_bad_body_is_400_naming_each_field_and_writes_nothing(
        api, welcome, body, fields):
    Topic.objects.create(key="t")
    before = row_counts()

    response = api.post(TRIGGER, body)

    assert response.status_code == 400, response.content
    assert response.json() == invalid(fields)
    assert row_counts() == before


def test_trigger_data_must_match_the_workflows_data_schema(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()], data_schema={
        "type": "object",
        "required": ["plan"],
        "properties": {"plan": {"enum": ["free", "pro"]},
                       "seats": {"type": "integer", "minimum": 1}},
    })
    before = row_counts()

    missing = api.post(TRIGGER, {"recipients": ["u1"], "data": {"seats": 3}})
    wrong = api.post(TRIGGER, {"recipients": ["u1"], "data": {"plan": "gold", "seats": 0}})

    assert missing.status_code == 400
    assert missing.json() == invalid({"data.plan": ["'plan' is a required property"]})
    assert wrong.status_code == 400
    assert wrong.json() == invalid({
        "data.plan": ["'gold' is not one of ['free', 'pro']"],
        "data.seats": ["0 is less than the minimum of 1"],
    })
    assert row_counts() == before

    ok = api.post(TRIGGER, {"recipients": ["u1"], "data": {"plan": "pro", "seats": 2}})
    assert ok.status_code == 202, ok.content


def test_trigger_data_schema_errors_name_nested_and_root_paths(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()], data_schema={
        "type": "object",
        "additionalProperties": False,
        "properties": {"items": {"type": "array", "items": {
            "type": "object", "required": ["sku"], "properties": {"sku": {"type": "string"}},
        }}},
    })

    response = api.post(TRIGGER, {"recipients": ["u1"],
                                  "data": {"items": [{"sku": "a"}, {"sku": 2}, {}], "x": 1}})

    assert response.status_code == 400
    assert response.json() == invalid({
        "data": ["Additional properties are not allowed ('x' was unexpected)"],
        "data.items[1].sku": ["2 is not of type 'string'"],
        "data.items[2].sku": ["'sku' is a required property"],
    })
    assert row_counts()["triggers"] == 0


def test_trigger_with_more_than_1000_recipients_is_400(api, welcome):
    before = row_counts()

    response = api.post(TRIGGER, {"recipients": [f"u{i}" for i in range(1001)]})

    assert response.status_code == 400
    assert response.json() == invalid({"recipients": [
        "At most 1000 recipients per trigger; use a topic for larger audiences."]})
    assert row_counts() == before


def test_trigger_with_exactly_1000_recipients_is_accepted(api, welcome):
    response = api.post(TRIGGER, {"recipients": [f"u{i}" for i in range(1000)]})

    assert response.status_code == 202, response.content
    assert len(response.json()["runs"]) == 1000


def test_trigger_with_malformed_json_is_400_parse_error(api, welcome):
    response = api.generic("POST", TRIGGER, '{"recipients": [', content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "error": "parse_error",
        "detail": "JSON parse error - Expecting value: line 1 column 17 (char 16)",
    }
    assert row_counts()["triggers"] == 0


def test_trigger_with_a_non_json_body_is_415(api, welcome):
    response = api.generic("POST", TRIGGER, "recipients=u1",
                           content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json() == {
        "error": "unsupported_media_type",
        "detail": 'Unsupported media type "application/x-www-form-urlencoded" in request.',
    }


# --- Tenant-restricted keys -------------------------------------------------------------------

def test_restricted_key_triggers_for_its_own_tenant(acme_api, acme, welcome):
    response = acme_api.post(TRIGGER, {"recipients": ["u1"]})

    assert response.status_code == 202, response.content
    assert Trigger.objects.get().tenant == acme
    assert Run.objects.get().tenant == acme


def test_restricted_key_may_name_its_own_tenant(acme_api, acme, welcome):
    response = acme_api.post(TRIGGER, {"recipients": ["u1"], "tenant": "acme"})

    assert response.status_code == 202, response.content
    assert Trigger.objects.get().tenant == acme


def test_restricted_key_naming_another_tenant_is_403(acme_api, globex, welcome):
    response = acme_api.post(TRIGGER, {"recipients": ["u1"], "tenant": "globex"})

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden",
                               "detail": "This API key is restricted to another tenant."}
    assert row_counts()["triggers"] == 0
    assert row_counts()["recipients"] == 0


@pytest.mark.parametrize("body", [
    {"recipients": [{"id": "u1", "email": "attacker@example.com"}]},
    {"recipients": ["u2"], "actor": {"id": "u1", "email": "attacker@example.com"}},
    {"recipients": [{"id": "u1", "channel_data": {"push": {"tokens": ["evil"]}}}]},
], ids=["recipient", "actor", "channel-data"])
def test_restricted_key_cannot_rewrite_recipient_profiles_inline(acme_api, welcome, body):
    services.recipient_upsert(external_id="u1", email="ada@example.com")

    response = acme_api.post(TRIGGER, body)

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "This API key is restricted to "
                               "one tenant and cannot manage global resources."}
    assert Recipient.objects.get(external_id="u1").email == "ada@example.com"
    assert (row_counts()["triggers"], row_counts()["channel_data"]) == (0, 0)


def test_restricted_key_may_name_recipients_by_id_only_objects(acme_api, welcome):
    response = acme_api.post(TRIGGER, {"recipients": [{"id": "u1"}, "u2"], "actor": {"id": "u3"}})

    assert response.status_code == 202, response.content
    assert [run["recipient"] for run in response.json()["runs"]] == ["u1", "u2"]


def test_restricted_key_cannot_fan_out_to_another_tenants_topic(acme_api, acme, globex,
                                                                 welcome):
    Topic.objects.create(key="globex-staff", tenant=globex)
    Topic.objects.create(key="acme-staff", tenant=acme)
    Topic.objects.create(key="everyone")

    other = acme_api.post(TRIGGER, {"recipients": [{"topic": "globex-staff"}]})
    own = acme_api.post(TRIGGER, {"recipients": [{"topic": "acme-staff"}]})
    untenanted = acme_api.post(TRIGGER, {"recipients": [{"topic": "everyone"}]})

    assert other.status_code == 400
    assert other.json() == invalid({"recipients[0].topic": ["Unknown topic 'globex-staff'."]})
    assert own.status_code == 202, own.content
    assert untenanted.status_code == 202, untenanted.content
    assert Trigger.objects.count() == 2


def test_restricted_key_sees_only_its_tenants_runs_and_triggers(api, acme_api, acme, globex,
                                                                 welcome):
    own = acme_api.post(TRIGGER, {"recipients": ["u1"]}).json()
    other = api.post(TRIGGER, {"recipients": ["u1"], "tenant": "globex"}).json()
    untenanted = api.post(TRIGGER, {"recipients": ["u1"]}).json()

    assert acme_api.get(f"/api/v1/triggers/{own['trigger_id']}").status_code == 200
    assert acme_api.get(f"/api/v1/runs/{own['runs'][0]['id']}").status_code == 200
    for body in (other, untenanted):
        trigger = acme_api.get(f"/api/v1/triggers/{body['trigger_id']}")
        run = acme_api.get(f"/api/v1/runs/{body['runs'][0]['id']}")
        assert trigger.status_code == 404
        assert trigger.json() == {"error": "not_found",
                                  "detail": f"No trigger '{body['trigger_id']}'."}
        assert run.status_code == 404
        assert run.json() == {"error": "not_found",
                              "detail": f"No run '{body['runs'][0]['id']}'."}
    # The unrestricted key sees all of them.
    for body in (own, other, untenanted):
        assert api.get(f"/api/v1/triggers/{body['trigger_id']}").status_code == 200
        assert api.get(f"/api/v1/runs/{body['runs'][0]['id']}").status_code == 200
