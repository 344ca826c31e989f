"""Push end to end: a workflow's push step rendered by the engine, delivered by the orchestrator
through configured push providers (real local FCM, APNs and Web Push servers) to each kind's
devices, and dead tokens taken out of the recipient's channel data (test_push_fanout.py: every
device set at once, retries and failures per set)."""

import pytest

from notifications.delivery import deliver
from notifications.engine import channel_address
from notifications.models import ChannelData, Message
from notifications.providers import apns, fcm

from .fake_push import FakeAPNs, FakeGoogle, FakePushService, ec_key_pem

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.clarion"
APNS_GONE, APNS_BAD = "e5" * 32, "f6" * 32
FCM_GOOD, FCM_GONE = "fcm-good-" + "1" * 40, "fcm-gone-" + "2" * 40
TEMPLATE = {"title": "Hi {{ recipient.name }}", "body": "Your order shipped.",
            "data": '{"recipient": "{{ recipient.id }}"}'}


@pytest.fixture(autouse=True)
def fresh_caches():
    fcm._google_credentials.clear()
    apns._apns_tokens.clear()


@pytest.fixture
def google():
    server = FakeGoogle()
    yield server
    server.stop()


@pytest.fixture
def apple():
    key = ec_key_pem()
    server = FakeAPNs(team_id=TEAM_ID, key_id=KEY_ID, topic=TOPIC, private_key=key)
    server.auth_key = key
    yield server
    server.stop()


def attempts(message):
    return list(message.delivery_attempts.order_by("id").values_list("provider", "outcome"))


def test_apns_with_only_dead_tokens_fails_while_fcm_delivers_and_dead_tokens_are_deactivated(
        google, apple, provider_config, queue_message):
    apple.unregistered.add(APNS_GONE)
    apple.bad_tokens.add(APNS_BAD)
    google.unregistered.add(FCM_GONE)
    provider_config("apns-main", "push", "apns",
                    {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": apple.auth_key,
                     "topic": TOPIC},
                    options={"base_url": apple.url, "ca_file": apple.cert_file}, priority=1)
    provider_config("fcm-main", "push", "fcm", {"service_account": google.service_account()},
                    options={"base_url": google.url}, priority=2)
    message = queue_message("push", TEMPLATE, recipient={
        "id": "ada", "name": "Ada", "channel_data": {
            "push:apns": {"tokens": [APNS_GONE, APNS_BAD]},
            "push:fcm": {"tokens": [FCM_GONE, FCM_GOOD]}}})
    assert message.status == Message.Status.QUEUED

    deliver(str(message.id))

    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "fcm-main")
    assert message.error.startswith("Not sent to every device set — apns: ")
    assert message.provider_message_id.startswith("projects/clarion-test/messages/")
    assert attempts(message) == [("apns-main", "permanent_error"), ("fcm-main", "succeeded")]
    assert apple.problems == [] and google.problems == []
    sent = {r.json()["message"]["token"]: r.json()["message"] for r in google.send_requests()}
    assert sorted(sent) == [FCM_GONE, FCM_GOOD]  # concurrently with the APNs set: any order
    assert sent[FCM_GOOD]["notification"] == {"title": "Hi Ada", "body": "Your order shipped."}
    assert sent[FCM_GOOD]["data"] == {"recipient": "ada"}

    apns_row = ChannelData.objects.get(recipient__external_id="ada", provider_kind="apns")
    fcm_row = ChannelData.objects.get(recipient__external_id="ada", provider_kind="fcm")
    assert apns_row.data["tokens"] == []
    assert sorted(item["address"] for item in apns_row.data["inactive"]) == sorted(
        [APNS_GONE, APNS_BAD])
    assert fcm_row.data["tokens"] == [FCM_GOOD]
    assert [item["address"] for item in fcm_row.data["inactive"]] == [FCM_GONE]
    assert "fcm-main" in fcm_row.data["inactive"][0]["reason"]
    # The next push step sees only the kind that still has devices.
    assert channel_address(message.step, message.run) == ("fcm", "")


def test_web_push_delivers_the_rendered_notification_and_drops_a_gone_subscription(
        provider_config, queue_message, clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    service = FakePushService()
    try:
        live, gone = service.subscribe(), service.subscribe()
        service.gone.add(gone["endpoint"].rpartition("/")[2])
        provider_config("webpush-main", "push", "webpush",
                        {"vapid_private_key": ec_key_pem(), "vapid_subject": "mailto:o@x.test"})
        message = queue_message("push", TEMPLATE, recipient={
            "id": "bob", "name": "Bob",
            "channel_data": {"push:webpush": {"subscriptions": [gone, live]}}})
        deliver(str(message.id))
        message.refresh_from_db()
        assert (message.status, message.provider) == (Message.Status.SENT, "webpush-main")
        assert service.problems == []
        assert service.delivered == [{"title": "Hi Bob", "body": "Your order shipped.",
                                      "data": {"recipient": "bob"}, "id": str(message.id)}]
        row = ChannelData.objects.get(recipient__external_id="bob", provider_kind="webpush")
        assert row.data["subscriptions"] == [live]
        assert [item["address"] for item in row.data["inactive"]] == [gone]
    finally:
        service.stop()


def test_a_transient_push_outage_is_retried_later_and_kills_no_token(google, provider_config,
                                                                     queue_message):
    from .fake_push import fcm_error

    provider_config("fcm-main", "push", "fcm", {"service_account": google.service_account()},
                    options={"base_url": google.url})
    message = queue_message("push", TEMPLATE, recipient={
        "id": "cy", "name": "Cy", "channel_data": {"push:fcm": {"tokens": [FCM_GOOD]}}})
    google.server.respond = lambda request: (
        google.__class__.respond(google, request) if request.path == "/token"
        else fcm_error(503, "UNAVAILABLE", "The service is currently unavailable."))
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED and message.next_attempt_at is not None
    assert attempts(message) == [("fcm-main", "transient_error")]
    row = ChannelData.objects.get(recipient__external_id="cy", provider_kind="fcm")
    assert row.data == {"tokens": [FCM_GOOD]}
