"""The MCP tools, called through the `mcp` client library against the server in process: what
each answers, and every refusal as the REST API's error body naming the field."""

import pytest
from django.utils import timezone

from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications.agents.notify import NOTIFY_WORKFLOW
from notifications.models import IdempotencyRecord, Message, Recipient, Run, Tenant, Trigger
from notifications.services import api_key_create, api_key_revoke, recipient_upsert, topic_upsert
from preferences.models import PreferenceSet

from ..conftest import advance_at, email_step, in_app_step, in_one_window

pytestmark = pytest.mark.django_db(transaction=True)

PLAN_SCHEMA = {"type": "object", "required": ["plan"],
               "properties": {"plan": {"type": "string"}}}
INVALID = {"error": "invalid_request", "detail": "The request is not valid; see `fields`."}


@pytest.fixture
def key(db):
    return api_key_create(name="agent")[0]


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", name="Welcome", category="onboarding",
                         data_schema=PLAN_SCHEMA,
                         steps=[in_app_step(), email_step(subject="Hi {{ data.plan }}")])


def test_list_workflows_gives_each_active_workflow_its_data_schema(mcp_call, key, welcome,
                                                                   make_workflow):
    make_workflow("retired", active=False, steps=[in_app_step()])
    answer = mcp_call(key, "list_workflows")
    assert not answer.is_error, answer
    assert answer.result == {"workflows": [{
        "key": "welcome", "name": "Welcome", "category": "onboarding", "critical": False,
        "description": "Welcome: in-app, then email.", "data_schema": PLAN_SCHEMA,
    }]}


def test_trigger_workflow_creates_the_trigger_and_its_runs(mcp_call, key, welcome):
    answer = mcp_call(key, "trigger_workflow", {
        "workflow": "welcome", "recipients": ["ada", {"id": "bob", "email": "bob@example.com"}],
        "data": {"plan": "pro"}, "cancellation_key": "signup-1"})
    assert not answer.is_error, answer
    trigger = Trigger.objects.get(pk=answer.result["trigger_id"])
    assert (trigger.data, trigger.cancellation_key, trigger.api_key_id) == (
        {"plan": "pro"}, "signup-1", key.pk)
    assert [run["recipient"] for run in answer.result["runs"]] == ["ada", "bob"]
    assert answer.result["replayed"] is False
    assert Recipient.objects.get(external_id="bob").email == "bob@example.com"


def test_trigger_workflow_with_an_idempotency_key_triggers_once(mcp_call, key, welcome):
    arguments = {"workflow": "welcome", "recipients": ["ada"], "data": {"plan": "pro"},
                 "idempotency_key": "order-7"}
    first = mcp_call(key, "trigger_workflow", arguments)
    again = mcp_call(key, "trigger_workflow", arguments)
    assert again.result == {**first.result, "replayed": True}
    assert Trigger.objects.count() == 1
    other = mcp_call(key, "trigger_workflow", {**arguments, "data": {"plan": "team"}})
    assert other.error == {"error": "idempotency_key_reused",
                           "detail": "This Idempotency-Key was used with a different request."}
    assert IdempotencyRecord.objects.filter(key="order-7").count() == 1


def test_trigger_workflow_refuses_data_against_the_schema_naming_the_field(mcp_call, key,
                                                                           welcome):
    answer = mcp_call(key, "trigger_workflow", {"workflow": "welcome", "recipients": ["ada"],
                                                "data": {"plan": 3}})
    assert answer.error == {**INVALID, "fields": {"data.plan": ["3 is not of type 'string'"]}}
    assert not Trigger.objects.exists()


def test_trigger_workflow_refuses_a_bad_recipient_naming_the_field(mcp_call, key, welcome):
    answer = mcp_call(key, "trigger_workflow", {
        "workflow": "welcome", "recipients": [{"id": "ada", "email": "nope"}],
        "data": {"plan": "pro"}})
    assert answer.error == {**INVALID,
                            "fields": {"recipients[0].email": ["Enter a valid email address."]}}


