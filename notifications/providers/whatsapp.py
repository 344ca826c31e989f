"""WhatsApp: Meta's WhatsApp Business Cloud API (`whatsapp_cloud`) and Twilio's Messages API
with `whatsapp:` addresses (`twilio_whatsapp`), and their status webhooks.

A WhatsApp step sends an approved template when its config names one — `{"template":
"order_update", "language": "en_US"}` for Meta, `{"content_sid": "HX…"}` (the same template
registered as a Twilio Content template) for Twilio; a step that may fail over between the two
kinds names both. Each kind sends the template it can name, with the
template field `parameters` (Liquid rendering to a JSON array of strings: the template's body
parameters, in order); otherwise it sends the `text` field as free text, which WhatsApp only
delivers inside the 24-hour customer-service window (Meta answers error 131047 outside it: a
permanent error). Delivery and read statuses move the Message forward; a read is an `opened`
event (engagement).

Meta: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages — POST
https://graph.facebook.com/v21.0/{phone-number-id}/messages, `Authorization: Bearer
<access token>`; errors are `{"error": {"code", "message", "error_data"}}`
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes). Webhooks are
signed with `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed by the app
secret>`, and verified once with a GET echoing `hub.challenge` when `hub.verify_token` matches.
"""

import contextlib
import hashlib
import hmac
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx
from django.http import HttpResponse

from .base import (
    ConfigurationError,
    HTTPProvider,
    HTTPRequest,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    json_or_empty,
    parse_retry_after,
)
from .callbacks import (
    CallbackInvalid,
    CallbackRefused,
    Kind,
    StatusCallbackView,
    StatusEvent,
    error_response,
    register_callback,
)
from .phone import is_e164
from .registry import register
from .sms import url_with_message_id
from .twilio import TwilioMessagesAPI, TwilioStatusCallback

# Meta error codes worth retrying: 4 / 80007 / 130429 / 131048 / 131056 (rate limits), 1 / 2 /
# 131000 / 131016 (temporary or unknown errors, service unavailable). The rest — 190 (expired
# token), 100 (invalid parameter), 131026 (undeliverable), 131047 (outside the 24-hour window),
# 132000/132001 (template parameters / template not found), 133010 (number not registered)… —
# fail the same way again.
META_TRANSIENT = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131048, 131056})


CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")


def template_parameters(message: OutboundMessage) -> list[str]:
    """The rendered `parameters` field: a JSON array of strings (numbers are written as text);
    PermanentError for anything else."""
    raw = message.content.get("parameters")
    if raw in (None, ""):
        return []
    try:
        values = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise PermanentError(f"The parameters template did not render to JSON: {exc}") from exc
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        raise PermanentError("The parameters template must render to a JSON array of strings.")
    return [str(v) for v in values]


def is_content_sid(value: str) -> bool:
    """Whether `value` looks like a Twilio Content SID: "HX" and 32 hex digits."""
    return bool(CONTENT_SID.fullmatch(value))


class WhatsAppProvider(HTTPProvider):
    """The WhatsApp channel's base: the recipient's phone (E.164) and the step's template."""

    channel = "whatsapp"

    def recipient(self, message: OutboundMessage) -> str:
        if not is_e164(message.to):
            raise PermanentError(f"{message.to!r} is not an E.164 phone number.")
        return message.to

    @staticmethod
    def template_of(message: OutboundMessage) -> tuple[str, str]:
        """(Meta template name, language) from the step's config; ("", "") for free text.
        Raises PermanentError when the step names only a Twilio Content SID."""
        config = message.step_config or {}
        name = str(config.get("template") or "")
        if is_content_sid(name):
            raise PermanentError(f"{name!r} is a Twilio Content SID: Meta's Cloud API needs the "
                                 'template\'s name in the step\'s "template".')
        if not name and config.get("content_sid"):
            raise PermanentError('The step names only a Twilio "content_sid": Meta\'s Cloud API '
                                 'needs the template\'s name in "template" too.')
        return name, str(config.get("language") or "")

    @staticmethod
    def content_sid_of(message: OutboundMessage) -> str:
        """Twilio's Content SID (`HX…`) from the step's config: `content_sid`, or a `template`
        that is one; "" for free text. Raises PermanentError when the step names only a Meta
        template (Twilio sends templates by Content SID alone)."""
        config = message.step_config or {}
        sid = str(config.get("content_sid") or "")
        name = str(config.get("template") or "")
        if not sid and is_content_sid(name):
            sid = name
        if not sid and name:
            raise PermanentError(f"Twilio sends WhatsApp templates by Content SID: the step "
                                 f'names only the Meta template {name!r}; add "content_sid".')
        return sid

    @staticmethod
    def text_of(message: OutboundMessage) -> str:
        text = str(message.content.get("text") or "")
        if not text.strip():
            raise PermanentError("No template in the step's config and no text: a WhatsApp "
                                 "message needs one of them.")
        return text


