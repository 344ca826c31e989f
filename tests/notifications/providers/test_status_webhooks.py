"""Status webhooks posted to the real URLs: anymail's own tracking views (Postmark basic auth,
Mailgun HMAC signatures), Twilio status callbacks (X-Twilio-Signature) and Vonage delivery
receipts (`sig`) and Messages API status webhooks (signed JWT)."""

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import jwt
import pytest
from django.utils import timezone

from notifications.delivery import calls, claim_batch, deliver, deliver_claimed
from notifications.models import Message, MessageEvent, ProviderConfig
from notifications.providers.twilio import twilio_signature
from notifications.providers.vonage import vonage_signature

from . import status_support
from .servers import Reply

sent_message = status_support.sent_message  # the fixture

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "clarion:s3cret-hook"
MAILGUN_SIGNING_KEY = "key-mailgun-signing"
TWILIO_TOKEN = "twilio-auth-token-1"
VONAGE_SECRET = "vonage-signature-secret-0123456789abcdef"


def basic_auth(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@pytest.fixture
def anymail(settings):
    settings.ANYMAIL = {"WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_SIGNING_KEY}


# --- anymail: Postmark (basic auth) -------------------------------------------------------------

POSTMARK_URL = "/webhooks/anymail/postmark/tracking/"


def postmark_delivery(message_id: str, **extra) -> dict:
    return {"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
            "MessageID": message_id, "Recipient": "ada@example.test", "Tag": "welcome",
            "DeliveredAt": "2026-11-22T03:10:00Z", "Details": "Test delivery webhook details",
            "Metadata": {}, **extra}


def test_postmark_delivery_webhook_marks_the_message_delivered_and_keeps_the_payload(
        client, anymail, sent_message):
    message = sent_message("postmark", "883953f4-6105-42a2-a16a-77a8eac79483")
    payload = postmark_delivery(message.provider_message_id)
    response = client.post(POSTMARK_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (
        "delivered", datetime(2026, 11, 22, 3, 10, tzinfo=UTC))
    event = MessageEvent.objects.get(message=message)
    assert (event.provider_kind, event.kind, event.raw) == ("postmark", "delivered", payload)


def test_postmark_open_then_late_delivery_leaves_the_message_opened(client, anymail,
                                                                    sent_message):
    message = sent_message("postmark", "pm-open-1")
    opened = {"RecordType": "Open", "MessageID": "pm-open-1", "Recipient": "ada@example.test",
              "ReceivedAt": "2026-11-22T03:20:00Z", "FirstOpen": True, "Platform": "Desktop",
              "Metadata": {}}
    for payload in (opened, postmark_delivery("pm-open-1")):
        assert client.post(POSTMARK_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET)).status_code == 200
    message.refresh_from_db()
    assert message.status == "opened"
    assert (message.opened_at, message.delivered_at) == (
        datetime(2026, 11, 22, 3, 20, tzinfo=UTC), datetime(2026, 11, 22, 3, 10, tzinfo=UTC))


def test_postmark_hard_bounce_bounces_the_message_with_the_reason(client, anymail, sent_message):
    message = sent_message("postmark", "pm-bounce-1")
    payload = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce",
               "TypeCode": 1, "MessageID": "pm-bounce-1", "Email": "ada@example.test",
               "BouncedAt": "2026-11-22T03:11:00Z", "Description": "The server was unable to "
               "deliver your message (ex: unknown user, mailbox not found).",
               "Details": "smtp;550 5.1.1 unknown user", "Metadata": {}}
    client.post(POSTMARK_URL, data=json.dumps(payload), content_type="application/json",
                HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    message.refresh_from_db()
    assert message.status == "bounced"
    assert message.bounced_at == datetime(2026, 11, 22, 3, 11, tzinfo=UTC)
    assert message.error.startswith("The server was unable to deliver your message")
    assert MessageEvent.objects.get(message=message).event_id == "4323372036854775807"


def test_postmark_events_carry_clarions_message_id_in_metadata(client, anymail, sent_message):
    message = sent_message("postmark", "pm-meta-1")
    payload = postmark_delivery("an-id-we-never-saw",
                                Metadata={"clarion_message_id": str(message.id)})
    client.post(POSTMARK_URL, data=json.dumps(payload), content_type="application/json",
                HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    message.refresh_from_db()
    assert message.status == "delivered"


def test_postmark_webhook_with_wrong_basic_auth_is_refused_with_403(client, anymail,
                                                                   sent_message):
    message = sent_message("postmark", "pm-auth-1")
    response = client.post(POSTMARK_URL, data=json.dumps(postmark_delivery("pm-auth-1")),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth("clarion:guess"))
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden",
                               "detail": "Missing or invalid basic auth in Anymail Postmark "
                                         "webhook"}
    message.refresh_from_db()
    assert message.status == "sent"
    assert not MessageEvent.objects.exists()


def test_basic_auth_only_webhooks_are_refused_when_no_webhook_secret_is_configured(
        client, settings, sent_message):
    settings.ANYMAIL = {}
    sent_message("postmark", "pm-open-door")
    response = client.post(POSTMARK_URL, data=json.dumps(postmark_delivery("pm-open-door")),
                           content_type="application/json")
    assert response.status_code == 403
    assert response.json()["detail"] == ("Set ANYMAIL_WEBHOOK_SECRET: this ESP's webhooks are "
                                         "authenticated by basic auth only.")
    assert not MessageEvent.objects.exists()


def test_postmark_event_for_an_unknown_message_is_answered_200_and_ignored(client, anymail,
                                                                          caplog):
    response = client.post(POSTMARK_URL, data=json.dumps(postmark_delivery("never-sent")),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    assert not MessageEvent.objects.exists()
    assert "unknown message ignored: postmark delivered never-sent" in caplog.text


# --- anymail: Mailgun (HMAC-SHA256 signature) ----------------------------------------------------

MAILGUN_URL = "/webhooks/anymail/mailgun/tracking/"


def mailgun_event(event: str, message_id: str, *, key: str = MAILGUN_SIGNING_KEY,
                  token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0") -> dict:
    timestamp = str(int(time.time()))
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return {"signature": {"timestamp": timestamp, "token": token,
                          "signature": signature.hexdigest()},
            "event-data": {"event": event, "timestamp": 1795143600.5,
                           "id": "Ase7i2zsRYeDXztHGENqRA",
                           "recipient": "ada@example.test",
                           "message": {"headers": {"message-id": message_id}},
                           "user-variables": {}, "tags": ["welcome"]}}


def test_mailgun_signed_click_marks_the_message_clicked(client, anymail, sent_message):
    message = sent_message("mailgun", "<20261122031000.1.ABC@mg.example.test>")
    payload = mailgun_event("clicked", "20261122031000.1.ABC@mg.example.test")
    payload["event-data"]["url"] = "https://example.test/welcome"
    response = client.post(MAILGUN_URL, data=json.dumps(payload), content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    message.refresh_from_db()
    assert (message.status, message.clicked_at) == (
        "clicked", datetime.fromtimestamp(1795143600.5, tz=UTC))
    event = MessageEvent.objects.get(message=message)
    assert (event.event_id, event.description) == (payload["signature"]["token"],
                                                   "https://example.test/welcome")


def test_mailgun_event_signed_with_another_key_is_refused_with_403(client, anymail,
                                                                  sent_message):
    message = sent_message("mailgun", "<x1@mg.example.test>")
    payload = mailgun_event("delivered", "x1@mg.example.test", key="not-the-key")
    response = client.post(MAILGUN_URL, data=json.dumps(payload), content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent"


def test_mailgun_retrying_the_same_event_records_it_once(client, anymail, sent_message):
    message = sent_message("mailgun", "<x2@mg.example.test>")
    payload = json.dumps(mailgun_event("delivered", "x2@mg.example.test"))
    for _ in range(2):
        assert client.post(MAILGUN_URL, data=payload, content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET)).status_code == 200
    assert MessageEvent.objects.filter(message=message).count() == 1


def test_a_legacy_form_encoded_mailgun_event_is_stored_as_json(client, anymail, sent_message):
    message = sent_message("mailgun", "<x3@mg.example.test>")
    timestamp, token = str(int(time.time())), "legacy-token-0123456789abcdef0123456789abcdef"
    signature = hmac.new(MAILGUN_SIGNING_KEY.encode(), f"{timestamp}{token}".encode(),
                         hashlib.sha256).hexdigest()
    form = {"event": "delivered", "recipient": "ada@example.test", "domain": "mg.example.test",
            "Message-Id": "<x3@mg.example.test>", "timestamp": timestamp, "token": token,
            "signature": signature, "tag": ["welcome", "onboarding"]}
    response = client.post(MAILGUN_URL, data=urlencode(form, doseq=True),
                           content_type="application/x-www-form-urlencoded",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET))
    assert response.status_code == 200
    message.refresh_from_db()
    assert message.status == "delivered"
    raw = MessageEvent.objects.get(message=message).raw
    assert (raw["event"], raw["tag"], raw["token"]) == ("delivered", ["welcome", "onboarding"],
                                                        token)


# --- Twilio -----------------------------------------------------------------------------------

def test_twilio_signature_matches_twilios_documented_example():
    # https://www.twilio.com/docs/usage/security#validating-requests
    params = {"CallSid": ["CA1234567890ABCDE"], "Caller": ["+12349013030"], "Digits": ["1234"],
              "From": ["+12349013030"], "To": ["+18005551212"]}
    assert twilio_signature("https://mycompany.com/myapp.php?foo=1&bar=2", params,
                            "12345") == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


@pytest.fixture
def twilio(provider_config):
    return provider_config("twilio-main", "sms", "twilio",
                           {"account_sid": "AC123", "auth_token": TWILIO_TOKEN, "from": "+1555"})


def post_twilio(client, params: dict, *, token: str = TWILIO_TOKEN, key: str = "twilio-main",
                url: str | None = None, signature: str | None = None, **headers):
    path = f"/webhooks/twilio/{key}/status/"
    signed_url = url or f"http://testserver{path}"
    if signature is None:
        signature = twilio_signature(signed_url, {k: [v] for k, v in params.items()}, token)
    return client.post(path, data=urlencode(params),
                       content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature, **headers)


def twilio_callback(sid: str, status: str, **extra) -> dict:
    return {"AccountSid": "AC123", "ApiVersion": "2010-04-01", "From": "+15550001111",
            "To": "+15550002222", "MessageSid": sid, "SmsSid": sid, "SmsStatus": status,
            "MessageStatus": status, **extra}


def test_twilio_signed_delivered_callback_marks_the_message_delivered(client, twilio,
                                                                     sent_message):
    message = sent_message("twilio-main", "SM0001", channel="sms")
    response = post_twilio(client, twilio_callback("SM0001", "delivered"),
                           HTTP_I_TWILIO_IDEMPOTENCY_TOKEN="idem-0001")
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered" and message.delivered_at is not None
    event = MessageEvent.objects.get(message=message)
    # Keyed on what Twilio signed (the idempotency header is not signed).
    assert (event.provider_kind, event.event_id, event.raw["MessageStatus"]) == (
        "twilio", "SM0001:delivered:", "delivered")


def test_twilio_undelivered_callback_fails_the_message_with_twilios_error_code(
        client, twilio, sent_message):
    message = sent_message("twilio-main", "SM0002", channel="sms")
    post_twilio(client, twilio_callback("SM0002", "undelivered", ErrorCode="30003"))
    message.refresh_from_db()
    assert (message.status, message.error) == ("failed", "undelivered (Twilio error 30003)")


def test_twilio_callback_signed_for_the_public_url_is_accepted_behind_a_proxy(
        client, twilio, settings, sent_message):
    settings.PUBLIC_URL = "https://notify.example.test"
    message = sent_message("twilio-main", "SM0003", channel="sms")
    response = post_twilio(client, twilio_callback("SM0003", "sent"),
                           url="https://notify.example.test/webhooks/twilio/twilio-main/status/")
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "sent" and message.events.count() == 1


@pytest.mark.parametrize("how", ["wrong token", "tampered body", "no signature"])
def test_twilio_callback_with_a_bad_signature_is_refused_with_403(client, twilio, sent_message,
                                                                  how):
    message = sent_message("twilio-main", "SM0004", channel="sms")
    params = twilio_callback("SM0004", "delivered")
    if how == "wrong token":
        response = post_twilio(client, params, token="someone-elses-token")
    elif how == "tampered body":
        good = twilio_signature("http://testserver/webhooks/twilio/twilio-main/status/",
                                {k: [v] for k, v in params.items()}, TWILIO_TOKEN)
        response = post_twilio(client, {**params, "MessageStatus": "failed"}, signature=good)
    else:
        response = post_twilio(client, params, signature="")
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden",
                               "detail": "Missing or invalid X-Twilio-Signature."}
    message.refresh_from_db()
    assert message.status == "sent"
    assert not MessageEvent.objects.exists()


def test_twilio_callback_is_checked_with_the_token_of_the_provider_it_names(
        client, twilio, provider_config, sent_message):
    provider_config("twilio-other", "sms", "twilio", {"account_sid": "AC9",
                                                      "auth_token": "other-token"})
    sent_message("twilio-main", "SM0005", channel="sms")
    # Signed with twilio-main's token but posted to twilio-other's URL.
    response = post_twilio(client, twilio_callback("SM0005", "delivered"), key="twilio-other",
                           url="http://testserver/webhooks/twilio/twilio-other/status/")
    assert response.status_code == 403


def test_twilio_callback_for_an_unknown_message_is_answered_204_and_ignored(client, twilio):
    response = post_twilio(client, twilio_callback("SM-not-ours", "delivered"))
    assert response.status_code == 204
    assert not MessageEvent.objects.exists()


def test_twilio_callback_for_an_unknown_provider_is_404(client):
    response = post_twilio(client, twilio_callback("SM0006", "delivered"), key="nope")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No Twilio provider 'nope'."}


# --- Vonage -------------------------------------------------------------------------------------

@pytest.fixture
def vonage(provider_config):
    def make(method="md5hash", key="vonage-main", secret=VONAGE_SECRET):
        return provider_config(key, "sms", "vonage",
                               {"api_key": "abc123", "api_secret": "shh",
                                "signature_secret": secret, "signature_method": method})
    return make


def vonage_receipt(message_id: str, status: str, **extra) -> dict:
    return {"msisdn": "447700900000", "to": "Clarion", "network-code": "23410",
            "messageId": message_id, "price": "0.03330000", "status": status, "scts": "2611220310",
            "err-code": "0", "api-key": "abc123", "message-timestamp": "2026-11-22 03:10:00",
            "timestamp": str(int(time.time())), "nonce": "3f5c1a2e-7a6b-4f5e-9d1c-0b1e2f3a4b5c",
            **extra}


def signed(params: dict, method="md5hash", secret=VONAGE_SECRET) -> dict:
    return {**params, "sig": vonage_signature(params, secret, method)}


def test_vonage_md5hash_signed_receipt_by_get_marks_the_message_delivered(client, vonage,
                                                                         sent_message):
    vonage()
    message = sent_message("vonage-main", "0A0000000123ABCD1", channel="sms")
    response = client.get("/webhooks/vonage/vonage-main/receipt/",
                          signed(vonage_receipt("0A0000000123ABCD1", "delivered")))
    assert response.status_code == 204
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (
        "delivered", datetime(2026, 11, 22, 3, 10, tzinfo=UTC))
    assert "sig" not in MessageEvent.objects.get(message=message).raw


def test_vonage_sha256_hmac_signed_json_receipt_fails_the_message(client, vonage, sent_message):
    vonage(method="sha256")
    message = sent_message("vonage-main", "0A0000000123ABCD2", channel="sms")
    body = signed(vonage_receipt("0A0000000123ABCD2", "failed", **{"err-code": "6"}),
                  method="sha256")
    response = client.post("/webhooks/vonage/vonage-main/receipt/", data=json.dumps(body),
                           content_type="application/json")
    assert response.status_code == 204
    message.refresh_from_db()
    assert (message.status, message.error) == ("failed", "failed (err-code 6)")


def test_vonage_form_receipt_with_values_holding_ampersands_verifies(client, vonage,
                                                                    sent_message):
    vonage(method="sha1")
    message = sent_message("vonage-main", "0A3", channel="sms")
    params = signed(vonage_receipt("0A3", "delivered", to="A&B=C"), method="sha1")
    response = client.post("/webhooks/vonage/vonage-main/receipt/", data=urlencode(params),
                           content_type="application/x-www-form-urlencoded")
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("how", ["wrong secret", "tampered", "no sig", "stale"])
def test_vonage_receipt_with_a_bad_or_stale_signature_is_refused_with_403(
        client, vonage, sent_message, how):
    vonage()
    message = sent_message("vonage-main", "0A4", channel="sms")
    params = vonage_receipt("0A4", "delivered")
    if how == "wrong secret":
        params = signed(params, secret="guess")
    elif how == "tampered":
        params = {**signed(params), "status": "failed"}
    elif how == "stale":
        params = signed({**params, "timestamp": str(int(time.time()) - 3600)})
    response = client.get("/webhooks/vonage/vonage-main/receipt/", params)
    assert response.status_code == 403
    assert response.json()["detail"] == ("The signature timestamp is too old." if how == "stale"
                                         else "Missing or invalid sig.")
    message.refresh_from_db()
    assert message.status == "sent"


def test_vonage_receipts_are_refused_when_the_provider_has_no_signature_secret(
        client, vonage, sent_message):
    vonage(secret="")
    response = client.get("/webhooks/vonage/vonage-main/receipt/",
                          vonage_receipt("0A5", "delivered"))
    assert response.status_code == 403
    assert response.json()["detail"] == ("This provider has no signature secret: receipts "
                                         "cannot be verified.")


def vonage_jwt(body: bytes, secret=VONAGE_SECRET, **claims) -> str:
    payload = {"iat": int(time.time()), "jti": "c5a4c6a2-3a2c-4b7e-9a1f-2d5e6f7a8b9c",
               "iss": "Vonage", "payload_hash": hashlib.sha256(body).hexdigest(),
               "api_key": "abc123", "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
               **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def messages_status(uuid: str, status: str) -> bytes:
    return json.dumps({"message_uuid": uuid, "to": "447700900000", "from": "Clarion",
                       "timestamp": "2026-11-22T03:12:00Z", "status": status,
                       "channel": "sms"}).encode()


def test_vonage_messages_api_status_with_a_valid_jwt_marks_the_message_read(client, vonage,
                                                                           sent_message):
    vonage()
    message = sent_message("vonage-main", "aaaaaaaa-0000-4000-8000-000000000001", channel="sms")
    body = messages_status(message.provider_message_id, "read")
    response = client.post("/webhooks/vonage/vonage-main/status/", data=body,
                           content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {vonage_jwt(body)}")
    assert response.status_code == 204
    message.refresh_from_db()
    assert (message.status, message.opened_at) == (
        "opened", datetime(2026, 11, 22, 3, 12, tzinfo=UTC))


@pytest.mark.parametrize("how", ["wrong secret", "other body", "no token", "stale"])
def test_vonage_messages_api_status_with_a_bad_jwt_is_refused_with_403(client, vonage,
                                                                       sent_message, how):
    vonage()
    message = sent_message("vonage-main", "aaaaaaaa-0000-4000-8000-000000000002", channel="sms")
    body = messages_status(message.provider_message_id, "delivered")
    token = {"wrong secret": lambda: vonage_jwt(body, secret="a-guessed-secret-0123456789abcdef"),
             "other body": lambda: vonage_jwt(b"{}"),
             "no token": lambda: "",
             "stale": lambda: vonage_jwt(body, iat=int(time.time()) - 3600)}[how]()
    response = client.post("/webhooks/vonage/vonage-main/status/", data=body,
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent"
    assert Message.objects.filter(events__isnull=False).count() == 0


def test_the_admin_message_page_shows_status_events_with_their_payload(admin_client, twilio,
                                                                       sent_message):
    message = sent_message("twilio-main", "SM0007", channel="sms")
    post_twilio(client=admin_client, params=twilio_callback("SM0007", "delivered"))
    page = admin_client.get(f"/admin/notifications/message/{message.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "status events" in html.lower()
    assert "Delivered" in html and "&quot;MessageSid&quot;: &quot;SM0007&quot;" in html


def test_a_vonage_provider_takes_a_signature_secret_and_refuses_an_unknown_method(api):
    credentials = {"api_key": "abc123", "api_secret": "shh", "from": "Clarion",
                   "signature_secret": VONAGE_SECRET, "signature_method": "sha256"}
    body = {"channel": "sms", "kind": "vonage", "credentials": credentials}
    assert api.put("/api/v1/providers/vonage-main", body).status_code == 201
    stored = ProviderConfig.objects.get(key="vonage-main").credentials
    assert (stored["signature_secret"], stored["signature_method"]) == (VONAGE_SECRET, "sha256")

    body["credentials"] = {**credentials, "signature_method": "sha3"}
    response = api.put("/api/v1/providers/vonage-other", body)
    assert response.status_code == 400
    assert response.json()["fields"] == {"credentials.signature_method": [
        "Expected one of: md5hash, md5, sha1, sha256, sha512."]}


def test_an_email_sent_through_postmark_is_tracked_by_postmarks_webhooks(
        client, anymail, postmark_provider, queue_message):
    postmark_id = "b7bc2f4a-e38e-4336-af7d-e6c392c2f817"
    server = postmark_provider(lambda request: Reply(200, json={
        "To": "ada@example.com", "SubmittedAt": "2026-11-22T03:00:00Z",
        "MessageID": postmark_id, "ErrorCode": 0, "Message": "OK"}))
    message = queue_message("email", {"subject": "Hi", "html": "<p>Hi</p>"},
                            recipient={"id": "ada", "email": "ada@example.com"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", postmark_id)
    # Postmark echoes the metadata Clarion sent with the email.
    sent_metadata = server.requests[0].json()["Metadata"]
    assert sent_metadata == {"clarion_message_id": str(message.id)}
    for payload in (postmark_delivery(postmark_id, Metadata=sent_metadata),
                    {"RecordType": "Open", "MessageID": postmark_id, "FirstOpen": True,
                     "Recipient": "ada@example.com", "ReceivedAt": "2026-11-22T03:15:00Z",
                     "Metadata": sent_metadata}):
        assert client.post(POSTMARK_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET)).status_code == 200
    message.refresh_from_db()
    assert message.status == "opened"
    assert list(message.events.values_list("kind", flat=True)) == ["delivered", "opened"]


# --- Events that arrive while the message is still being sent ---------------------------------

def claimed(message: Message) -> Message:
    """The message as a delivery worker holds it between its claim and its write of `sent`."""
    (message,) = claim_batch(now=timezone.now(), limit=1, first=str(message.id))
    assert Message.objects.get(pk=message.pk).status == "sending"
    return message


def test_an_open_posted_while_the_email_is_sending_survives_the_senders_write_of_sent(
        client, anymail, postmark_provider, queue_message):
    postmark_id = "0f1e2d3c-e38e-4336-af7d-e6c392c2f817"
    postmark_provider(lambda request: Reply(200, json={
        "To": "ada@example.com", "SubmittedAt": "2026-11-22T03:00:00Z",
        "MessageID": postmark_id, "ErrorCode": 0, "Message": "OK"}))
    message = claimed(queue_message("email", {"subject": "Hi", "html": "<p>Hi</p>"},
                                    recipient={"id": "ada", "email": "ada@example.com"}))
    metadata = {"clarion_message_id": str(message.id)}
    for payload in (postmark_delivery(postmark_id, Metadata=metadata),
                    {"RecordType": "Open", "MessageID": postmark_id, "FirstOpen": True,
                     "Recipient": "ada@example.com", "ReceivedAt": "2026-11-22T03:15:00Z",
                     "Metadata": metadata}):
        assert client.post(POSTMARK_URL, data=json.dumps(payload),
                           content_type="application/json",
                           HTTP_AUTHORIZATION=basic_auth(WEBHOOK_SECRET)).status_code == 200
    assert Message.objects.get(pk=message.pk).status == "sending"  # recorded, not applied

    deliver_claimed([message], now=timezone.now())
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("opened", postmark_id)
    assert message.sent_at is not None
    assert message.delivered_at == datetime(2026, 11, 22, 3, 10, tzinfo=UTC)
    assert message.opened_at == datetime(2026, 11, 22, 3, 15, tzinfo=UTC)
    assert message.run.step_logs.filter(event="sent").count() == 1


def test_a_vonage_receipt_naming_the_client_ref_while_sending_leaves_the_sms_delivered(
        client, vonage, provider_server, queue_message, monkeypatch):
    config = vonage()
    server = provider_server(respond=lambda request: Reply(200, json={
        "message-count": "1", "messages": [{"to": "15550002222", "message-id": "0B00000001",
                                            "status": "0"}]}))
    config.credentials = {**config.credentials, "from": "Clarion"}
    config.options = {"base_url": server.url}
    config.save()
    message = claimed(queue_message("sms", {"text": "Your code is 1234"}))
    perform = calls._perform_one  # a lone call, made after its attempt row is written

    def receipt_first(call, **options):
        # The carrier's receipt beats Vonage's own answer (the attempt row is written); it
        # carries our client-ref.
        response = client.get("/webhooks/vonage/vonage-main/receipt/", signed(vonage_receipt(
            "0B00000001", "delivered", **{"client-ref": str(message.id)})))
        assert response.status_code == 204
        assert Message.objects.get(pk=message.pk).status == "sending"
        return perform(call, **options)

    monkeypatch.setattr(calls, "_perform_one", receipt_first)
    deliver_claimed([message], now=timezone.now())
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("delivered", "0B00000001")
    assert server.requests[0].form()["client-ref"] == str(message.id)


def test_a_message_sent_with_no_early_events_stays_sent(client, twilio, provider_server,
                                                        queue_message):
    server = provider_server(respond=lambda request: Reply(201, json={"sid": "SM77"}))
    twilio.options = {"base_url": server.url}
    twilio.save()
    message = claimed(queue_message("sms", {"text": "Hello"}))
    deliver_claimed([message], now=timezone.now())
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == ("sent", "SM77")
