"""`knockapi`, unchanged, against /knock/: every call a migrating team makes, and every error
path answering the status (and so the exception type) the SDK documents."""

import httpx
import knockapi
import pytest

from notifications.models import Recipient, Run, Subscription, Tenant, Topic, Trigger, Workflow
from preferences.models import PreferenceSet

from ..conftest import in_one_window

pytestmark = pytest.mark.django_db(transaction=True)


def test_trigger_answers_the_workflow_run_id_and_identifies_inline(knock, welcome, acme):
    Recipient.objects.create(external_id="bob", data={"plan": "pro"})
    answer = knock.workflows.trigger(
        "welcome",
        recipients=["alice", {"id": "bob", "email": "bob@example.com", "name": "Bob",
                              "phone_number": "+15550001111", "team": "ops"}],
        actor="carol", data={"body": "hi"}, tenant="acme", cancellation_key="c-1",
    )
    trigger = Trigger.objects.get()
    assert answer.workflow_run_id == str(trigger.id)
    assert (trigger.cancellation_key, trigger.tenant, trigger.data, trigger.actor) == (
        "c-1", acme, {"body": "hi"}, "carol")
    assert sorted(trigger.runs.values_list("recipient__external_id", flat=True)) == [
        "alice", "bob"]
    bob = Recipient.objects.get(external_id="bob")
    assert (bob.email, bob.name, bob.phone) == ("bob@example.com", "Bob", "+15550001111")
    assert bob.data == {"plan": "pro", "team": "ops"}  # Knock merges a user's properties


def test_trigger_with_an_inline_tenant_creates_it(knock, welcome):
    knock.workflows.trigger("welcome", recipients=["alice"],
                            tenant={"id": "initech", "name": "Initech"})
    assert Trigger.objects.get().tenant == Tenant.objects.get(key="initech", name="Initech")


def test_trigger_replays_a_retried_idempotency_key(knock, welcome):
    first = knock.workflows.trigger("welcome", recipients=["alice"], idempotency_key="k-1")
    again = knock.workflows.with_raw_response.trigger("welcome", recipients=["alice"],
                                                      idempotency_key="k-1")
    assert again.parse().workflow_run_id == first.workflow_run_id
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Trigger.objects.count() == 1


def test_cancel_stops_the_runs_of_a_cancellation_key(knock, welcome):
    knock.workflows.trigger("welcome", recipients=["alice", "bob"], cancellation_key="c-9")
    assert knock.workflows.cancel("welcome", cancellation_key="c-9", recipients=["bob"]) is None
    statuses = dict(Run.objects.values_list("recipient__external_id", "status"))
    assert statuses == {"alice": Run.Status.RUNNING, "bob": Run.Status.CANCELLED}
    knock.workflows.cancel("welcome", cancellation_key="c-9")
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.CANCELLED}


def test_identify_answers_a_user_and_merges_properties(knock):
    user = knock.users.update("u-1", name="Ann", email="ann@example.com",
                              phone_number="+15550002222", timezone="Europe/Paris",
                              extra_body={"plan": "pro"})
    assert (user.id, user.api_typename, user.name, user.email, user.phone_number) == (
        "u-1", "User", "Ann", "ann@example.com", "+15550002222")
    assert user.updated_at is not None and user.timezone == "Europe/Paris"
    user = knock.users.update("u-1", locale="fr", extra_body={"seats": 3})
    assert (user.name, user.locale, user.plan, user.seats) == ("Ann", "fr", "pro", 3)
    assert Recipient.objects.get(external_id="u-1").data == {"plan": "pro", "seats": 3}
    assert knock.users.get("u-1").email == "ann@example.com"
    assert knock.users.delete("u-1") is None
    assert not Recipient.objects.filter(external_id="u-1").exists()


