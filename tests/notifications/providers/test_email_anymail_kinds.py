"""The anymail ESP kinds declared on the anymail provider base: every backend anymail ships is a
kind that builds its backend from its credentials and has its tracking webhook mounted, and a
representative set (Mailjet: HTTP Basic; Mandrill: the key in the JSON body; Brevo: an `api-key`
header) is sent against local servers that check each request the way the ESP documents it."""

import base64
import json
from pathlib import Path

import anymail.backends
import pytest
from django.core.mail import get_connection
from django.urls import resolve

from notifications.delivery import deliver
from notifications.models import Message
from notifications.providers import registry
from notifications.providers.base import ConfigurationError
from notifications.providers.email import AnymailProvider

from .servers import Reply

RECIPIENT = {"id": "u1", "name": "Ada", "email": "ada@example.com"}
FIELDS = {"subject": "Hello {{ recipient.name }}", "html": "<p>Hi {{ recipient.name }}</p>"}
FROM = "Acme <hello@acme.test>"

# Backends that are not ESPs (console, test), shared code, or an old name of another (Brevo).
NOT_ESPS = {"__init__", "base", "base_requests", "console", "test", "sendinblue"}


def anymail_kinds() -> dict[str, type[AnymailProvider]]:
    return {kind: cls for kind, cls in registry.kinds("email").items()
            if issubclass(cls, AnymailProvider)}


def test_every_esp_backend_anymail_ships_is_a_selectable_kind():
    shipped = {path.stem for path in Path(anymail.backends.__file__).parent.glob("*.py")}
    backends = {cls.backend.split(".")[2] for cls in anymail_kinds().values()}
    assert shipped - NOT_ESPS - backends == set()
    assert {"brevo", "mailjet", "mandrill", "resend", "sparkpost", "mailersend", "postal",
            "unisender_go", "scaleway"} <= set(anymail_kinds())


@pytest.mark.filterwarnings("ignore:django-anymail has dropped official support")
@pytest.mark.parametrize("kind", sorted(anymail_kinds()))
def test_every_anymail_kind_builds_its_backend_from_its_credentials(kind, settings):
    settings.ANYMAIL = {}  # nothing from the environment: the credentials alone must do
    cls = registry.get(kind)
    credentials = {name: f"{name}-value" for name in cls.credential_fields}
    if kind == "amazon_ses":
        credentials["region"] = "eu-west-1"
    options = {name: "https://esp.example.com/api/" for name in cls.required_options}
    cls.validate_config(credentials, options)
    provider = cls(key=kind, credentials=credentials, options=options)
    connection = get_connection(cls.backend, fail_silently=False, **provider.connection_kwargs())
    assert type(connection).__module__ == cls.backend.rsplit(".", 1)[0]
    secret = next(value for name, value in credentials.items()
                  if name not in cls.public_credential_fields)
    assert secret in provider.secrets


def test_a_missing_credential_is_refused_naming_the_field():
    with pytest.raises(ConfigurationError) as refused:
        registry.get("mailjet").validate_config({"api_key": "k"}, {})
    assert list(refused.value.fields) == ["credentials.secret_key"]


def test_a_self_hosted_esp_needs_its_api_address():
    with pytest.raises(ConfigurationError) as refused:
        registry.get("postal").validate_config({"api_key": "k"}, {})
    assert list(refused.value.fields) == ["options.base_url"]
    registry.get("postal").validate_config({"api_key": "k"},
                                           {"base_url": "https://postal.example.com"})


@pytest.mark.parametrize("kind", sorted(k for k, c in anymail_kinds().items() if c.tracking_esp))
def test_every_declared_tracking_webhook_is_mounted(kind):
    cls = registry.get(kind)
    match = resolve(cls.tracking_path())
    assert match.url_name == f"{cls.tracking_esp}_tracking_webhook"


def test_a_tracking_webhook_whose_signing_setting_is_missing_refuses_instead_of_crashing(
        client, settings):
    settings.ANYMAIL = {}
    response = client.post("/webhooks/anymail/postal/tracking/", data="{}",
                           content_type="application/json")
    assert response.status_code == 403
    assert "POSTAL_WEBHOOK_KEY" in response.json()["detail"]


# --- Mailjet: POST /v3.1/send, HTTP Basic api_key:secret_key ------------------------------------

