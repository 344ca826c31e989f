"""`novu-py`, unchanged, against /novu/: every call a migrating team makes, and every error path
answering the status (and so the exception type) the SDK documents."""

import httpx
import novu_py
import pytest
from novu_py import models

from notifications.models import Recipient, Run, Subscription, Tenant, Topic, Trigger, Workflow
from preferences.models import PreferenceSet

from ..conftest import in_one_window

pytestmark = pytest.mark.django_db(transaction=True)


def test_trigger_answers_201_processed_with_its_transaction_id(novu, welcome, server_url,
                                                               api_key):
    Topic.objects.create(key="team")
    answer = novu.trigger(trigger_event_request_dto={
        "workflow_id": "welcome",
        "to": ["alice", {"subscriber_id": "bob", "email": "bob@example.com",
                         "first_name": "Bob", "last_name": "Stone", "phone": "+15550001111"},
               {"type": "Topic", "topic_key": "team"}],
        "payload": {"body": "hi"}, "transaction_id": "tx-1", "actor": "carol",
        "tenant": {"identifier": "initech", "name": "Initech"},
    })
    assert (answer.result.acknowledged, answer.result.status, answer.result.transaction_id) == (
        True, "processed", "tx-1")
    trigger = Trigger.objects.get()
    assert (trigger.cancellation_key, trigger.data, trigger.actor) == ("tx-1", {"body": "hi"},
                                                                       "carol")
    assert trigger.tenant == Tenant.objects.get(key="initech", name="Initech")
    assert trigger.recipients[2] == {"topic": "team"}
    bob = Recipient.objects.get(external_id="bob")
    assert (bob.name, bob.email, bob.phone) == ("Bob Stone", "bob@example.com", "+15550001111")
    raw = httpx.post(f"{server_url}/novu/v1/events/trigger",
                     headers={"Authorization": f"ApiKey {api_key[1]}"},
                     json={"name": "welcome", "to": "alice"})
    assert raw.status_code == 201
    assert raw.json() == {"data": {"acknowledged": True, "status": "processed",
                                   "transactionId": raw.json()["data"]["transactionId"]}}


def test_a_repeated_transaction_id_is_ignored(novu, welcome):
    first = novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "alice",
                                                    "transaction_id": "tx-2"})
    again = novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "bob",
                                                    "transaction_id": "tx-2"})
    assert again.result.transaction_id == first.result.transaction_id == "tx-2"
    assert Trigger.objects.count() == 1 and Run.objects.get().recipient.external_id == "alice"


def test_a_trigger_without_transaction_id_gets_one_to_cancel_by(novu, welcome):
    answer = novu.trigger(trigger_event_request_dto={
        "workflow_id": "welcome", "to": {"subscriber_id": "dan"}})
    assert Trigger.objects.get().cancellation_key == answer.result.transaction_id
    assert novu.cancel(transaction_id=answer.result.transaction_id).result is True
    assert Run.objects.get().status == Run.Status.CANCELLED
    assert novu.cancel(transaction_id="never-sent").result is False


def test_an_inactive_workflow_is_acknowledged_as_not_active(novu, welcome):
    Workflow.objects.filter(key="welcome").update(active=False)
    answer = novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "a"})
    assert answer.result.status == "trigger_not_active"
    assert not Trigger.objects.exists()


def test_bulk_trigger_answers_one_result_per_event(novu, welcome):
    answer = novu.trigger_bulk(bulk_trigger_event_dto={"events": [
        {"workflow_id": "welcome", "to": "a", "transaction_id": "b-1"},
        {"workflow_id": "nope", "to": "b"},
        {"workflow_id": "welcome", "to": {"subscriber_id": "c", "email": "not an email"}},
    ]})
    first, unknown, invalid = answer.result
    assert (first.status, first.transaction_id) == ("processed", "b-1")
    assert (unknown.status, unknown.error) == ("error", ["No workflow 'nope'."])
    assert invalid.status == "error" and invalid.error[0].startswith("to.email:")
    assert Trigger.objects.get().cancellation_key == "b-1"


