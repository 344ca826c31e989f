"""FCM HTTP v1 against a real local server playing Google's OAuth token endpoint and FCM:
google-auth signs the service account's JWT assertion and exchanges it; each device gets the
documented messages:send request; UNREGISTERED tokens come back dead."""

import json
import uuid

import pytest

from notifications.providers import fcm as fcm_module
from notifications.providers import registry
from notifications.providers.base import (
    ConfigurationError,
    OutboundMessage,
    PermanentError,
    TransientError,
)
from notifications.providers.fcm import FCM

from .fake_push import FakeGoogle, fcm_error
from .servers import Reply

GOOD, OTHER, GONE = ("fcm-token-good-" + "a" * 40, "fcm-token-other-" + "b" * 40,
                     "fcm-gone-" + "c" * 40)


@pytest.fixture(autouse=True)
def fresh_token_cache():
    fcm_module._google_credentials.clear()
    yield
    fcm_module._google_credentials.clear()


@pytest.fixture(scope="module")
def google_server():
    server = FakeGoogle()
    yield server
    server.stop()


@pytest.fixture
def google(google_server):
    google_server.reset()
    return google_server


def fcm(google, **options) -> FCM:
    return FCM(key="fcm-main", credentials={"service_account": google.service_account()},
               options={"base_url": google.url, **options})


def outbound(tokens, *, data='{"order": 42, "url": "https://example.test/o/42", "gift": true}',
             step_config=None, title="Your order shipped", body="It arrives Tuesday.",
             ) -> OutboundMessage:
    return OutboundMessage(id=str(uuid.uuid4()), channel="push", to="",
                           content={"title": title, "body": body, "data": data},
                           channel_data={"tokens": list(tokens)}, step_config=step_config or {})


def test_fcm_is_a_registered_push_kind():
    assert registry.get("fcm") is FCM and FCM.channel == "push"


def test_fcm_sends_the_documented_request_to_each_device(google):
    result = fcm(google).send(outbound([GOOD, OTHER]))
    assert google.problems == []
    sends = google.send_requests()
    assert [r.json()["message"]["token"] for r in sends] == [GOOD, OTHER]
    assert sends[0].json() == {"message": {
        "token": GOOD,
        "notification": {"title": "Your order shipped", "body": "It arrives Tuesday."},
        "data": {"order": "42", "url": "https://example.test/o/42", "gift": "true"}}}
    assert result.provider_message_id.startswith("projects/clarion-test/messages/0:")
    assert result.dead_addresses == []
    # The ledger's copy: the bearer token is redacted, each device's answer is kept.
    assert result.exchange.request["first"]["headers"]["Authorization"] == "[redacted]"
    assert [d["status"] for d in result.exchange.response["devices"]] == [200, 200]


def test_the_oauth_assertion_is_exchanged_once_for_many_messages(google):
    fcm(google).send(outbound([GOOD]))
    fcm(google).send(outbound([GOOD, OTHER]))
    assert google.problems == []
    assert len(google.token_requests()) == 1
    assert len(google.send_requests()) == 3


def test_token_uri_option_points_the_oauth_exchange_elsewhere(google):
    # The key names Google's real endpoint (unreachable from the tests); the option wins.
    account = {**google.service_account(), "token_uri": "https://oauth2.googleapis.com/token"}
    provider = FCM(key="fcm-x", credentials={"service_account": json.dumps(account)},
                   options={"base_url": google.url, "token_uri": f"{google.url}/token"})
    provider.send(outbound([GOOD]))
    assert google.problems == []
    assert len(google.token_requests()) == 1 and len(google.send_requests()) == 1


def test_step_ttl_priority_and_collapse_key_become_android_options(google):
    fcm(google).send(outbound([GOOD], step_config={"ttl": 3600, "priority": "high",
                                                   "collapse_key": "orders"}))
    assert google.problems == []
    assert google.send_requests()[0].json()["message"]["android"] == {
        "ttl": "3600s", "priority": "HIGH", "collapse_key": "orders"}


def test_an_unregistered_token_is_dead_while_the_other_device_gets_the_message(google):
    google.unregistered.add(GONE)
    result = fcm(google).send(outbound([GONE, GOOD]))
    assert result.dead_addresses == [GONE]
    assert result.provider_message_id.startswith("projects/clarion-test/messages/")
    devices = result.exchange.response["devices"]
    assert [(d["status"], d["dead"]) for d in devices] == [(404, True), (200, False)]