def test_preferences_replace_and_merge_as_the_persistence_strategy_says(knock, welcome):
    knock.users.update("u-2")
    answer = knock.users.set_preferences(
        "u-2", "default", channel_types={"email": False, "in_app_feed": True},
        workflows={"welcome": {"channel_types": {"sms": False}}})
    assert (answer.id, answer.channel_types.email, answer.channel_types.in_app_feed) == (
        "default", False, True)
    row = PreferenceSet.objects.get(recipient__external_id="u-2", tenant=None)
    assert row.channel_types == {"email": False, "in_app": True}
    assert row.workflows == {"welcome": {"channel_types": {"sms": False}}}

    knock.users.set_preferences("u-2", "default", _persistence_strategy="merge",
                                categories={"marketing": False})
    row.refresh_from_db()
    assert (row.channel_types, row.categories) == ({"email": False, "in_app": True},
                                                   {"marketing": False})
    knock.users.set_preferences("u-2", "default", channel_types={"sms": False})
    row.refresh_from_db()  # replace (Knock's default): what was not given is gone
    assert (row.channel_types, row.categories, row.workflows) == ({"sms": False}, {}, {})
    assert knock.users.get_preferences("u-2", "default").channel_types.sms is False


def test_tenant_preferences_are_their_own_set(knock, acme):
    knock.users.update("u-3")
    knock.users.set_preferences("u-3", "default", channel_types={"push": False},
                                extra_query={"tenant": "acme"})
    assert PreferenceSet.objects.get(recipient__external_id="u-3").tenant == acme


def test_object_subscriptions_are_a_topic_a_trigger_reaches(knock, welcome):
    obj = knock.objects.set("projects", "p-1", name="Project One")
    assert (obj.id, obj.collection, obj.api_typename) == ("p-1", "projects", "Object")
    assert Topic.objects.get(key="projects:p-1").name == "Project One"
    subs = knock.objects.add_subscriptions("projects", "p-1",
                                           recipients=["ann", {"id": "ben", "name": "Ben"}])
    assert [(s.recipient.id, s.object.id) for s in subs] == [("ann", "p-1"), ("ben", "p-1")]
    knock.workflows.trigger("welcome", recipients=[{"id": "p-1", "collection": "projects"}])
    assert Trigger.objects.get().recipients == [{"topic": "projects:p-1"}]
    removed = knock.objects.delete_subscriptions("projects", "p-1", recipients=["ann"])
    assert [s.recipient.id for s in removed] == ["ann"]
    assert list(Subscription.objects.values_list("recipient__external_id", flat=True)) == ["ben"]


# --- Errors: the status each SDK call documents, so the exception type it raises ---------------

def test_a_wrong_key_is_an_authentication_error(knock_for, server_url, welcome):
    with pytest.raises(knockapi.AuthenticationError) as caught:
        knock_for("ck_wrong_secret").workflows.trigger("welcome", recipients=["a"])
    assert caught.value.body == {"code": "invalid_api_key", "message": "Invalid or revoked "
                                 "API key.", "status": 401, "type": "authentication_error"}
    response = httpx.post(f"{server_url}/knock/v1/workflows/welcome/trigger", json={})
    assert (response.status_code, response.json()["code"]) == (401, "api_key_missing")


def test_an_unknown_workflow_is_not_found(knock, db):
    with pytest.raises(knockapi.NotFoundError) as caught:
        knock.workflows.trigger("nope", recipients=["a"])
    assert caught.value.body["code"] == "resource_missing"
    with pytest.raises(knockapi.NotFoundError):
        knock.workflows.cancel("nope", cancellation_key="c")


def test_an_invalid_body_is_unprocessable_naming_the_field(knock, welcome):
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.workflows.trigger("welcome", recipients=[{"id": "x", "phone_number": "555"}])
    assert caught.value.body["code"] == "invalid_params"
    assert caught.value.body["errors"] == [{
        "field": "recipients[0].phone_number",
        "message": "Expected an E.164 number like +15550001111.", "type": "invalid"}]
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.workflows.trigger("welcome", recipients=[])
    assert caught.value.body["errors"][0]["field"] == "recipients"
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.workflows.cancel("welcome", cancellation_key="")
    assert caught.value.body["errors"][0]["field"] == "cancellation_key"


def test_an_inactive_workflow_or_a_reused_idempotency_key_is_unprocessable(knock, welcome):
    knock.workflows.trigger("welcome", recipients=["a"], idempotency_key="same")
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.workflows.trigger("welcome", recipients=["b"], idempotency_key="same")
    assert caught.value.body["code"] == "idempotency_key_reused"
    Workflow.objects.filter(key="welcome").update(active=False)
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.workflows.trigger("welcome", recipients=["a"])
    assert caught.value.body["code"] == "workflow_inactive"