def mailjet_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == ("POST", "/v3.1/send") else [
        f"{request.method} {request.path}"]
    expected = "Basic " + base64.b64encode(b"mj-key:mj-secret").decode()
    if request.headers.get("authorization") != expected:
        problems.append("auth")
    body = request.json()
    # Mailjet's v3.1 send merges "Globals" into every entry of "Messages".
    [message] = [{**body.get("Globals", {}), **m} for m in body["Messages"]]
    if message.get("From", {}).get("Email") != "hello@acme.test":
        problems.append("From")
    if [to.get("Email") for to in message.get("To", [])] != ["ada@example.com"]:
        problems.append("To")
    problems += [f"missing {f}" for f in ("Subject", "HTMLPart") if not message.get(f)]
    return problems


def test_mailjet_sends_with_basic_auth_and_keeps_its_message_id(provider_server,
                                                                provider_config, queue_message):
    server = provider_server(mailjet_check, lambda r: Reply(200, json={"Messages": [{
        "Status": "success", "CustomID": "", "Errors": [],
        "To": [{"Email": "ada@example.com", "MessageUUID": "1ab23cd4", "MessageID": 288230376,
                "MessageHref": "https://api.mailjet.com/v3/REST/message/288230376"}]}]}))
    provider_config("mailjet", "email", "mailjet",
                    {"api_key": "mj-key", "secret_key": "mj-secret", "from_email": FROM},
                    options={"base_url": f"{server.url}/v3.1"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT, "288230376")
    assert "mj-secret" not in json.dumps(message.delivery_attempts.get().request)


# --- Mandrill: POST /api/1.0/messages/send.json, the key in the body ----------------------------

def mandrill_check(request) -> list[str]:
    problems = [] if request.path == "/api/1.0/messages/send.json" else [f"path {request.path}"]
    body = request.json()
    if body.get("key") != "md-key":
        problems.append("key")
    message = body.get("message", {})
    if [to.get("email") for to in message.get("to", [])] != ["ada@example.com"]:
        problems.append("to")
    problems += [f"missing {f}" for f in ("from_email", "subject", "html") if not message.get(f)]
    return problems


def test_mandrill_sends_with_the_key_in_the_body(provider_server, provider_config,
                                                 queue_message):
    server = provider_server(mandrill_check, lambda r: Reply(200, json=[{
        "email": "ada@example.com", "status": "sent", "_id": "abc123abc123abc123abc123",
        "reject_reason": None}]))
    provider_config("mandrill", "email", "mandrill", {"api_key": "md-key", "from_email": FROM},
                    options={"base_url": f"{server.url}/api/1.0"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                             "abc123abc123abc123abc123")


def test_mandrill_rejecting_the_recipient_fails_the_message_for_good(
        provider_server, provider_config, queue_message):
    server = provider_server(mandrill_check, lambda r: Reply(200, json=[{
        "email": "ada@example.com", "status": "rejected", "_id": "rej1",
        "reject_reason": "hard-bounce"}]))
    provider_config("mandrill", "email", "mandrill", {"api_key": "md-key", "from_email": FROM},
                    options={"base_url": f"{server.url}/api/1.0"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.delivery_attempts.get().outcome == "permanent_error"


# --- Brevo: POST /v3/smtp/email, an api-key header ----------------------------------------------

def brevo_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == ("POST", "/v3/smtp/email") else [
        f"{request.method} {request.path}"]
    if request.headers.get("api-key") != "xkeysib-brevo":
        problems.append("api-key")
    body = request.json()
    if body.get("sender", {}).get("email") != "hello@acme.test":
        problems.append("sender")
    if [to.get("email") for to in body.get("to", [])] != ["ada@example.com"]:
        problems.append("to")
    problems += [f"missing {f}" for f in ("subject", "htmlContent") if not body.get(f)]
    return problems


def test_brevo_sends_with_its_api_key_header(provider_server, provider_config, queue_message):
    server = provider_server(brevo_check, lambda r: Reply(201, json={
        "messageId": "<202611301.1@smtp-relay.mailin.fr>"}))
    provider_config("brevo", "email", "brevo", {"api_key": "xkeysib-brevo", "from_email": FROM},
                    options={"base_url": f"{server.url}/v3"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (
        Message.Status.SENT, "<202611301.1@smtp-relay.mailin.fr>")


def test_brevo_refusing_the_request_is_permanent(provider_server, provider_config,
                                                 queue_message):
    server = provider_server(brevo_check, lambda r: Reply(400, json={
        "code": "invalid_parameter", "message": "email is not valid in to"}))
    provider_config("brevo", "email", "brevo", {"api_key": "xkeysib-brevo", "from_email": FROM},
                    options={"base_url": f"{server.url}/v3"})
    message = queue_message("email", FIELDS, recipient=RECIPIENT)
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.status_code) == ("permanent_error", 400)
