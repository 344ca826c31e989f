"""Outbound events: endpoints, the outbox, Standard Webhooks signatures, order per recipient,
retries after 500s, disablement and replay, against a real HTTP receiver on 127.0.0.1."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from events import services, tasks
from events.delivery import RETRY_SCHEDULE_SECONDS, endpoint_deliver
from events.models import EVENT_TYPES, Event, EventAttempt, EventDelivery, EventEndpoint
from events.outbox import NewEvent, events_record
from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications.models import Message, Recipient
from preferences.services import preference_set_update, preferences_unsubscribe

from ..conftest import in_app_step, invalid, queued_tasks


def endpoint(receiver, key="crm", events=EVENT_TYPES, tenant=None) -> EventEndpoint:
    made, secret = services.endpoint_put(key=key, url=receiver.url, events=list(events),
                                         tenant=tenant)
    receiver.secret = secret
    return made


def record(*events: tuple[str, str]) -> None:
    """Record (recipient, type) events, each its own transaction."""
    for recipient, event_type in events:
        with transaction.atomic():
            events_record([NewEvent(type=event_type, tenant_id=None, recipient=recipient,
                                    data={"recipient": recipient, "n": len(Event.objects.all())})])


# --- The API ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_put_creates_an_endpoint_and_shows_its_secret_once(api, receiver):
    created = api.put("/api/v1/event-endpoints/crm", {"url": receiver.url,
                                                      "events": ["message.sent", "run.failed"]})
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["message.sent", "run.failed"]
    assert body["tenant"] is None and body["active"] is True
    assert EventEndpoint.objects.get(key="crm").secret == body["secret"]
    assert "whsec_" not in EventEndpoint.objects.get(key="crm").secret_encrypted

    again = api.get("/api/v1/event-endpoints/crm").json()
    assert "secret" not in again and again["url"] == receiver.url
    replaced = api.put("/api/v1/event-endpoints/crm", {"url": receiver.url,
                                                       "events": ["message.read"]})
    assert replaced.status_code == 200 and "secret" not in replaced.json()
    assert EventEndpoint.objects.get(key="crm").secret == body["secret"]
    assert [e["id"] for e in api.get("/api/v1/event-endpoints").json()["results"]] == ["crm"]
    assert api.delete("/api/v1/event-endpoints/crm").status_code == 204
    assert api.get("/api/v1/event-endpoints/crm").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("url, message", [
    ("http://example.com/hook", "Use an https:// URL."),
    ("https://127.0.0.1/hook", "'127.0.0.1' resolves to 127.0.0.1, a private or reserved "
                               "address; set CLARION_ALLOW_PRIVATE_URLS to allow it."),
    ("https://10.1.2.3/hook", "'10.1.2.3' resolves to 10.1.2.3, a private or reserved address; "
                              "set CLARION_ALLOW_PRIVATE_URLS to allow it."),
    ("https://localhost/hook", "'localhost' resolves to"),
])
def test_urls_must_be_https_to_public_addresses(api, url, message):
    response = api.put("/api/v1/event-endpoints/crm", {"url": url, "events": ["message.sent"]})
    assert response.status_code == 400
    assert response.json()["fields"]["url"][0].startswith(message)
    assert not EventEndpoint.objects.exists()


@pytest.mark.django_db
def test_bad_bodies_name_the_field(api):
    response = api.put("/api/v1/event-endpoints/crm", {"url": "https://example.com",
                                                       "events": ["message.opened"]})
    assert response.status_code == 400
    assert response.json() == invalid({"events[0]": ['"message.opened" is not a valid choice.']})
    response = api.put("/api/v1/event-endpoints/crm", {"url": "https://example.com",
                                                       "events": []})
    assert response.json()["fields"] == {"events": ["This list may not be empty."]}
    response = api.put("/api/v1/event-endpoints/crm", {"events": ["run.failed"], "colour": 1})
    assert set(response.json()["fields"]) == {"url", "colour"}


@pytest.mark.django_db
def test_a_tenant_restricted_key_manages_only_its_tenants_endpoints(api, acme_api, acme,
                                                                    globex, receiver):
    response = acme_api.put("/api/v1/event-endpoints/mine", {"url": receiver.url,
                                                             "events": ["message.sent"]})
    assert response.status_code == 201 and response.json()["tenant"] == "acme"
    forbidden = acme_api.put("/api/v1/event-endpoints/theirs", {
        "url": receiver.url, "events": ["message.sent"], "tenant": "globex"})
    assert forbidden.status_code == 403
    api.put("/api/v1/event-endpoints/global", {"url": receiver.url, "events": ["run.failed"]})
    assert [e["id"] for e in acme_api.get("/api/v1/event-endpoints").json()["results"]] == [
        "mine"]
    assert acme_api.get("/api/v1/event-endpoints/global").status_code == 404
    assert acme_api.delete("/api/v1/event-endpoints/global").status_code == 404
    assert acme_api.put("/api/v1/event-endpoints/global", {
        "url": receiver.url, "events": ["run.failed"]}).status_code == 404
    assert EventEndpoint.objects.get(key="global").tenant is None


# --- The outbox ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_an_event_commits_with_its_change_or_not_at_all(receiver):
    endpoint(receiver)
    with pytest.raises(RuntimeError), transaction.atomic():
        record(("ann", "run.completed"))
        raise RuntimeError("the change fails")
    assert not Event.objects.exists() and not EventDelivery.objects.exists()
    record(("ann", "run.completed"))
    assert EventDelivery.objects.get().status == "pending"
    assert queued_tasks("events.tasks.deliver_endpoint")


@pytest.mark.django_db
def test_events_nobody_subscribes_to_are_not_written(receiver, acme, globex):
    endpoint(receiver, events=["run.failed"], tenant=acme)
    record(("ann", "run.completed"))
    with transaction.atomic():
        events_record([NewEvent(type="run.failed", tenant_id=globex.pk, recipient="ann")])
        events_record([NewEvent(type="run.failed", tenant_id=acme.pk, recipient="ann")])
    assert list(Event.objects.values_list("type", "tenant__key")) == [("run.failed", "acme")]


@pytest.mark.django_db
def test_a_lost_task_is_found_by_the_sweeper(receiver):
    """The worker died after the commit: the delivery is pending, and the sweeper sends it."""
    made = endpoint(receiver)
    record(("ann", "run.completed"))
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()  # the task is gone
    assert tasks.sweep() == [made.pk]
    tasks.deliver_endpoint(made.pk)
    assert receiver.types(200) == ["run.completed"]


# --- Delivery ------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_workflow_run_sends_signed_events_through_the_queue(api, receiver, make_workflow,
                                                              run_tasks):
    endpoint(receiver)
    make_workflow("welcome", steps=[in_app_step()])
    response = api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["ann"]})
    assert response.status_code == 202
    run_tasks()
    assert receiver.types() == ["message.sent", "run.completed"]
    assert all(r["verified"] for r in receiver.requests)
    sent = receiver.requests[0]
    message = Message.objects.get()
    assert sent["data"] == {
        "message_id": str(message.id), "run_id": str(message.run_id), "workflow": "welcome",
        "step": "inbox", "channel": "in_app", "status": "sent", "recipient": "ann",
        "tenant": None, "provider": "inbox", "provider_message_id": ""}
    assert sent["id"] == f"msg_{Event.objects.get(type='message.sent').id.hex}"

    item = InboxItem.objects.get()
    inbox_item_mark(item=item, action="read")
    inbox_item_mark(item=InboxItem.objects.get(), action="read")  # no second event
    inbox_item_mark(item=InboxItem.objects.get(), action="archived")
    run_tasks()
    assert receiver.types()[2:] == ["message.seen", "message.read", "message.archived"]
    assert EventAttempt.objects.filter(succeeded=True).count() == 5


@pytest.mark.django_db
def test_preference_changes_and_unsubscribes_are_events(receiver, run_tasks):
    endpoint(receiver, events=["preferences.updated", "recipient.unsubscribed"])
    ann = Recipient.objects.create(external_id="ann")
    preference_set_update(recipient=ann, data={"channel_types": {"sms": False}}, merge=True)
    preferences_unsubscribe(recipient=ann, tenant=None, workflow_key="digest",
                            category="news")
    run_tasks()
    assert receiver.types() == ["preferences.updated", "preferences.updated",
                                "recipient.unsubscribed"]
    first, second, unsubscribed = (r["data"] for r in receiver.requests)
    assert first["recipient"] == "ann"
    assert first["preferences"]["channel_types"] == {"sms": False}
    assert second["preferences"]["categories"] == {"news": {"channel_types": {"email": False}}}
    assert unsubscribed == {"recipient": "ann", "tenant": None, "workflow": "digest",
                            "category": "news", "channel": "email"}


@pytest.mark.django_db
def test_retries_after_500s_with_backoff_and_every_attempt_logged(receiver):
    made = endpoint(receiver)
    receiver.answers = [500, 500]
    record(("ann", "run.completed"))
    t0 = timezone.now()
    assert endpoint_deliver(endpoint_id=made.pk, now=t0) == 1
    delivery = EventDelivery.objects.get()
    assert delivery.next_attempt_at == t0 + timedelta(seconds=5)
    assert endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=4)) == 0
    assert endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=5)) == 1
    assert EventDelivery.objects.get().next_attempt_at == t0 + timedelta(seconds=305)
    assert EventEndpoint.objects.get().failing_since == t0
    assert endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=305)) == 1
    delivery = EventDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert [r["status"] for r in receiver.requests] == [500, 500, 200]
    assert len({r["id"] for r in receiver.requests}) == 1  # the same webhook-id every time
    assert all(r["verified"] for r in receiver.requests)
    assert list(delivery.delivery_attempts.values_list("status_code", "succeeded")) == [
        (500, False), (500, False), (200, True)]
    assert EventEndpoint.objects.get().failing_since is None


@pytest.mark.django_db
def test_events_about_one_recipient_arrive_in_order(receiver):
    """Ann's first event fails: her second waits behind it; Bob's go on."""
    made = endpoint(receiver)
    record(("ann", "message.sent"), ("bob", "message.sent"), ("ann", "message.read"),
           ("bob", "message.read"))
    receiver.fail_for = {"ann"}
    t0 = timezone.now()
    endpoint_deliver(endpoint_id=made.pk, now=t0)
    assert [(r["data"]["recipient"], r["type"], r["status"]) for r in receiver.requests] == [
        ("ann", "message.sent", 500), ("bob", "message.sent", 200), ("bob", "message.read", 200)]
    receiver.fail_for = set()
    endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=5))
    assert [(r["data"]["recipient"], r["type"]) for r in receiver.requests[3:]] == [
        ("ann", "message.sent"), ("ann", "message.read")]


@pytest.mark.django_db
def test_an_endpoint_that_keeps_failing_is_disabled_with_a_notice(
        receiver, locmem, settings, run_tasks, django_capture_on_commit_callbacks):
    settings.ADMINS = [("Ops", "ops@example.com")]
    made = endpoint(receiver)
    receiver.default = 500
    record(("ann", "message.sent"), ("ann", "message.read"))
    moment = timezone.now()
    endpoint_deliver(endpoint_id=made.pk, now=moment)
    for wait in RETRY_SCHEDULE_SECONDS:
        moment += timedelta(seconds=wait)
        assert EventEndpoint.objects.get().active
        with django_capture_on_commit_callbacks(execute=True):
            assert endpoint_deliver(endpoint_id=made.pk, now=moment) == 1
    assert sum(RETRY_SCHEDULE_SECONDS) >= 24 * 3600
    assert len(receiver.requests) == 1 + len(RETRY_SCHEDULE_SECONDS)
    made.refresh_from_db()
    assert not made.active and made.disabled_at == moment
    assert made.disabled_reason.startswith("Every attempt to deliver event msg_")
    assert "HTTP 500" in made.disabled_reason
    assert [m.subject for m in locmem.outbox] == [
        "[Django] Clarion disabled the event endpoint crm"]
    first, second = EventDelivery.objects.order_by("id")
    assert (first.status, second.status, second.attempts) == ("failed", "pending", 0)
    assert endpoint_deliver(endpoint_id=made.pk, now=moment + timedelta(days=1)) == 0

    receiver.default = 200
    services.endpoint_enable(endpoint=made)
    run_tasks()
    assert receiver.requests[-1]["type"] == "message.read"
    assert receiver.requests[-1]["status"] == 200
    services.delivery_replay(delivery=first)
    run_tasks()
    assert receiver.requests[-1]["type"] == "message.sent"
    assert receiver.requests[-1]["id"] == receiver.requests[0]["id"]


@pytest.mark.django_db
def test_a_leased_delivery_is_not_sent_twice(receiver):
    made = endpoint(receiver)
    record(("ann", "run.completed"))
    t0 = timezone.now()
    EventDelivery.objects.update(lease_until=t0 + timedelta(seconds=30))  # another worker
    assert endpoint_deliver(endpoint_id=made.pk, now=t0) == 0
    assert endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=30)) == 1
    assert len(receiver.requests) == 1


# --- The admin -----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_the_admin_shows_attempts_and_replays(admin_client, receiver, run_tasks):
    made = endpoint(receiver)
    receiver.answers = [500]
    record(("ann", "run.completed"))
    t0 = timezone.now()
    endpoint_deliver(endpoint_id=made.pk, now=t0)
    endpoint_deliver(endpoint_id=made.pk, now=t0 + timedelta(seconds=5))
    delivery = EventDelivery.objects.get()
    assert delivery.status == "succeeded"
    page = admin_client.get(f"/admin/events/eventdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert b"HTTP 500" in page.content and b"run.completed" in page.content
    response = admin_client.post("/admin/events/eventdelivery/", {
        "action": "replay", "_selected_action": [delivery.pk]})
    assert response.status_code == 302
    run_tasks()
    assert [r["status"] for r in receiver.requests] == [500, 200, 200]
    assert EventDelivery.objects.count() == 2

    made.active, made.disabled_reason = False, "Every attempt failed"
    made.save()
    listing = admin_client.get("/admin/events/eventendpoint/")
    assert b"Every attempt failed" in listing.content


@pytest.mark.django_db
def test_the_admin_shows_a_new_endpoints_secret_once(admin_client, receiver):
    response = admin_client.post("/admin/events/eventendpoint/add/", {
        "key": "crm", "url": receiver.url, "events": ["message.sent", "run.completed"]},
        follow=True)
    assert response.status_code == 200
    made = EventEndpoint.objects.get()
    assert made.secret.encode() in response.content
    assert made.events == ["message.sent", "run.completed"]
    page = admin_client.get(f"/admin/events/eventendpoint/{made.pk}/change/")
    assert made.secret.encode() not in page.content