def test_unsupported_preference_settings_are_refused_not_dropped(knock):
    knock.users.update("u-4")
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.users.set_preferences("u-4", "default", workflows={
            "welcome": {"channel_types": {"email": True},
                        "conditions": [{"variable": "a", "operator": "equal_to",
                                        "argument": "b"}]}})
    assert caught.value.body["errors"][0]["field"] == "workflows.welcome.conditions"
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.users.set_preferences("u-4", "default", channel_types={"fax": False})
    assert caught.value.body["errors"][0]["field"] == "channel_types.fax"
    with pytest.raises(knockapi.NotFoundError):
        knock.users.set_preferences("u-4", "marketing", channel_types={"email": False})
    with pytest.raises(knockapi.NotFoundError):
        knock.users.set_preferences("nobody", "default", channel_types={"email": False})


def test_a_tenant_key_may_not_identify_users(knock_for, acme_key):
    with pytest.raises(knockapi.PermissionDeniedError):
        knock_for(acme_key).users.update("u-5", name="Eve")


def test_rate_limited_triggers_raise_rate_limit_error(knock, welcome, clarion_settings):
    clarion_settings(TRIGGER_RATE_LIMIT=1, TRIGGER_RATE_LIMIT_WINDOW_SECONDS=3600)
    in_one_window(3600)
    knock.workflows.trigger("welcome", recipients=["a"])
    with pytest.raises(knockapi.RateLimitError) as caught:
        knock.workflows.trigger("welcome", recipients=["a"])
    assert caught.value.body["code"] == "rate_limit_exceeded"
    assert int(caught.value.response.headers["Retry-After"]) > 0


def test_malformed_json_and_unknown_paths_answer_knocks_shape(server_url, api_key, welcome):
    headers = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    response = httpx.post(f"{server_url}/knock/v1/workflows/welcome/trigger", content=b"{",
                          headers=headers)
    assert (response.status_code, response.json()["code"]) == (400, "invalid_json")
    response = httpx.get(f"{server_url}/knock/v1/nothing/here", headers=headers)
    assert (response.status_code, response.json()["code"]) == (404, "resource_missing")


def test_identify_merges_inline_preferences_and_unwraps_channel_data(knock):
    knock.users.update("u-6", preferences={"default": {"channel_types": {"email": False}}},
                       channel_data={"push": {"data": {"tokens": ["t-1"]}}})
    knock.users.update("u-6", preferences={"default": {"categories": {"marketing": False}}})
    row = PreferenceSet.objects.get(recipient__external_id="u-6")
    assert (row.channel_types, row.categories) == ({"email": False}, {"marketing": False})
    recipient = Recipient.objects.get(external_id="u-6")
    assert recipient.channel_data.get(channel="push").data == {"tokens": ["t-1"]}
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.users.update("u-6", preferences={"default": {"channel_types": {"fax": True}}})
    assert caught.value.body["errors"][0]["field"] == "preferences.default.channel_types.fax"
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.users.update("u-6", preferences={"marketing": {"channel_types": {"sms": True}}})
    assert caught.value.body["errors"][0]["field"] == "preferences.marketing"


def test_object_properties_other_than_name_are_refused_and_a_name_is_kept(knock):
    knock.objects.set("projects", "p-2", name="Two")
    assert knock.objects.set("projects", "p-2").properties == {"name": "Two"}
    with pytest.raises(knockapi.UnprocessableEntityError) as caught:
        knock.objects.set("projects", "p-2", locale="fr")
    assert caught.value.body["errors"][0]["field"] == "locale"
    assert Topic.objects.get(key="projects:p-2").name == "Two"


def test_a_key_whose_first_request_still_runs_is_a_conflict(knock, welcome, api_key):
    from notifications.models import IdempotencyRecord

    # Still running: a claim without its answer, as an older Clarion wrote before its trigger.
    IdempotencyRecord.objects.create(api_key=api_key[0], key="busy", request_hash="first")
    with pytest.raises(knockapi.ConflictError) as caught:
        knock.workflows.trigger("welcome", recipients=["a"], idempotency_key="busy")
    assert caught.value.body["code"] == "idempotency_key_in_use"