@register
class WhatsAppCloud(WhatsAppProvider):
    """Meta's Cloud API: POST /v21.0/{phone_number_id}/messages, bearer `access_token`. Answers
    200 with `messages[0].id` (a `wamid.…`)."""

    kind, label = "whatsapp_cloud", "WhatsApp (Meta Cloud API)"
    credential_fields = ("phone_number_id", "access_token", "app_secret")
    optional_credential_fields = ("verify_token",)
    public_credential_fields = WhatsAppProvider.public_credential_fields | {"phone_number_id"}
    default_base_url = "https://graph.facebook.com/v21.0"

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        to = self.recipient(message).lstrip("+")
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                                "to": to}
        name, language = self.template_of(message)
        if name:
            template: dict[str, Any] = {"name": name, "language": {"code": language or "en"}}
            parameters = template_parameters(message)
            if parameters:
                template["components"] = [{"type": "body", "parameters": [
                    {"type": "text", "text": value} for value in parameters]}]
            body.update(type="template", template=template)
        else:
            body.update(type="text", text={"preview_url": False, "body": self.text_of(message)})
        return HTTPRequest(
            "POST", f"{self.base_url}/{self.credentials['phone_number_id']}/messages", json=body,
            headers={"Authorization": f"Bearer {self.credentials['access_token']}"})

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["messages"][0]["id"]))

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if not response.is_success:
            error = json_or_empty(response).get("error") or {}
            code = error.get("code")
            if code is not None:
                text = f"WhatsApp {code}: {error.get('message', '')}"
                details = (error.get("error_data") or {}).get("details")
                if details:
                    text += f" ({details})"
                if code in META_TRANSIENT or response.status_code >= 500:
                    raise TransientError(text, status_code=response.status_code,
                                         retry_after=parse_retry_after(
                                             response.headers.get("Retry-After")))
                raise PermanentError(text, status_code=response.status_code)
        super().raise_for_error(message, response)


@register
class TwilioWhatsApp(TwilioMessagesAPI, WhatsAppProvider):
    """Twilio's Messages API with `whatsapp:` addresses: POST /2010-04-01/Accounts/{sid}/
    Messages.json, HTTP Basic, form `From=whatsapp:<from>`, `To=whatsapp:<phone>`, and either
    `ContentSid` (the step's `content_sid`: an approved Content template, `HX…`) with
    `ContentVariables` ({"1": …, "2": …} from the parameters), or `Body` (free text)."""

    kind, label = "twilio_whatsapp", "WhatsApp (Twilio)"
    credential_fields = ("account_sid", "auth_token", "from")
    default_base_url = "https://api.twilio.com"
    option_fields = ("base_url", "timeout", "status_callback_url")

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        super().validate_config(credentials, options)
        if not is_e164(str(credentials.get("from") or "")):
            raise ConfigurationError({"credentials.from": [
                "Expected the WhatsApp sender's E.164 number, e.g. +15550001111."]})

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        to = self.recipient(message)
        form = {"To": f"whatsapp:{to}", "From": f"whatsapp:{self.credentials['from']}"}
        content_sid = self.content_sid_of(message)
        if content_sid:
            form["ContentSid"] = content_sid
            parameters = template_parameters(message)
            if parameters:
                form["ContentVariables"] = json.dumps(
                    {str(i): value for i, value in enumerate(parameters, 1)})
        else:
            form["Body"] = self.text_of(message)
        callback = str(self.options.get("status_callback_url") or "")
        if callback:
            form["StatusCallback"] = url_with_message_id(callback, message.id)
        return self.messages_request(form)