def test_trigger_workflow_refuses_unknown_profile_fields_as_the_rest_api_does(mcp_call, key,
                                                                              welcome):
    answer = mcp_call(key, "trigger_workflow", {
        "workflow": "welcome", "recipients": [{"id": "ada", "mail": "a@example.com"}],
        "data": {"plan": "pro"}})
    assert answer.is_error and list(answer.error["fields"]) == ["recipients[0].mail"]


def test_arguments_of_the_wrong_type_or_missing_are_named(mcp_call, key, welcome):
    answer = mcp_call(key, "trigger_workflow", {"workflow": 5})
    assert answer.error == {**INVALID, "fields": {
        "workflow": ["Input should be a valid string"],
        "recipients": ["This field is required."]}}
    answer = mcp_call(key, "notify", {"recipient": "ada", "title": "Hi", "body": "x",
                                      "urgency": "asap"})
    assert answer.is_error and list(answer.error["fields"]) == ["urgency"]


def test_an_unknown_or_inactive_workflow_is_refused(mcp_call, key, make_workflow):
    make_workflow("retired", active=False, steps=[in_app_step()])
    assert mcp_call(key, "trigger_workflow", {"workflow": "nope", "recipients": ["ada"]}
                    ).error == {"error": "not_found", "detail": "No workflow 'nope'."}
    assert mcp_call(key, "trigger_workflow", {"workflow": "retired", "recipients": ["ada"]}
                    ).error == {"error": "workflow_inactive",
                                "detail": "The workflow 'retired' is not active."}


def test_an_unknown_tenant_is_named(mcp_call, key, welcome):
    answer = mcp_call(key, "trigger_workflow", {"workflow": "welcome", "recipients": ["ada"],
                                                "data": {"plan": "pro"}, "tenant": "nope"})
    assert answer.error == {**INVALID, "fields": {"tenant": ["Unknown tenant 'nope'."]}}


def test_a_revoked_or_missing_key_is_refused(mcp_call, key, welcome):
    api_key_revoke(api_key=key)
    refused = {"error": "unauthorized", "detail": "Invalid or revoked API key."}
    assert mcp_call(key, "list_workflows").error == refused
    assert mcp_call(None, "list_workflows").error == refused


def test_the_trigger_rate_limit_counts_tool_calls(mcp_call, key, welcome, clarion_settings):
    clarion_settings(TRIGGER_RATE_LIMIT=1, TRIGGER_RATE_LIMIT_WINDOW_SECONDS=3600)
    in_one_window(3600)
    arguments = {"workflow": "welcome", "recipients": ["ada"], "data": {"plan": "pro"}}
    assert not mcp_call(key, "trigger_workflow", arguments).is_error
    refused = mcp_call(key, "trigger_workflow", arguments)
    assert refused.error["error"] == "rate_limited"
    assert Trigger.objects.count() == 1


# --- tenant-restricted keys --------------------------------------------------------------------

@pytest.fixture
def tenants(db):
    return Tenant.objects.create(key="acme", name="Acme"), Tenant.objects.create(
        key="globex", name="Globex")


def test_a_tenant_key_triggers_only_for_its_tenant(mcp_call, tenants, welcome):
    acme, _ = tenants
    acme_key = api_key_create(name="acme agent", tenant=acme)[0]
    refused = mcp_call(acme_key, "trigger_workflow", {
        "workflow": "welcome", "recipients": ["ada"], "data": {"plan": "pro"},
        "tenant": "globex"})
    assert refused.error == {"error": "forbidden",
                             "detail": "This API key is restricted to another tenant."}
    rewritten = mcp_call(acme_key, "notify", {
        "recipient": {"id": "ada", "email": "evil@example.com"}, "title": "t", "body": "b"})
    assert rewritten.error["error"] == "forbidden"
    accepted = mcp_call(acme_key, "trigger_workflow", {
        "workflow": "welcome", "recipients": ["ada"], "data": {"plan": "pro"}})
    assert Trigger.objects.get(pk=accepted.result["trigger_id"]).tenant == acme