def test_subscribers_are_upserted_read_and_deleted(novu):
    created = novu.subscribers.create(create_subscriber_request_dto={
        "subscriber_id": "s-1", "first_name": "Ann", "last_name": "Lee",
        "email": "ann@example.com", "avatar": "https://example.com/a.png",
        "data": {"plan": "pro"}})
    subscriber = created.result
    assert (subscriber.subscriber_id, subscriber.first_name, subscriber.last_name,
            subscriber.deleted, subscriber.organization_id) == (
        "s-1", "Ann", "Lee", False, "clarion")
    assert subscriber.created_at and subscriber.updated_at and subscriber.environment_id
    assert Recipient.objects.get(external_id="s-1").data == {
        "plan": "pro", "avatar": "https://example.com/a.png"}
    again = novu.subscribers.create(create_subscriber_request_dto={
        "subscriber_id": "s-1", "email": "ann@example.org"})  # an upsert: no 409
    assert (again.result.email, again.result.first_name) == ("ann@example.org", "Ann")
    assert novu.subscribers.retrieve(subscriber_id="s-1").result.email == "ann@example.org"
    patched = novu.subscribers.patch(subscriber_id="s-1",
                                     patch_subscriber_request_dto={"locale": "fr"})
    assert patched.result.locale == "fr"
    assert novu.subscribers.delete(subscriber_id="s-1").result.status == "deleted"
    assert not Recipient.objects.filter(external_id="s-1").exists()


def test_preferences_patch_global_and_workflow_channels(novu, welcome):
    novu.subscribers.create(create_subscriber_request_dto={"subscriber_id": "s-2"})
    answer = novu.subscribers.preferences.update(
        subscriber_id="s-2", patch_subscriber_preferences_dto={"channels": {"sms": False}})
    assert answer.result.global_.channels.sms is False
    answer = novu.subscribers.preferences.update(
        subscriber_id="s-2", patch_subscriber_preferences_dto={
            "channels": {"email": False}, "workflow_id": "welcome"})
    (workflow,) = answer.result.workflows
    assert (workflow.workflow.identifier, workflow.channels.email) == ("welcome", False)
    row = PreferenceSet.objects.get(recipient__external_id="s-2")
    assert row.channel_types == {"sms": False}
    assert row.workflows == {"welcome": {"channel_types": {"email": False}}}
    assert novu.subscribers.preferences.list(subscriber_id="s-2").result.global_.channels.sms \
        is False


def test_topics_and_subscriptions_map_onto_clarion_topics(novu):
    created = novu.topics.create(create_update_topic_request_dto={"key": "news", "name": "News"})
    assert (created.result.key, created.result.name) == ("news", "News")
    assert novu.topics.create(create_update_topic_request_dto={"key": "news"}).result.name \
        == "News"
    novu.subscribers.create(create_subscriber_request_dto={"subscriber_id": "s-3"})
    answer = novu.topics.subscriptions.create(
        topic_key="news", create_topic_subscriptions_request_dto={
            "subscriber_ids": ["s-3", "ghost"]})
    assert [s.subscriber.subscriber_id for s in answer.result.data] == ["s-3"]
    assert (answer.result.meta.successful, answer.result.meta.failed) == (1, 1)
    assert answer.result.errors[0].code == "SUBSCRIBER_NOT_FOUND"
    assert list(Subscription.objects.values_list("topic__key", "recipient__external_id")) == [
        ("news", "s-3")]
    removed = novu.topics.subscriptions.delete(
        topic_key="news", delete_topic_subscriptions_request_dto={"subscriber_ids": ["s-3"]})
    assert removed.result.meta.successful == 1 and not Subscription.objects.exists()


# --- Errors: the status each SDK call documents, so the exception type it raises ---------------

def test_a_wrong_key_is_a_401_error_dto(novu_for, welcome):
    with pytest.raises(models.ErrorDto) as caught:
        novu_for("ck_wrong").trigger(trigger_event_request_dto={"workflow_id": "welcome",
                                                                "to": "a"})
    data = caught.value.data
    assert (data.status_code, data.path, data.message) == (
        401, "/v1/events/trigger", "Invalid or revoked API key.")
    assert data.timestamp


def test_an_unknown_workflow_is_a_404_error_dto(novu, db):
    with pytest.raises(models.ErrorDto) as caught:
        novu.trigger(trigger_event_request_dto={"workflow_id": "nope", "to": "a"})
    assert (caught.value.data.status_code, caught.value.data.message) == (
        404, "No workflow 'nope'.")


