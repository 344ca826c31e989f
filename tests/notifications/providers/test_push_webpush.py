"""Web Push through pywebpush against a real push service on 127.0.0.1 that checks the VAPID
header (RFC 8292), Content-Encoding/TTL/Urgency/Topic (RFC 8030) and decrypts the aes128gcm body
with the subscriber's own keys (RFC 8291); 404/410 mean the subscription is gone."""

import base64
import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from notifications.providers import registry
from notifications.providers.base import (
    ConfigurationError,
    OutboundMessage,
    PermanentError,
    TransientError,
)
from notifications.providers.webpush import DEFAULT_TTL_SECONDS, WebPush

from .fake_push import FakePushService, ec_key_pem
from .servers import Reply

SUBJECT = "mailto:ops@example.test"


@pytest.fixture(scope="module")
def vapid_key():
    return ec_key_pem()


@pytest.fixture(scope="module")
def push_service_server():
    server = FakePushService()
    yield server
    server.stop()


@pytest.fixture
def push_service(push_service_server, clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    push_service_server.reset()
    return push_service_server


def webpush(key) -> WebPush:
    return WebPush(key="webpush-main",
                   credentials={"vapid_private_key": key, "vapid_subject": SUBJECT})


def outbound(subscriptions, *, step_config=None) -> OutboundMessage:
    return OutboundMessage(id=str(uuid.uuid4()), channel="push", to="",
                           content={"title": "Your order shipped", "body": "It arrives Tuesday.",
                                    "data": '{"url": "/orders/42"}'},
                           channel_data={"subscriptions": list(subscriptions)},
                           step_config=step_config or {})


def test_webpush_is_a_registered_push_kind():
    assert registry.get("webpush") is WebPush and WebPush.channel == "push"


def test_the_push_service_gets_a_vapid_signed_encrypted_payload_it_can_decrypt(push_service,
                                                                              vapid_key):
    subscription = push_service.subscribe()
    message = outbound([subscription])
    result = webpush(vapid_key).send(message)
    assert push_service.problems == []
    assert push_service.delivered == [{"title": "Your order shipped",
                                       "body": "It arrives Tuesday.",
                                       "data": {"url": "/orders/42"}, "id": message.id}]
    (request,) = push_service.requests
    assert request.headers["ttl"] == str(DEFAULT_TTL_SECONDS)
    assert request.headers["content-encoding"] == "aes128gcm"
    assert result.provider_message_id.startswith(f"{push_service.server.url}/m/")
    # The subscription's auth secret never reaches the ledger; its endpoint does.
    assert subscription["keys"]["auth"] not in str(result.exchange.request)
    assert result.exchange.response["devices"][0]["status"] == 201


def test_the_vapid_key_may_be_given_as_base64url_raw_bytes(push_service, vapid_key):
    private = serialization.load_pem_private_key(vapid_key.encode(), password=None)
    raw = private.private_numbers().private_value.to_bytes(32, "big")
    key = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    webpush(key).send(outbound([push_service.subscribe()]))
    assert push_service.problems == [] and len(push_service.delivered) == 1


def test_step_ttl_priority_and_collapse_key_become_push_headers(push_service, vapid_key):
    webpush(vapid_key).send(outbound([push_service.subscribe()], step_config={
        "ttl": 60, "priority": "high", "collapse_key": "orders"}))
    assert push_service.problems == []
    headers = push_service.requests[0].headers
    assert (headers["ttl"], headers["urgency"], headers["topic"]) == ("60", "high", "orders")


def test_gone_and_expired_subscriptions_are_dead_while_the_live_one_is_delivered(push_service,
                                                                               vapid_key):
    live, gone, expired = (push_service.subscribe() for _ in range(3))
    push_service.gone.add(gone["endpoint"].rpartition("/")[2])
    push_service.expired.add(expired["endpoint"].rpartition("/")[2])
    result = webpush(vapid_key).send(outbound([gone, live, expired]))
    assert result.dead_addresses == [gone, expired]  # exactly as stored in ChannelData
    assert len(push_service.delivered) == 1


def test_every_subscription_gone_is_permanent_naming_them_dead(push_service, vapid_key):
    gone = push_service.subscribe()
    push_service.gone.add(gone["endpoint"].rpartition("/")[2])
    with pytest.raises(PermanentError) as caught:
        webpush(vapid_key).send(outbound([gone]))
    assert caught.value.dead_addresses == [gone]
    assert "Web Push 410" in str(caught.value)


def test_throttling_is_transient_and_honours_retry_after(push_service, vapid_key):
    push_service.server.script(Reply(429, headers={"Retry-After": "120"}))
    with pytest.raises(TransientError) as caught:
        webpush(vapid_key).send(outbound([push_service.subscribe()]))
    assert (caught.value.retry_after, caught.value.status_code) == (120.0, 429)


def test_a_payload_the_service_refuses_as_too_large_is_permanent(push_service, vapid_key):
    push_service.server.script(Reply(413))
    with pytest.raises(PermanentError) as caught:
        webpush(vapid_key).send(outbound([push_service.subscribe()]))
    assert caught.value.dead_addresses == []


def test_a_private_endpoint_is_refused_without_a_request(push_service_server, vapid_key,
                                                          clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=False)
    push_service_server.reset()
    with pytest.raises(PermanentError) as caught:
        webpush(vapid_key).send(outbound([push_service_server.subscribe()]))
    assert "Refused push endpoint" in str(caught.value)
    assert "private or reserved address" in str(caught.value)
    assert push_service_server.requests == []


def test_a_malformed_subscription_is_permanent_but_not_deactivated(push_service, vapid_key):
    broken = {"endpoint": f"{push_service.server.url}/push/x"}
    with pytest.raises(PermanentError) as caught:
        webpush(vapid_key).send(outbound([broken]))
    assert "needs endpoint and keys.p256dh/auth" in str(caught.value)
    assert caught.value.dead_addresses == []


def test_webpush_config_needs_a_p256_key_and_a_contact_subject(vapid_key):
    WebPush.validate_config({"vapid_private_key": vapid_key, "vapid_subject": SUBJECT}, {})
    with pytest.raises(ConfigurationError) as caught:
        WebPush.validate_config({"vapid_private_key": "not-a-key", "vapid_subject": "ops"}, {})
    assert list(caught.value.fields) == ["credentials.vapid_private_key",
                                         "credentials.vapid_subject"]