def test_a_tenant_key_never_sees_another_tenants_run_or_recipient(mcp_call, key, tenants,
                                                                  welcome):
    acme, globex = tenants
    globex_run = mcp_call(key, "trigger_workflow", {
        "workflow": "welcome", "recipients": [{"id": "gina", "email": "gina@globex.test"}],
        "data": {"plan": "pro"}, "tenant": "globex"}).result["runs"][0]["id"]
    acme_key = api_key_create(name="acme agent", tenant=acme)[0]
    assert mcp_call(acme_key, "get_run", {"run_id": globex_run}).error == {
        "error": "not_found", "detail": f"No run {globex_run!r}."}
    assert mcp_call(acme_key, "find_recipient", {"id": "gina"}).result == {"recipients": []}
    assert mcp_call(acme_key, "find_recipient", {"email": "gina@globex.test"}
                    ).result == {"recipients": []}
    # Its own tenant's people it finds: reached by a run, or subscribed to its topic.
    topic, _ = topic_upsert(key="acme-news", tenant=acme)
    topic.subscriptions.create(recipient=Recipient.objects.get(external_id="gina"))
    found = mcp_call(acme_key, "find_recipient", {"id": "gina"}).result["recipients"]
    assert [person["email"] for person in found] == ["gina@globex.test"]
    assert mcp_call(key, "get_run", {"run_id": globex_run}).result["recipient"] == "gina"
    assert mcp_call(acme_key, "cancel", {"workflow": "welcome", "cancellation_key": "x"}
                    ).result == {"cancelled": []}


# --- reads and cancel --------------------------------------------------------------------------

def test_find_recipient_by_id_or_email(mcp_call, key):
    recipient_upsert(external_id="ada", name="Ada", email="Ada@Example.com")
    by_id = mcp_call(key, "find_recipient", {"id": "ada"}).result["recipients"]
    assert [(r["id"], r["name"], r["email"]) for r in by_id] == [("ada", "Ada",
                                                                 "Ada@Example.com")]
    by_email = mcp_call(key, "find_recipient", {"email": "ada@example.com"}).result
    assert [r["id"] for r in by_email["recipients"]] == ["ada"]
    assert mcp_call(key, "find_recipient", {"id": "nobody"}).result == {"recipients": []}
    assert mcp_call(key, "find_recipient", {}).error == {
        **INVALID, "fields": {"id": ["Give either id or email."]}}
    assert mcp_call(key, "find_recipient", {"id": ""}).error["fields"] == {
        "id": ["A recipient id has 1 to 255 characters."]}


def test_get_run_tells_the_timeline_in_words(mcp_call, key, welcome, run_tasks):
    recipient_upsert(external_id="ada", email="ada@example.com")
    PreferenceSet.objects.create(recipient=Recipient.objects.get(external_id="ada"),
                                 categories={"onboarding": {"channel_types": {"email": False}}})
    run_id = mcp_call(key, "trigger_workflow", {"workflow": "welcome", "recipients": ["ada"],
                                                "data": {"plan": "pro"}}).result["runs"][0]["id"]
    run_tasks()
    answer = mcp_call(key, "get_run", {"run_id": run_id}).result
    assert answer["status"] == "completed"
    assert answer["summary"] == "welcome for ada: completed"
    assert [entry["text"] for entry in answer["timeline"]] == [
        "triggered",
        "in-app (inbox) sent",
        "email (mail) suppressed: opted out of onboarding by email",
        "the run completed",
    ]
    assert answer["detail"]["id"] == run_id and len(answer["detail"]["steps"]) == 4
    assert mcp_call(key, "get_run", {"run_id": "nope"}).error == {
        **INVALID, "fields": {"run_id": ["Must be a valid UUID."]}}


