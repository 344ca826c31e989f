"""Provider status callbacks under malformed and oversized bodies: valid events are applied
once, bad ones are logged, the answer is 2xx or 4xx, never 5xx."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications.models import Message, MessageEvent

from . import status_support
from .test_sendgrid_tracking import SENDGRID_URL, post, sendgrid_signature, signing_key
from .test_status_webhooks import (
    MAILGUN_URL,
    WEBHOOK_SECRET,
    anymail,
    basic_auth,
    mailgun_event,
)

sent_message = status_support.sent_message  # the fixtures
__all__ = ["anymail", "signing_key"]

pytestmark = pytest.mark.django_db


def sendgrid_event(message, event: str = "delivered", event_id: str = "sg-1") -> dict:
    return {"email": "ada@example.test", "timestamp": 1795000000, "event": event,
            "smtp-id": f"<{message.provider_message_id}>", "sg_event_id": event_id,
            "sg_message_id": f"{message.provider_message_id}.filter0001",
            "clarion_message_id": str(message.id)}


def signed_post(client, key, events) -> object:
    body = json.dumps(events).encode()
    return post(client, body.decode(), timestamp="1795000001",
                signature=sendgrid_signature(key, "1795000001", body))


MALFORMED = ["not an event", 42, None, [], {}, {"event": 7}, {"event": "delivered"},
             {"event": "delivered", "timestamp": "yesterday", "sg_message_id": 5},
             {"event": "bounce", "sg_message_id": "x" * 100_000, "timestamp": 10**30}]


@pytest.mark.parametrize("bad", MALFORMED, ids=[f"bad{i}" for i in range(len(MALFORMED))])
def test_a_sendgrid_batch_with_one_malformed_event_applies_the_valid_ones_once(
        client, signing_key, sent_message, bad, caplog):
    first, second = sent_message("sendgrid", "sg-a"), sent_message("sendgrid", "sg-b")
    events = [sendgrid_event(first, event_id="sg-a1"), bad,
              sendgrid_event(second, "open", event_id="sg-b1")]
    for _ in range(2):  # SendGrid retries a batch it thinks failed
        response = signed_post(client, signing_key, events)
        assert response.status_code == 200
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == Message.Status.DELIVERED
    assert second.status == Message.Status.OPENED
    assert MessageEvent.objects.filter(message__in=[first, second]).count() == 2
    # Logged: skipped as unreadable, or read by anymail and ignored as naming no message.
    assert ("tracking event 2 of 3 skipped" in caplog.text
            or "Status event for an unknown message ignored" in caplog.text)


@settings(max_examples=60, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(events=st.lists(st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["event", "timestamp", "sg_message_id", "sg_event_id", "email",
                         "smtp-id", "reason", "url", "clarion_message_id", "x"]), inner,
        max_size=6), max_leaves=12), max_size=4))
def test_any_signed_sendgrid_body_is_answered_below_500(client, signing_key, events):
    assert signed_post(client, signing_key, events).status_code < 500


@pytest.mark.parametrize("body", [b"", b"{", b"[" * 10_000, b"\xff\xfe", b"null", b'"x"',
                                  b"[]", b"x" * 2_000_000])
def test_a_malformed_or_oversized_sendgrid_body_is_a_4xx(client, signing_key, body):
    response = client.post(SENDGRID_URL, data=body, content_type="application/json",
                           HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP="1795000001",
                           HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE=sendgrid_signature(
                               signing_key, "1795000001", body))
    assert response.status_code < 500


def test_mailgun_custom_variables_named_like_event_fields_do_not_change_the_event(
        client, anymail, sent_message):
    message = sent_message("mailgun", "<mv1@mg.example.test>")
    payload = mailgun_event("delivered", "mv1@mg.example.test")
    # An operator's custom variables reuse the names of the event's own fields.
    payload["event-data"]["user-variables"] = {
        "event": "failed", "severity": "permanent", "recipient": "eve@example.test",
        "message-id": "<other@mg.example.test>", "timestamp": "0", "id": "forged",
        "clarion_message_id": "not-a-number"}
    response = client.post(MAILGUN_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert MessageEvent.objects.filter(message=message).count() == 1


@pytest.mark.parametrize("event_data", [
    None, [], "x", {}, {"event": None}, {"event": "delivered", "timestamp": "soon"},
    {"event": "delivered", "message": "not a dict", "timestamp": 1},
    {"event": "delivered", "timestamp": 1, "message": {"headers": None}},
    {"event": "delivered", "timestamp": 1e300, "user-variables": []},
])
def test_a_signed_malformed_mailgun_event_is_answered_below_500(client, anymail,
                                                               sent_message, event_data):
    payload = mailgun_event("delivered", "mv2@mg.example.test")
    payload["event-data"] = event_data
    response = client.post(MAILGUN_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code < 500
