"""SendGrid's signed event webhook, authenticated by its ECDSA signature alone (no basic auth):
SendGrid signs the timestamp followed by the raw body with ECDSA P-256 / SHA-256 and sends the
base64 DER signature and the timestamp in X-Twilio-Email-Event-Webhook-Signature / -Timestamp
(https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features)."""

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from notifications.models import Message, MessageEvent

from . import status_support

sent_message = status_support.sent_message  # the fixture

pytestmark = pytest.mark.django_db

SENDGRID_URL = "/webhooks/anymail/sendgrid/tracking/"
KEY_SETTING = "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"

# SendGrid's own test vector for its signed event webhook (the EventWebhook tests of its
# official libraries, e.g. sendgrid-python test/test_eventwebhook.py): the verification key as
# the SendGrid console shows it, and its signature over TIMESTAMP + PAYLOAD.
DOCUMENTED_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbh"
                  "dbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==")
DOCUMENTED_SIGNATURE = ("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSz"
                        "oQsbVRamr2nlxFDWYNH2j/0=")
DOCUMENTED_TIMESTAMP = "1588788367"
DOCUMENTED_PAYLOAD = ('{"category":"example_payload","event":"test_event",'
                      '"message_id":"message_id"}')
# The same vector's "bad signature": one character changed.
DOCUMENTED_BAD_SIGNATURE = ("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6"
                            "BpSzoQsbVRamr2nlxFDWYNH3j/0=")
REFUSED = {"error": "forbidden", "detail": "SendGrid webhook called with incorrect signature "
                                           f"(check Anymail {KEY_SETTING} setting)"}


def post(client, body: str, *, signature: str | None, timestamp: str | None):
    headers = {}
    if signature is not None:
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_SIGNATURE"] = signature
    if timestamp is not None:
        headers["HTTP_X_TWILIO_EMAIL_EVENT_WEBHOOK_TIMESTAMP"] = timestamp
    return client.post(SENDGRID_URL, data=body, content_type="application/json", **headers)


@pytest.fixture
def documented_key(settings):
    """SendGrid's verification key configured, and no ANYMAIL_WEBHOOK_SECRET (basic auth)."""
    settings.ANYMAIL = {KEY_SETTING: DOCUMENTED_KEY}


def test_sendgrids_documented_signature_is_accepted_without_basic_auth(client, documented_key):
    response = post(client, DOCUMENTED_PAYLOAD, signature=DOCUMENTED_SIGNATURE,
                    timestamp=DOCUMENTED_TIMESTAMP)
    # Past the signature check: the example's body is one object, where SendGrid's webhook
    # posts a list of events, and that is a 400 (never a 500).
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "detail": "The body is not a SendGrid tracking payload."}


@pytest.mark.parametrize(("body", "signature", "timestamp"), [
    (DOCUMENTED_PAYLOAD, DOCUMENTED_BAD_SIGNATURE, DOCUMENTED_TIMESTAMP),
    (DOCUMENTED_PAYLOAD, DOCUMENTED_SIGNATURE, "1588788368"),
    (DOCUMENTED_PAYLOAD.replace("test_event", "delivered"), DOCUMENTED_SIGNATURE,
     DOCUMENTED_TIMESTAMP),
    (DOCUMENTED_PAYLOAD, "not base64!", DOCUMENTED_TIMESTAMP),
], ids=["bad-signature", "other-timestamp", "other-body", "garbled-signature"])
def test_a_badly_signed_sendgrid_webhook_is_refused(client, documented_key, body, signature,
                                                    timestamp):
    response = post(client, body, signature=signature, timestamp=timestamp)
    assert response.status_code == 403
    assert response.json() == REFUSED


def test_a_sendgrid_webhook_without_its_signature_headers_is_refused(client, documented_key):
    response = post(client, DOCUMENTED_PAYLOAD, signature=None, timestamp=None)
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "X-Twilio-Email-Event-Webhook-Signature header missing from webhook"}


def test_sendgrid_without_a_verification_key_or_basic_auth_is_refused(client, settings):
    settings.ANYMAIL = {}
    response = post(client, DOCUMENTED_PAYLOAD, signature=DOCUMENTED_SIGNATURE,
                    timestamp=DOCUMENTED_TIMESTAMP)
    assert response.status_code == 403
    assert response.json() == {
        "error": "forbidden",
        "detail": "Set ANYMAIL_WEBHOOK_SECRET: this ESP's webhooks are authenticated by basic "
                  "auth only."}


# --- A real event, signed as SendGrid signs ------------------------------------------------------

@pytest.fixture
def signing_key(settings):
    """A P-256 key pair standing in for SendGrid's; its public half configured as SendGrid's
    console gives it (base64 DER SubjectPublicKeyInfo, no PEM armour)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    settings.ANYMAIL = {KEY_SETTING: base64.b64encode(public).decode()}
    return key


def sendgrid_signature(key, timestamp: str, body: bytes) -> str:
    return base64.b64encode(key.sign(timestamp.encode() + body,
                                     ec.ECDSA(hashes.SHA256()))).decode()


def delivered_event(message) -> bytes:
    return json.dumps([{
        "email": "ada@example.test", "timestamp": 1795000000, "event": "delivered",
        "smtp-id": f"<{message.provider_message_id}>", "sg_event_id": "sg-event-1",
        "sg_message_id": f"{message.provider_message_id}.filter0001", "response": "250 OK",
        "clarion_message_id": str(message.id),  # our metadata, echoed as a custom arg
    }]).encode()


def test_a_correctly_signed_sendgrid_event_marks_the_message_delivered(client, signing_key,
                                                                       sent_message):
    message = sent_message("sendgrid", "sg-msg-1")
    body = delivered_event(message)
    response = post(client, body.decode(), timestamp="1795000001",
                    signature=sendgrid_signature(signing_key, "1795000001", body))
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    event = MessageEvent.objects.get(message=message)
    assert (event.provider_kind, event.kind, event.event_id) == ("sendgrid", "delivered",
                                                            "sg-event-1")


def test_a_sendgrid_event_changed_after_signing_is_refused(client, signing_key, sent_message):
    message = sent_message("sendgrid", "sg-msg-2")
    body = delivered_event(message)
    signature = sendgrid_signature(signing_key, "1795000001", body)
    forged = body.replace(b'"delivered"', b'"bounce"')
    response = post(client, forged.decode(), signature=signature, timestamp="1795000001")
    assert response.status_code == 403
    assert response.json() == REFUSED
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert not MessageEvent.objects.filter(message=message).exists()