def test_cancel_stops_the_runs_of_a_cancellation_key(mcp_call, key, make_workflow):
    make_workflow("reminder", steps=[{"ref": "wait", "type": "delay",
                                      "config": {"hours": 1}}, in_app_step()])
    run_id = mcp_call(key, "trigger_workflow", {"workflow": "reminder", "recipients": ["ada"],
                                                "cancellation_key": "cart-9"}
                      ).result["runs"][0]["id"]
    answer = mcp_call(key, "cancel", {"workflow": "reminder", "cancellation_key": "cart-9"})
    assert answer.result == {"cancelled": [{"id": run_id, "recipient": "ada"}]}
    assert Run.objects.get(pk=run_id).status == Run.Status.CANCELLED
    assert mcp_call(key, "cancel", {"workflow": "nope", "cancellation_key": "x"}).error == {
        "error": "not_found", "detail": "No workflow 'nope'."}
    assert mcp_call(key, "cancel", {"workflow": "reminder", "cancellation_key": ""}).error == {
        **INVALID, "fields": {"cancellation_key": ["This field may not be blank."]}}


# --- notify -----------------------------------------------------------------------------------

def test_notify_sends_in_app_then_email_while_unread(mcp_call, key, smtp, run_tasks):
    answer = mcp_call(key, "notify", {
        "recipient": {"id": "ada", "email": "ada@example.com", "name": "Ada"},
        "title": "Deploy finished", "body": "Version 42 is live.",
        "action_url": "https://example.com/deploys/42", "urgency": "high"})
    assert not answer.is_error, answer
    run_tasks()
    item = InboxItem.objects.get(recipient__external_id="ada")
    assert item.workflow_key == NOTIFY_WORKFLOW and item.category == "agents"
    assert item.content["body"] == "Deploy finished: Version 42 is live."
    assert item.content["action_url"] == "https://example.com/deploys/42"
    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == "Deploy finished" and mail["To"] == "Ada <ada@example.com>"
    assert "https://example.com/deploys/42" in mail.get_body(("plain",)).get_content()


def test_notify_waits_and_sends_no_email_once_the_in_app_message_is_read(mcp_call, key,
                                                                          run_tasks):
    run_id = mcp_call(key, "notify", {"recipient": {"id": "ada", "email": "ada@example.com"},
                                      "title": "FYI", "body": "Done."}).result["runs"][0]["id"]
    run_tasks()
    run = Run.objects.get(pk=run_id)
    assert run.status == Run.Status.WAITING
    assert 14 * 60 < (run.wake_at - timezone.now()).total_seconds() <= 15 * 60
    inbox_item_mark(item=InboxItem.objects.get(recipient__external_id="ada"), action="read")
    run = advance_at(run, run.wake_at)
    assert run.status == Run.Status.COMPLETED
    assert not Message.objects.filter(run=run, channel="email").exists()
    words = [entry["text"] for entry in
             mcp_call(key, "get_run", {"run_id": run_id}).result["timeline"]]
    assert "route-high not sent: its condition was false" in words
    assert words[-3:] == ["route-normal: the in-app message was read, no further channel tried",
                          "route-low not sent: its condition was false", "the run completed"]


def test_notify_names_its_own_fields(mcp_call, key):
    answer = mcp_call(key, "notify", {"recipient": "ada", "title": "", "body": "b",
                                      "action_url": "ftp://x"})
    assert answer.error == {**INVALID, "fields": {
        "action_url": ["'ftp://x' does not match '^https?://'"],
        "title": ["'' should be non-empty"]}}
    answer = mcp_call(key, "notify", {"recipient": {"id": "ada", "phone": "123"},
                                      "title": "t", "body": "b"})
    assert answer.error == {**INVALID, "fields": {
        "recipient.phone": ["Expected an E.164 number like +15550001111."]}}


def test_resources_expose_the_workflow_catalogue(transactional_db, key, welcome):
    import asyncio
    import json

    from mcp import Client

    from notifications.agents.server import build_server

    async def read():
        async with Client(build_server(api_key_id=key.pk)) as client:
            listed = await client.list_resources()
            catalogue = await client.read_resource("clarion://workflows")
            one = await client.read_resource("clarion://workflows/welcome")
            return listed, catalogue, one

    listed, catalogue, one = asyncio.run(read())
    assert "clarion://workflows" in [str(resource.uri) for resource in listed.resources]
    assert [w["key"] for w in json.loads(catalogue.contents[0].text)["workflows"]] == [
        "welcome"]
    assert json.loads(one.contents[0].text)["data_schema"] == PLAN_SCHEMA