def test_every_token_unregistered_is_a_permanent_error_naming_them_dead(google):
    google.unregistered.update({GONE, OTHER})
    with pytest.raises(PermanentError) as caught:
        fcm(google).send(outbound([GONE, OTHER]))
    assert caught.value.dead_addresses == [GONE, OTHER]
    assert "FCM 404 NOT_FOUND UNREGISTERED: Requested entity was not found." in str(caught.value)


def test_unavailable_is_transient_and_honours_retry_after(google):
    provider = fcm(google)
    provider.access_token()
    unavailable = fcm_error(503, "UNAVAILABLE", "The service is currently unavailable.",
                            "UNAVAILABLE")
    unavailable.headers["Retry-After"] = "30"
    google.server.script(unavailable)
    with pytest.raises(TransientError) as caught:
        provider.send(outbound([GOOD]))
    assert (caught.value.retry_after, caught.value.status_code) == (30.0, 503)
    assert caught.value.dead_addresses == []


def test_a_transient_failure_on_one_device_does_not_hold_back_the_others(google):
    provider = fcm(google)
    provider.access_token()
    google.server.script(fcm_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.",
                                   "QUOTA_EXCEEDED"))
    result = provider.send(outbound([OTHER, GOOD]))
    assert [d["status"] for d in result.exchange.response["devices"]] == [429, 200]


def test_invalid_argument_is_permanent_and_does_not_kill_the_token(google):
    provider = fcm(google)
    provider.access_token()
    google.server.script(fcm_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.",
                                   "INVALID_ARGUMENT"))
    with pytest.raises(PermanentError) as caught:
        provider.send(outbound([GOOD]))
    assert caught.value.dead_addresses == []
    assert caught.value.status_code == 400


def test_a_revoked_access_token_is_renewed_once_and_the_send_goes_through(google):
    provider = fcm(google)
    provider.send(outbound([GOOD]))
    google.revoked.add(google.issued[0])
    result = provider.send(outbound([GOOD]))
    assert result.provider_message_id
    assert len(google.token_requests()) == 2
    assert [r.headers["authorization"] for r in google.send_requests()][1:] == [
        f"Bearer {google.issued[0]}", f"Bearer {google.issued[1]}"]


def test_a_refused_oauth_exchange_is_permanent(google):
    google.token_answer = Reply(400, json={"error": "invalid_grant",
                                           "error_description": "Invalid JWT Signature."})
    with pytest.raises(PermanentError) as caught:
        fcm(google).send(outbound([GOOD]))
    assert "OAuth token refused" in str(caught.value)
    assert google.send_requests() == []


def test_an_unreachable_fcm_is_transient():
    google = FakeGoogle()
    provider = fcm(google)
    provider.access_token()
    google.stop()
    with pytest.raises(TransientError) as caught:
        provider.send(outbound([GOOD]))
    assert "connection error: ConnectError" in str(caught.value)


def test_a_recipient_without_tokens_is_a_permanent_error(google):
    with pytest.raises(PermanentError) as caught:
        fcm(google).send(outbound([]))
    assert str(caught.value) == "The recipient has no Firebase Cloud Messaging (HTTP v1) tokens."


def test_push_data_that_is_not_a_json_object_is_a_permanent_error(google):
    with pytest.raises(PermanentError) as caught:
        fcm(google).send(outbound([GOOD], data='["a", "b"]'))
    assert str(caught.value) == "The push data template must render to a JSON object."
    assert google.server.requests == []


async def test_asend_reaches_every_device_concurrently(google):
    provider = fcm(google)
    try:
        result = await provider.asend(outbound([GOOD, OTHER, GONE]))
    finally:
        await provider.aclose()
    assert google.problems == []
    assert len(google.send_requests()) == 3 and len(google.token_requests()) == 1
    assert result.provider_message_id


def test_fcm_config_needs_a_service_account_key(google):
    FCM.validate_config({"service_account": google.service_account()}, {"base_url": google.url})
    with pytest.raises(ConfigurationError) as caught:
        FCM.validate_config({"service_account": {"type": "service_account"}}, {})
    assert list(caught.value.fields) == ["credentials.service_account"]
    with pytest.raises(ConfigurationError) as caught:
        FCM.validate_config({}, {"sandbox": True})
    assert caught.value.fields == {
        "credentials.service_account": ["This field is required."],
        "options.sandbox": ["Unknown option; fcm takes: base_url, timeout, token_uri, "
                            "cost_per_message, cost_by_country, cost_currency."]}