def test_an_invalid_trigger_is_a_400_payload_validation_error(novu, welcome):
    with pytest.raises(models.PayloadValidationExceptionDto) as caught:
        novu.trigger(trigger_event_request_dto={
            "workflow_id": "welcome", "to": [{"subscriber_id": "x", "phone": "555"}]})
    data = caught.value.data
    assert (data.status_code, data.type) == (400, "PAYLOAD_VALIDATION_ERROR")
    assert [(e.field, e.message) for e in data.errors] == [
        ("to[0].phone", "Expected an E.164 number like +15550001111.")]
    with pytest.raises(models.PayloadValidationExceptionDto) as caught:
        novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "a",
                                                "overrides": {"providers": {"x": {}}}})
    assert caught.value.data.errors[0].field == "overrides"


def test_fail_if_exists_is_a_400_never_a_409(novu):
    novu.subscribers.create(create_subscriber_request_dto={"subscriber_id": "s-4"})
    with pytest.raises(models.ErrorDto) as caught:
        novu.subscribers.create(create_subscriber_request_dto={"subscriber_id": "s-4"},
                                fail_if_exists=True)
    assert caught.value.data.status_code == 400
    novu.topics.create(create_update_topic_request_dto={"key": "t-4"})
    with pytest.raises(models.ErrorDto) as caught:
        novu.topics.create(create_update_topic_request_dto={"key": "t-4"}, fail_if_exists=True)
    assert caught.value.data.status_code == 400


def test_unknown_subscribers_and_bad_preferences(novu):
    with pytest.raises(models.ErrorDto) as caught:
        novu.subscribers.retrieve(subscriber_id="nobody")
    assert caught.value.data.status_code == 404
    novu.subscribers.create(create_subscriber_request_dto={"subscriber_id": "s-5"})
    with pytest.raises(models.ErrorDto) as caught:
        novu.subscribers.preferences.update(
            subscriber_id="s-5", patch_subscriber_preferences_dto={
                "channels": {"email": False}, "workflow_id": "nope"})
    assert caught.value.data.status_code == 404
    with pytest.raises(models.ErrorDto) as caught:
        novu.subscribers.preferences.update(
            subscriber_id="s-5", patch_subscriber_preferences_dto={"channels": {"tool": False}})
    assert caught.value.data.status_code == 400


def test_a_tenant_key_may_not_create_subscribers(novu_for, acme_key):
    with pytest.raises(models.ErrorDto) as caught:
        novu_for(acme_key).subscribers.create(create_subscriber_request_dto={
            "subscriber_id": "s-6"})
    assert caught.value.data.status_code == 403


def test_rate_limited_triggers_raise_api_error_429(novu, welcome, clarion_settings):
    clarion_settings(TRIGGER_RATE_LIMIT=1, TRIGGER_RATE_LIMIT_WINDOW_SECONDS=3600)
    in_one_window(3600)
    novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "a"})
    with pytest.raises(novu_py.models.APIError) as caught:
        novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "a"})
    assert caught.value.status_code == 429
    assert int(caught.value.headers["Retry-After"]) > 0


def test_a_transaction_whose_first_trigger_still_runs_is_a_409_error_dto(novu, welcome, api_key):
    from notifications.models import IdempotencyRecord

    IdempotencyRecord.objects.create(api_key=api_key[0], key="novu-transaction:tx-busy",
                                     request_hash="first")
    with pytest.raises(models.ErrorDto) as caught:  # the SDK retries it, unless told not to
        novu.trigger(trigger_event_request_dto={"workflow_id": "welcome", "to": "a",
                                                "transaction_id": "tx-busy"})
    assert caught.value.data.status_code == 409


def test_a_retried_bulk_call_triggers_nothing_twice(novu, welcome):
    events = {"events": [{"workflow_id": "welcome", "to": "a"},
                         {"workflow_id": "welcome", "to": "b"}]}
    first = novu.trigger_bulk(bulk_trigger_event_dto=events, idempotency_key="bulk-1")
    again = novu.trigger_bulk(bulk_trigger_event_dto=events, idempotency_key="bulk-1")
    assert [r.transaction_id for r in again.result] == [r.transaction_id for r in first.result]
    assert Trigger.objects.count() == 2
