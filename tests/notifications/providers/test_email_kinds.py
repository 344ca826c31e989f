"""Email kinds chosen by ProviderConfig: SMTP on a real aiosmtpd server, and SendGrid, Mailgun,
Postmark and Amazon SES (through django-anymail) against local servers that check each request
the way the ESP documents it."""

import base64
import json
import uuid

import pytest

from notifications.delivery import deliver
from notifications.models import Message
from notifications.services import tenant_upsert

from .servers import Reply

RECIPIENT = {"id": "u1", "name": "Ada", "email": "ada@example.com"}
FIELDS = {"subject": "Hello {{ recipient.name }}", "html": "<p>Hi {{ recipient.name }}</p>"}


@pytest.fixture
def acme_sender(db):
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_name="Acme",
                              sender_email="hello@acme.test")
    return tenant


def test_smtp_provider_config_sends_through_its_own_server(smtp_server, provider_config,
                                                           queue_message, settings):
    host, port, inbox = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # not used
    provider_config("smtp-relay", "email", "smtp",
                    {"host": host, "port": port, "from_email": "Relay <relay@example.net>"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    [mail] = inbox.wait_for(1)
    assert mail["From"] == "Relay <relay@example.net>"
    assert mail["To"] == "Ada <ada@example.com>"
    assert mail["Subject"] == "Hello Ada"
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "smtp-relay")
    assert message.provider_message_id == mail["Message-ID"]


def test_smtp_email_is_one_multipart_alternative_each_with_a_boundary_of_its_own(
        smtp_server, provider_config, queue_message):
    """Its multipart boundary is chosen when the email is built (providers.email.Email), not by
    the standard library's generator: on the wire each email is one multipart/alternative whose
    boundary delimits its text and HTML parts (RFC 2046 section 5.1.1), and no two emails share
    one."""
    host, port, inbox = smtp_server
    provider_config("smtp-relay", "email", "smtp", {"host": host, "port": port})
    fields = {**FIELDS, "text": "Hi {{ recipient.name }}\n--\n-- not a boundary --"}
    messages = [queue_message("email", fields, recipient={**RECIPIENT, "id": f"u{i}"})
                for i in range(2)]
    for message in messages:
        deliver(str(message.id))
    mails = inbox.wait_for(2)
    boundaries = set()
    for mail, envelope in zip(mails, inbox.envelopes, strict=True):
        assert mail.get_content_type() == "multipart/alternative"
        text, html = mail.iter_parts()
        assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
        assert text.get_content().replace("\r\n", "\n").startswith(
            "Hi Ada\n--\n-- not a boundary --")
        assert "<p>Hi Ada</p>" in html.get_content()
        boundary = mail.get_boundary().encode()
        lines = envelope.content.split(b"\r\n")
        assert lines.count(b"--" + boundary) == 2 and lines.count(b"--" + boundary + b"--") == 1
        boundaries.add(boundary)
    assert len(boundaries) == 2


def test_tenant_sender_wins_over_the_providers_from_email(smtp_server, provider_config,
                                                         queue_message, acme_sender):
    host, port, inbox = smtp_server
    provider_config("smtp-relay", "email", "smtp",
                    {"host": host, "port": port, "from_email": "relay@example.net"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT, tenant=acme_sender)
    deliver(str(message.id))
    assert inbox.wait_for(1)[0]["From"] == "Acme <hello@acme.test>"


SENDGRID_KEY = "SG.secret-sendgrid-key"


def sendgrid_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", "/v3/mail/send"):
        problems.append(f"{request.method} {request.path}")
    if request.headers.get("authorization") != f"Bearer {SENDGRID_KEY}":
        problems.append("auth")
    body = request.json()
    if not body.get("personalizations") or not body["personalizations"][0].get("to"):
        problems.append("personalizations.to")
    for name in ("from", "subject", "content"):
        if not body.get(name):
            problems.append(f"missing {name}")
    return problems


@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support for SendGrid")
def test_sendgrid_sends_from_the_tenants_sender_and_never_records_the_api_key(
        provider_server, provider_config, queue_message, acme_sender):
    server = provider_server(sendgrid_check, lambda r: Reply(202, headers={
        "X-Message-Id": "sg-" + uuid.uuid4().hex}))
    provider_config("sendgrid", "email", "sendgrid", {"api_key": SENDGRID_KEY},
                    options={"base_url": f"{server.url}/v3/"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT, tenant=acme_sender)
    deliver(str(message.id))
    assert server.problems == []
    body = server.requests[0].json()
    assert body["from"] == {"email": "hello@acme.test", "name": "Acme"}
    assert body["personalizations"][0]["to"] == [{"email": "ada@example.com", "name": "Ada"}]
    assert body["subject"] == "Hello Ada"
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "sendgrid")
    assert message.provider_message_id  # anymail's generated id, sent as a custom arg
    assert SENDGRID_KEY not in json.dumps(message.delivery_attempts.get().request)


MAILGUN_KEY = "key-mailgun-secret"


def mailgun_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", "/v3/acme.test/messages"):
        problems.append(f"{request.method} {request.path}")
    expected = "Basic " + base64.b64encode(f"api:{MAILGUN_KEY}".encode()).decode()
    if request.headers.get("authorization") != expected:
        problems.append("auth")
    # Mailgun takes form fields, url-encoded or (with attachments) multipart.
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        problems.append("content-type")
    form = request.form()
    problems += [f"missing {f}" for f in ("from", "to", "subject", "html") if not form.get(f)]
    return problems


def test_mailgun_sends_from_the_tenants_sender_and_its_message_id_is_kept(
        provider_server, provider_config, queue_message, acme_sender):
    server = provider_server(mailgun_check, lambda r: Reply(200, json={
        "id": "<20261122.1@acme.test>", "message": "Queued. Thank you."}))
    provider_config("mailgun", "email", "mailgun", {"api_key": MAILGUN_KEY},
                    options={"base_url": f"{server.url}/v3"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT, tenant=acme_sender)
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].form()["from"] == "Acme <hello@acme.test>"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                             "<20261122.1@acme.test>")


POSTMARK_TOKEN = "pm-server-token"


def postmark_check(request) -> list[str]:
    problems = [] if request.path == "/email" else [f"path {request.path}"]
    if request.headers.get("x-postmark-server-token") != POSTMARK_TOKEN:
        problems.append("X-Postmark-Server-Token")
    body = request.json()
    problems += [f"missing {f}" for f in ("From", "To", "Subject") if not body.get(f)]
    return problems


def test_postmark_server_error_is_transient_then_fails_over_to_smtp(
        postmark_provider, provider_config, queue_message, smtp_server, clarion_settings):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    server = postmark_provider(lambda r: Reply(500, json={
        "ErrorCode": 0, "Message": "Internal error"}), priority=1)
    host, port, inbox = smtp_server
    provider_config("smtp", "email", "smtp", {"host": host, "port": port}, priority=2)
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    inbox.wait_for(1)
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "smtp")
    assert list(message.delivery_attempts.values_list("provider", "outcome", "status_code")) == [
        ("postmark", "transient_error", 500), ("smtp", "succeeded", None)]


def ses_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", "/v2/email/outbound-emails"):
        problems.append(f"{request.method} {request.path}")
    auth = request.headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") or \
            "/eu-west-1/ses/aws4_request" not in auth:
        problems.append(f"SigV4 auth: {auth[:80]}")
    body = request.json()
    if not body.get("Content"):
        problems.append("missing Content")
    return problems


def test_amazon_ses_gets_a_signed_request_and_its_message_id_is_kept(
        provider_server, provider_config, queue_message, acme_sender):
    server = provider_server(ses_check, lambda r: Reply(200, json={
        "MessageId": "0102-ses-message-id"}))
    provider_config("ses", "email", "amazon_ses",
                    {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "ses-secret-key",
                     "region": "eu-west-1"}, options={"base_url": server.url})
    message = queue_message("email", FIELDS, recipient=RECIPIENT, tenant=acme_sender)
    deliver(str(message.id))
    assert server.problems == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                             "0102-ses-message-id")
