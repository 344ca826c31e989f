"""SMS: Twilio, Vonage (SMS API) and Plivo, each through its documented REST API."""

import ipaddress
from typing import ClassVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.urls import reverse

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
from .phone import is_e164
from .registry import register
from .sms_segments import sms_size


class SMSProvider(HTTPProvider):
    """The SMS channel's base: checks the number and the text before any kind builds a request.
    `message.to` is the recipient's phone in E.164; `message.content["text"]` the rendered text."""

    channel = "sms"
    option_fields: ClassVar[tuple[str, ...]] = ("base_url", "timeout", "status_callback_url")
    sender_field: ClassVar[str] = "from"
    # The URL name (providers/webhooks.py) of this kind's delivery-status webhook, if any.
    webhook_route: ClassVar[str] = ""
    alphanumeric_sender: ClassVar[bool] = False

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        super().validate_config(credentials, options)
        sender = str(credentials.get(cls.sender_field) or "")
        alnum = cls.alphanumeric_sender and sender.isalnum() and 1 <= len(sender) <= 11
        if not is_e164(sender) and not alnum:
            expected = "an E.164 number" + (" or an alphanumeric sender id (up to 11)"
                                             if cls.alphanumeric_sender else "")
            raise ConfigurationError({f"credentials.{cls.sender_field}": [
                f"Expected {expected}, e.g. +15550001111."]})

    @property
    def sender(self) -> str:
        return str(self.credentials[self.sender_field])

    def text_of(self, message: OutboundMessage) -> str:
        if not is_e164(message.to):
            raise PermanentError(f"{message.to!r} is not an E.164 phone number.")
        text = str(message.content.get("text") or "")
        if not text.strip():
            raise PermanentError("The SMS text is empty.")
        return text

    @property
    def status_callback_url(self) -> str:
        """The `status_callback_url` option, else this provider's own status webhook on
        PUBLIC_URL (for kinds Clarion has a webhook for, and a PUBLIC_URL the provider can
        reach)."""
        configured = str(self.options.get("status_callback_url") or "")
        if configured or not self.webhook_route:
            return configured
        return default_status_callback_url(route=self.webhook_route, key=self.key)


def default_status_callback_url(*, route: str, key: str) -> str:
    """PUBLIC_URL + the webhook route of the provider `key`; "" when PUBLIC_URL is a loopback
    address (the embedded default, http://localhost:8000), which no provider could call."""
    public = str(getattr(settings, "PUBLIC_URL", "") or "").rstrip("/")
    host = urlsplit(public).hostname or ""
    if not host or host == "localhost" or host.endswith(".localhost"):
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass  # a name
    return public + reverse(route, kwargs={"key": key})


@register
class Twilio(SMSProvider):
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP Basic (AccountSid, AuthToken),
    form fields To, From, Body (and StatusCallback). Answers 201 with the message's `sid`; errors
    carry Twilio's `code` (20429 and 5xx are worth retrying)."""

    kind, label = "twilio", "Twilio"
    credential_fields = ("account_sid", "auth_token", "from")
    default_base_url = "https://api.twilio.com"
    webhook_route = "webhook-twilio-status"

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        sid = self.credentials["account_sid"]
        form = {"To": message.to, "From": self.sender, "Body": text}
        if self.status_callback_url:
            form["StatusCallback"] = self.status_callback_url
        return HTTPRequest("POST", f"{self.base_url}/2010-04-01/Accounts/{sid}/Messages.json",
                           data=form, auth=(sid, self.credentials["auth_token"]))

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["sid"]))

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if not response.is_success:
            body = json_or_empty(response)
            if body.get("code") == 20429:
                raise TransientError(f"Twilio {body.get('code')}: {body.get('message')}",
                                     retry_after=parse_retry_after(
                                         response.headers.get("Retry-After")))
            if body.get("code") and response.status_code < 500 and response.status_code != 429:
                raise PermanentError(f"Twilio {body['code']}: {body.get('message')}")
        super().raise_for_error(message, response)


# Vonage SMS API statuses worth retrying: 1 throttled, 5 internal error.
VONAGE_TRANSIENT = frozenset({"1", "5"})


@register
class Vonage(SMSProvider):
    """POST /sms/json with api_key, api_secret, from, to (digits, no '+'), text, type (unicode
    for UCS-2), client-ref. Always HTTP 200: each part in `messages[]` has a `status`, "0" for
    accepted, else an error code (1 throttled and 5 internal error are transient)."""

    kind, label = "vonage", "Vonage (SMS API)"
    credential_fields = ("api_key", "api_secret", "from")
    # Verify signed delivery receipts (notifications/providers/webhooks.py).
    optional_credential_fields = ("signature_secret", "signature_method")
    default_base_url = "https://rest.nexmo.com"
    webhook_route = "webhook-vonage-receipt"
    alphanumeric_sender = True

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        form = {
            "api_key": self.credentials["api_key"],
            "api_secret": self.credentials["api_secret"],
            "from": self.sender.lstrip("+"),
            "to": message.to.lstrip("+"),
            "text": text,
            "client-ref": message.id,
        }
        if sms_size(text).encoding == "UCS-2":
            form["type"] = "unicode"
        if self.status_callback_url:
            form["callback"] = self.status_callback_url
        return HTTPRequest("POST", f"{self.base_url}/sms/json", data=form)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        parts = response.json()["messages"]
        for part in parts:
            status = str(part.get("status"))
            if status != "0":
                error = f"Vonage status {status}: {part.get('error-text', '')}"
                if status in VONAGE_TRANSIENT:
                    raise TransientError(error)
                raise PermanentError(error)
        return SendResult(provider_message_id=str(parts[0]["message-id"]))


@register
class Plivo(SMSProvider):
    """POST /v1/Account/{auth_id}/Message/, HTTP Basic (auth_id, auth_token), JSON src, dst,
    text (and url for status callbacks). Answers 202 with `message_uuid: [...]`."""

    kind, label = "plivo", "Plivo"
    credential_fields = ("auth_id", "auth_token", "from")
    default_base_url = "https://api.plivo.com"

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        auth_id = self.credentials["auth_id"]
        body = {"src": self.sender, "dst": message.to, "text": text}
        if self.status_callback_url:
            body["url"] = self.status_callback_url
        return HTTPRequest("POST", f"{self.base_url}/v1/Account/{auth_id}/Message/", json=body,
                           auth=(auth_id, self.credentials["auth_token"]))

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["message_uuid"][0]))

