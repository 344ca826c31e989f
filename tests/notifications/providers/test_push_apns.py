"""APNs through aioapns against a real HTTP/2 + TLS server on 127.0.0.1 (self-signed certificate,
trusted through the `ca_file` option) that checks the ES256 provider token and the apns-*
headers as Apple documents them, and answers Unregistered/BadDeviceToken for dead tokens."""

import uuid

import pytest

from notifications.providers import apns as apns_module
from notifications.providers import registry
from notifications.providers.apns import APNs, apns_id
from notifications.providers.base import (
    ConfigurationError,
    OutboundMessage,
    PermanentError,
    TransientError,
)

from .fake_push import FakeAPNs, ec_key_pem

TEAM_ID, KEY_ID, TOPIC = "TEAM123456", "KEY1234567", "com.example.clarion"
GOOD, OTHER, GONE, BAD = ("a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32)


@pytest.fixture(scope="module")
def auth_key():
    return ec_key_pem()


@pytest.fixture(autouse=True)
def fresh_provider_tokens():
    apns_module._apns_tokens.clear()
    yield
    apns_module._apns_tokens.clear()


@pytest.fixture
def apple(auth_key):
    server = FakeAPNs(team_id=TEAM_ID, key_id=KEY_ID, topic=TOPIC, private_key=auth_key)
    yield server
    server.stop()


def apns(apple, auth_key, **options) -> APNs:
    return APNs(key="apns-main", credentials={"team_id": TEAM_ID, "key_id": KEY_ID,
                                              "private_key": auth_key, "topic": TOPIC},
                options={"base_url": apple.url, "ca_file": apple.cert_file, **options})


def outbound(tokens, *, step_config=None, data='{"order": 42}') -> OutboundMessage:
    return OutboundMessage(id=str(uuid.uuid4()), channel="push", to="",
                           content={"title": "Your order shipped", "body": "It arrives Tuesday.",
                                    "data": data},
                           channel_data={"tokens": list(tokens)}, step_config=step_config or {})


def test_apns_is_a_registered_push_kind():
    assert registry.get("apns") is APNs and APNs.channel == "push"


def test_apns_sends_the_documented_http2_request(apple, auth_key):
    message = outbound([GOOD])
    result = apns(apple, auth_key).send(message)
    assert apple.problems == []
    (request,) = apple.requests
    expected_id = apns_id(message.id, GOOD)
    assert request.headers[":method"] == "POST"
    assert request.headers[":path"] == f"/3/device/{GOOD}"
    assert request.headers[":scheme"] == "https"
    assert (request.headers["apns-topic"], request.headers["apns-push-type"],
            request.headers["apns-priority"], request.headers["apns-id"]) == (
        TOPIC, "alert", "10", expected_id)
    assert request.json() == {"aps": {"alert": {"title": "Your order shipped",
                                                "body": "It arrives Tuesday."}}, "order": 42}
    assert result.provider_message_id == expected_id
    assert result.dead_addresses == []


def test_step_ttl_priority_and_collapse_key_become_apns_headers(apple, auth_key):
    apns(apple, auth_key).send(outbound([GOOD], step_config={
        "ttl": 600, "priority": "normal", "collapse_key": "orders"}))
    assert apple.problems == []
    headers = apple.requests[0].headers
    assert (headers["apns-priority"], headers["apns-collapse-id"]) == ("5", "orders")
    assert int(headers["apns-expiration"]) > 0


@pytest.mark.parametrize("priority, header", [
    ("high", "10"), ("normal", "5"), ("low", "5"), ("very-low", "1")])
def test_each_step_priority_becomes_the_apns_priority_apple_documents(apple, auth_key, priority,
                                                                      header):
    apns(apple, auth_key).send(outbound([GOOD], step_config={"priority": priority}))
    assert apple.problems == []
    assert apple.requests[0].headers["apns-priority"] == header


def test_unregistered_and_bad_device_tokens_are_dead_while_the_good_one_is_delivered(
        apple, auth_key):
    apple.unregistered.add(GONE)
    apple.bad_tokens.add(BAD)
    result = apns(apple, auth_key).send(outbound([GONE, GOOD, BAD]))
    assert sorted(result.dead_addresses) == sorted([GONE, BAD])
    assert sorted((r.status, r.reason) for r in apple.requests) == [
        (200, ""), (400, "BadDeviceToken"), (410, "Unregistered")]


def test_every_token_dead_is_a_permanent_error_naming_them(apple, auth_key):
    apple.unregistered.update({GONE, OTHER})
    with pytest.raises(PermanentError) as caught:
        apns(apple, auth_key).send(outbound([GONE, OTHER]))
    assert caught.value.dead_addresses == [GONE, OTHER]
    assert "APNs 410 Unregistered" in str(caught.value)


@pytest.mark.parametrize(("status", "reason"), [(429, "TooManyRequests"),
                                                (503, "ServiceUnavailable")])
def test_throttling_and_outages_are_transient(apple, auth_key, status, reason):
    apple.scripted.append((status, reason))
    with pytest.raises(TransientError) as caught:
        apns(apple, auth_key).send(outbound([GOOD]))
    assert caught.value.status_code == status
    assert caught.value.dead_addresses == []


def test_a_refused_topic_is_permanent_and_kills_no_token(apple, auth_key):
    provider = APNs(key="apns-x", credentials={"team_id": TEAM_ID, "key_id": KEY_ID,
                                               "private_key": auth_key, "topic": "com.other"},
                    options={"base_url": apple.url, "ca_file": apple.cert_file})
    with pytest.raises(PermanentError) as caught:
        provider.send(outbound([GOOD]))
    assert str(caught.value).endswith("APNs 400 TopicDisallowed")
    assert caught.value.dead_addresses == []


def test_one_provider_token_serves_every_message_and_connection(apple, auth_key):
    for _ in range(3):
        apns(apple, auth_key).send(outbound([GOOD, OTHER]))
    assert apple.problems == []
    assert apple.connections == 3  # each send() opened its own HTTP/2 connection
    assert len(apple.provider_tokens) == 1  # Apple refuses tokens renewed under 20 minutes


def test_an_expired_provider_token_is_transient_and_renewed_for_the_retry(apple, auth_key):
    provider = apns(apple, auth_key)
    apple.scripted.append((403, "ExpiredProviderToken"))
    with pytest.raises(TransientError):
        provider.send(outbound([GOOD]))
    provider.send(outbound([GOOD]))
    assert len(apple.provider_tokens) == 2


async def test_asend_sends_devices_side_by_side_on_one_connection(apple, auth_key):
    provider = apns(apple, auth_key)
    try:
        first = await provider.asend(outbound([GOOD, OTHER]))
        second = await provider.asend(outbound([GOOD]))
    finally:
        await provider.aclose()
    assert apple.problems == []
    assert first.provider_message_id and second.provider_message_id
    assert (len(apple.requests), apple.connections) == (3, 1)


def test_a_server_whose_certificate_is_not_trusted_is_transient_and_gets_nothing(apple,
                                                                                 auth_key):
    provider = APNs(key="apns-x", credentials={"team_id": TEAM_ID, "key_id": KEY_ID,
                                               "private_key": auth_key, "topic": TOPIC},
                    options={"base_url": apple.url, "timeout": 3})
    with pytest.raises(TransientError) as caught:
        provider.send(outbound([GOOD]))
    assert "APNs unreachable" in str(caught.value)
    assert apple.requests == []


def test_apns_config_checks_apples_ids_and_the_es256_key(auth_key):
    APNs.validate_config({"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": auth_key,
                          "topic": TOPIC}, {"sandbox": True})
    with pytest.raises(ConfigurationError) as caught:
        APNs.validate_config({"team_id": "T1", "key_id": KEY_ID, "topic": TOPIC,
                              "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n"}, {})
    assert list(caught.value.fields) == ["credentials.team_id", "credentials.private_key"]


def test_sandbox_option_selects_apples_development_server():
    provider = APNs(key="k", credentials={}, options={"sandbox": True})
    assert provider.base_url == "https://api.sandbox.push.apple.com"
    assert APNs(key="k", credentials={}).base_url == "https://api.push.apple.com"


@pytest.mark.django_db
def test_the_admins_send_test_reaches_a_device_through_apns(apple, auth_key, provider_config):
    from notifications.providers.services import provider_send_test

    config = provider_config("apns-main", "push", "apns",
                             {"team_id": TEAM_ID, "key_id": KEY_ID, "private_key": auth_key,
                              "topic": TOPIC},
                             options={"base_url": apple.url, "ca_file": apple.cert_file})
    result = provider_send_test(config=config, to=GOOD)
    assert apple.problems == []
    assert apple.requests[0].json()["aps"]["alert"] == {
        "title": "Clarion", "body": "Clarion test message from provider apns-main."}
    assert result.provider_message_id == apple.requests[0].headers["apns-id"]
