"""A push step reaches every device set of the recipient (APNs tokens and Web Push subscriptions,
each through its own kind's providers), through real local APNs (HTTP/2) and Web Push (VAPID,
aes128gcm decrypted) servers: dead devices are deactivated once and skipped next time, a result
is recorded per device (timeline, API), a set that must retry is retried alone, and an oversize
payload, a rate limit or a server error never deactivates a device of any kind."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications.agents.timeline import entry_words
from notifications.delivery import deliver
from notifications.models import ChannelData, DeliveryAttempt, Message, StepLog
from notifications.providers import apns, fcm
from notifications.tasks import sweep

from .fake_push import FakeAPNs, FakeGoogle, FakePushService, ec_key_pem, fcm_error
from .servers import Reply

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.clarion"
IPHONE, OLD_IPHONE = "a1" * 32, "b2" * 32
FCM_PHONE = "fcm-phone-" + "3" * 40
TEMPLATE = {"title": "Hi {{ recipient.name }}", "body": "Your order shipped.",
            "data": '{"order": "42"}'}
PAYLOAD = {"title": "Hi Ada", "body": "Your order shipped.", "data": {"order": "42"}}


@pytest.fixture(autouse=True)
def fresh_caches(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)  # the push service listens on 127.0.0.1
    fcm._google_credentials.clear()
    apns._apns_tokens.clear()


@pytest.fixture
def apple():
    key = ec_key_pem()
    server = FakeAPNs(team_id=TEAM_ID, key_id=KEY_ID, topic=TOPIC, private_key=key)
    server.auth_key = key
    yield server
    server.stop()


@pytest.fixture
def push_service():
    service = FakePushService()
    yield service
    service.stop()


@pytest.fixture
def google():
    server = FakeGoogle()
    yield server
    server.stop()


@pytest.fixture
def apns_provider(apple, provider_config):
    return provider_config("apns-main", "push", "apns",
                           {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": apple.auth_key,
                            "topic": TOPIC},
                           options={"base_url": apple.url, "ca_file": apple.cert_file},
                           priority=1)


@pytest.fixture
def webpush_provider(provider_config):
    return provider_config("webpush-main", "push", "webpush",
                           {"vapid_private_key": ec_key_pem(), "vapid_subject": "mailto:o@x.test"},
                           priority=2)


@pytest.fixture
def fcm_provider(google, provider_config):
    config = provider_config("fcm-main", "push", "fcm",
                             {"service_account": google.service_account()},
                             options={"base_url": google.url}, priority=3)
    # The access token first, so that a scripted answer goes to the send, not to /token.
    fcm.FCM(key="fcm-main", credentials={"service_account": google.service_account()},
            options={"base_url": google.url}).access_token()
    return config


def rows(external_id):
    return {row.provider_kind: row.data
            for row in ChannelData.objects.filter(recipient__external_id=external_id)}


def timeline(message, event):
    return [log.detail for log in StepLog.objects.filter(
        run_id=message.run_id, event=event).order_by("id")]


def due_now(message):
    """Make a message queued for a retry due at once (the clock moves on)."""
    Message.objects.filter(pk=message.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1))


def test_a_push_reaches_an_iphone_and_a_browser_and_deactivates_exactly_the_dead_two(
        apple, push_service, apns_provider, webpush_provider, queue_message, api,
        admin_client):
    apple.unregistered.add(OLD_IPHONE)
    browser, old_browser = push_service.subscribe(), push_service.subscribe()
    push_service.gone.add(old_browser["endpoint"].rpartition("/")[2])
    message = queue_message("push", TEMPLATE, recipient={
        "id": "ada", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE, OLD_IPHONE]},
            "push:webpush": {"subscriptions": [old_browser, browser]}}})
    assert message.to == "apns,webpush"

    deliver(str(message.id))

    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "apns-main")
    assert apple.problems == [] and push_service.problems == []
    assert sorted((r.token, r.status) for r in apple.requests) == [
        (IPHONE, 200), (OLD_IPHONE, 410)]
    assert [r.json()["aps"]["alert"] for r in apple.requests] == [
        {"title": "Hi Ada", "body": "Your order shipped."}] * 2
    assert push_service.delivered == [{**PAYLOAD, "id": str(message.id)}]
    assert sorted(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("apns-main", "succeeded"), ("webpush-main", "succeeded")]
    data = rows("ada")
    assert data["apns"]["tokens"] == [IPHONE]
    assert [item["address"] for item in data["apns"]["inactive"]] == [OLD_IPHONE]
    assert "APNs 410 Unregistered" in data["apns"]["inactive"][0]["reason"]
    assert data["webpush"]["subscriptions"] == [browser]
    assert [item["address"] for item in data["webpush"]["inactive"]] == [old_browser]
    assert "Web Push 410" in data["webpush"]["inactive"][0]["reason"]

    # One result per device, on the run's timeline and in the API.
    (sent,) = timeline(message, StepLog.Event.SENT)
    assert sent["device_sets"] == {"apns": "sent", "webpush": "sent"}
    results = sorted((d["kind"], d["result"], d["status"]) for d in sent["devices"])
    assert results == [("apns", "accepted", 200), ("apns", "deactivated", 410),
                       ("webpush", "accepted", 201), ("webpush", "deactivated", 410)]
    body = api.get(f"/api/v1/messages/{message.id}").json()
    assert sorted((d["kind"], d["provider"], d["result"], d["status"])
                  for d in body["devices"]) == [
        ("apns", "apns-main", "accepted", 200), ("apns", "apns-main", "deactivated", 410),
        ("webpush", "webpush-main", "accepted", 201),
        ("webpush", "webpush-main", "deactivated", 410)]
    assert [d["error"] for d in body["devices"] if d["result"] == "deactivated"] == [
        "APNs 410 Unregistered", "Web Push 410: push subscription has unsubscribed or expired."]
    page = admin_client.get(reverse("admin:notifications_run_change", args=[message.run_id]))
    assert page.status_code == 200
    text = page.content.decode()
    # The `sent` entry lists the four devices by kind (the attempts' rows list them too).
    assert text.count("&quot;kind&quot;: &quot;apns&quot;") == 2
    assert text.count("&quot;kind&quot;: &quot;webpush&quot;") == 2
    assert text.count("&quot;result&quot;: &quot;deactivated&quot;") == 4

    sent_entry = StepLog.objects.get(run_id=message.run_id, event=StepLog.Event.SENT)
    assert entry_words(sent_entry, {"step": "push"}) == (
        "push (step) sent (2 devices accepted it, 2 devices gone (deactivated))")

    # The next push goes to the two live devices only; nothing is deactivated twice.
    apple.requests.clear()
    push_service.reset()
    second = queue_message("push", TEMPLATE, recipient={"id": "ada", "name": "Ada"})
    deliver(str(second.id))
    second.refresh_from_db()
    assert second.status == Message.Status.SENT
    assert [r.token for r in apple.requests] == [IPHONE]
    assert push_service.delivered == [{**PAYLOAD, "id": str(second.id)}]
    assert [r.path for r in push_service.requests] == [
        "/push/" + browser["endpoint"].rpartition("/")[2]]
    assert rows("ada") == data


def test_a_device_set_that_must_retry_is_retried_alone(apple, push_service, apns_provider,
                                                       webpush_provider, queue_message):
    browser = push_service.subscribe()
    message = queue_message("push", TEMPLATE, recipient={
        "id": "bo", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE]}, "push:webpush": {"subscriptions": [browser]}}})
    push_service.server.script(Reply(503, headers={"Retry-After": "60"}))

    deliver(str(message.id))

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at >= timezone.now() + timedelta(seconds=55)
    assert message.error.startswith("webpush: ") and "Web Push 503" in message.error
    (retrying,) = timeline(message, StepLog.Event.RETRYING)
    assert retrying["device_sets"] == {"apns": "sent", "webpush": "retry"}
    assert [r.token for r in apple.requests] == [IPHONE]

    due_now(message)
    deliver(str(message.id))

    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "apns-main")
    assert [r.token for r in apple.requests] == [IPHONE]  # never twice
    assert push_service.delivered == [{**PAYLOAD, "id": str(message.id)}]
    assert list(message.delivery_attempts.order_by("started_at", "id").values_list(
        "provider", "outcome")) == [("apns-main", "succeeded"),
                                    ("webpush-main", "transient_error"),
                                    ("webpush-main", "succeeded")]
    (sent,) = timeline(message, StepLog.Event.SENT)
    assert sent["device_sets"] == {"apns": "sent", "webpush": "sent"}
    assert [(d["kind"], d["result"]) for d in sent["devices"]] == [("webpush", "accepted")]
    assert rows("bo")["webpush"] == {"subscriptions": [browser]}


def test_a_device_set_with_no_provider_of_its_kind_fails_alone_and_the_message_says_so(
        apple, push_service, apns_provider, queue_message, api, admin_client):
    browser = push_service.subscribe()
    message = queue_message("push", TEMPLATE, recipient={
        "id": "cy", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE]}, "push:webpush": {"subscriptions": [browser]}}})
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "apns-main")
    # Support sees the set that failed on the message itself, and in the API.
    why = ("Not sent to every device set — webpush: No webpush provider is configured for "
           "the push channel (the recipient has webpush devices).")
    assert message.error == why
    (sent,) = timeline(message, StepLog.Event.SENT)
    assert sent["device_sets"] == {"apns": "sent", "webpush": "failed"}
    assert sent["error"] == why
    assert push_service.requests == []
    body = api.get(f"/api/v1/messages/{message.id}").json()
    assert (body["status"], body["error"]) == ("sent", why)
    assert body["device_sets"] == {"apns": "sent", "webpush": "failed"}
    page = admin_client.get(reverse("admin:notifications_message_change", args=[message.pk]))
    assert why in page.content.decode()


def test_a_worker_killed_while_calling_the_second_set_leaves_the_message_sent_once(
        apple, push_service, apns_provider, webpush_provider, queue_message, clarion_settings):
    browser = push_service.subscribe()
    message = queue_message("push", TEMPLATE, recipient={
        "id": "di", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE]}, "push:webpush": {"subscriptions": [browser]}}})
    push_service.server.script(Reply(503))
    deliver(str(message.id))  # APNs took it; Web Push retries
    # The retry's worker dies while its Web Push request is on the wire.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, attempts=2,
        updated_at=timezone.now() - timedelta(hours=1))
    DeliveryAttempt.objects.create(message=message, provider="webpush-main",
                                   provider_kind="webpush", started_at=timezone.now())

    sweep()

    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "apns-main")
    assert message.error == ("Not sent to every device set — webpush: Delivery outcome "
                             "unknown: the worker stopped during the provider call.")
    assert [r.token for r in apple.requests] == [IPHONE]
    assert push_service.delivered == []
    assert message.delivery_attempts.filter(outcome="unknown").count() == 1


def test_a_worker_killed_after_one_set_was_accepted_in_the_same_pass_leaves_it_sent_once(
        apple, push_service, apns_provider, webpush_provider, queue_message):
    browser = push_service.subscribe()
    message = queue_message("push", TEMPLATE, recipient={
        "id": "ev", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE]}, "push:webpush": {"subscriptions": [browser]}}})
    # The worker wrote the APNs set's success (with its next call's start), then died while the
    # Web Push set's call, started first, was still on the wire.
    started = timezone.now() - timedelta(hours=1)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1,
                                                 updated_at=started)
    DeliveryAttempt.objects.create(message=message, provider="webpush-main",
                                   provider_kind="webpush", started_at=started)
    DeliveryAttempt.objects.create(message=message, provider="apns-main", provider_kind="apns",
                                   started_at=started, outcome="succeeded",
                                   response={"message_id": "apns-id-1"})

    sweep()

    message.refresh_from_db()
    assert (message.status, message.provider, message.provider_message_id) == (
        Message.Status.SENT, "apns-main", "apns-id-1")
    assert message.error == ("Not sent to every device set — webpush: Delivery outcome "
                             "unknown: the worker stopped during the provider call.")
    assert sorted(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("apns-main", "succeeded"), ("webpush-main", "unknown")]
    assert apple.requests == [] and push_service.requests == []


def test_a_resend_gives_every_device_set_a_fresh_chance(
        apple, push_service, apns_provider, webpush_provider, queue_message, clarion_settings):
    from notifications.services import message_resend

    clarion_settings(DELIVERY_MAX_ATTEMPTS=2, BREAKER_FAILURES=100)
    browser = push_service.subscribe()
    message = queue_message("push", TEMPLATE, recipient={
        "id": "fy", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [IPHONE]}, "push:webpush": {"subscriptions": [browser]}}})
    apple.scripted += [(500, "InternalServerError"), (500, "InternalServerError")]
    push_service.server.script(Reply(413, body=b"too large"))
    deliver(str(message.id))  # Web Push refuses for good; APNs is down, retried
    due_now(message)
    deliver(str(message.id))  # APNs still down: its retries used up
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert (len(apple.requests), len(push_service.requests)) == (2, 1)

    assert message_resend(message=message)
    push_service.server.script(Reply(503, headers={"Retry-After": "1"}))
    deliver(str(message.id))  # APNs takes it now; Web Push answers 503: that set retries
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert timeline(message, StepLog.Event.RETRYING)[-1]["device_sets"] == {
        "apns": "sent", "webpush": "retry"}
    due_now(message)
    deliver(str(message.id))

    message.refresh_from_db()
    # The first send's 413 does not exclude Web Push from the resend's retry, and the set APNs
    # took in this send is not sent twice.
    assert (message.status, message.error) == (Message.Status.SENT, "")
    assert timeline(message, StepLog.Event.SENT)[-1]["device_sets"] == {
        "apns": "sent", "webpush": "sent"}
    assert [r.token for r in apple.requests] == [IPHONE] * 3
    assert push_service.delivered == [{**PAYLOAD, "id": str(message.id)}]
    assert list(message.delivery_attempts.filter(send_number=2).order_by(
        "started_at", "id").values_list("provider", "outcome")) == [
        ("apns-main", "succeeded"), ("webpush-main", "transient_error"),
        ("webpush-main", "succeeded")]
    assert apple.problems == [] and push_service.problems == []


# --- 413 / oversize, 429 and 5xx never deactivate a device -----------------------------------

APNS_ANSWERS = [(413, "PayloadTooLarge", "permanent_error", Message.Status.FAILED),
                (429, "TooManyRequests", "transient_error", Message.Status.QUEUED),
                (500, "InternalServerError", "transient_error", Message.Status.QUEUED),
                (503, "ServiceUnavailable", "transient_error", Message.Status.QUEUED)]


@pytest.mark.parametrize(("status", "reason", "outcome", "message_status"), APNS_ANSWERS)
def test_apns_oversize_throttling_and_outages_kill_no_token(
        apple, apns_provider, queue_message, status, reason, outcome, message_status):
    apple.scripted.append((status, reason))
    message = queue_message("push", TEMPLATE, recipient={
        "id": "ed", "name": "Ada", "channel_data": {"push:apns": {"tokens": [IPHONE]}}})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == message_status
    assert list(message.delivery_attempts.values_list("outcome", "status_code")) == [
        (outcome, status)]
    assert rows("ed") == {"apns": {"tokens": [IPHONE]}}
    assert [r.status for r in apple.requests] == [status]


WEBPUSH_ANSWERS = [(413, "permanent_error", Message.Status.FAILED),
                   (429, "transient_error", Message.Status.QUEUED),
                   (500, "transient_error", Message.Status.QUEUED),
                   (503, "transient_error", Message.Status.QUEUED)]


@pytest.mark.parametrize(("status", "outcome", "message_status"), WEBPUSH_ANSWERS)
def test_web_push_oversize_throttling_and_outages_kill_no_subscription(
        push_service, webpush_provider, queue_message, status, outcome, message_status):
    browser = push_service.subscribe()
    push_service.server.script(Reply(status, body=b"refused"))
    message = queue_message("push", TEMPLATE, recipient={
        "id": "fe", "name": "Ada", "channel_data": {"push:webpush": {"subscriptions": [browser]}}})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == message_status
    assert list(message.delivery_attempts.values_list("outcome", "status_code")) == [
        (outcome, status)]
    assert rows("fe") == {"webpush": {"subscriptions": [browser]}}
    assert push_service.problems == []


FCM_ANSWERS = [
    (413, "", "", "permanent_error", Message.Status.FAILED),  # a proxy's 413
    (400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "permanent_error",
     Message.Status.FAILED),  # FCM's "message is too big"
    (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "transient_error", Message.Status.QUEUED),
    (500, "INTERNAL", "INTERNAL", "transient_error", Message.Status.QUEUED),
    (503, "UNAVAILABLE", "UNAVAILABLE", "transient_error", Message.Status.QUEUED)]


@pytest.mark.parametrize(("status", "code", "fcm_code", "outcome", "message_status"),
                         FCM_ANSWERS)
def test_fcm_oversize_throttling_and_outages_kill_no_token(
        google, fcm_provider, queue_message, status, code, fcm_code, outcome, message_status):
    google.server.script(
        fcm_error(status, code, "Android message is too big" if status in (400, 413)
                  else "Try again later.", fcm_code or None) if code
        else Reply(413, body=b"Request Entity Too Large"))
    message = queue_message("push", TEMPLATE, recipient={
        "id": "gu", "name": "Ada", "channel_data": {"push:fcm": {"tokens": [FCM_PHONE]}}})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == message_status
    assert list(message.delivery_attempts.values_list("outcome", "status_code")) == [
        (outcome, status)]
    assert rows("gu") == {"fcm": {"tokens": [FCM_PHONE]}}
    assert google.problems == []