# --- Status webhooks ----------------------------------------------------------------------------

META_STATUS_KINDS = {"sent": Kind.SENT, "delivered": Kind.DELIVERED, "read": Kind.OPENED,
                     "failed": Kind.FAILED}


def meta_signature(body: bytes, app_secret: str) -> str:
    """`X-Hub-Signature-256` of `body`: "sha256=" + hex HMAC-SHA256 keyed by the app secret."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def from_meta_status(status: dict) -> StatusEvent:
    """One `entry[].changes[].value.statuses[]` item (id, status, timestamp, recipient_id,
    errors) → StatusEvent."""
    kind = META_STATUS_KINDS.get(str(status.get("status") or ""), Kind.UNKNOWN)
    errors = status.get("errors") or []
    description = str(status.get("status") or "")
    if errors and isinstance(errors[0], dict):
        description += f" (WhatsApp {errors[0].get('code')}: {errors[0].get('title', '')})"
    occurred = None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        occurred = datetime.fromtimestamp(int(status.get("timestamp")), tz=UTC)
    return StatusEvent(
        provider_kind="whatsapp_cloud", kind=kind,
        provider_message_id=str(status.get("id") or ""), occurred_at=occurred,
        event_id=f"{status.get('id')}:{status.get('status')}", description=description,
        raw=status, channel="whatsapp")


@register_callback
class WhatsAppCloudWebhook(StatusCallbackView):
    """Meta's webhook for the WhatsApp Business Account: POSTs signed with
    `X-Hub-Signature-256` (the provider's `app_secret`); the subscription check is a GET whose
    `hub.verify_token` must be the provider's `verify_token`."""

    kind, label = "whatsapp_cloud", "WhatsApp Cloud API"
    route = "whatsapp/<str:key>/status/"
    name = "webhook-whatsapp-cloud-status"
    http_method_names = ["get", "post"]

    def get(self, request, key: str):
        from ..models import ProviderConfig

        config = ProviderConfig.objects.filter(key=key, kind=self.kind).first()
        if config is None:
            return error_response(404, "not_found", f"No {self.label} provider {key!r}.")
        expected = str(config.credentials.get("verify_token") or "")
        given = request.GET.get("hub.verify_token", "")
        if (request.GET.get("hub.mode") != "subscribe" or not expected
                or not hmac.compare_digest(expected.encode(), given.encode())):
            return error_response(403, "forbidden", "Wrong or missing hub.verify_token.")
        return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")

    def validate_request(self, request, config) -> None:
        secret = str(config.credentials.get("app_secret") or "")
        given = request.headers.get("X-Hub-Signature-256", "")
        if not secret or not hmac.compare_digest(meta_signature(request.body, secret).encode(),
                                                 given.encode()):
            raise CallbackRefused("Missing or invalid X-Hub-Signature-256.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        try:
            payload = json.loads(request.body)
            changes = [change.get("value") or {} for entry in payload.get("entry") or []
                       for change in entry.get("changes") or []]
            return [from_meta_status(status) for value in changes
                    for status in value.get("statuses") or []]
        except (ValueError, AttributeError, TypeError):
            raise CallbackInvalid("Not a WhatsApp Business Account webhook payload.") from None


@register_callback
class TwilioWhatsAppStatusCallback(TwilioStatusCallback):
    """Twilio's StatusCallback for WhatsApp messages, signed like any Twilio callback
    (`X-Twilio-Signature` with the provider's `auth_token`). `read` is an `opened` event."""

    kind, label = "twilio_whatsapp", "Twilio WhatsApp"
    route = "twilio_whatsapp/<str:key>/status/"
    name = "webhook-twilio-whatsapp-status"

    def parse_events(self, request, config) -> list[StatusEvent]:
        return [replace(event, provider_kind="twilio_whatsapp", channel="whatsapp")
                for event in super().parse_events(request, config)]

