"""SMS: the channel's base, shared by Twilio (twilio.py), Vonage (vonage.py) and Plivo (plivo.py).

Each kind's module holds everything about that provider: how to send through its documented
REST API and, where Clarion has one, its status callback (signature and event map).
"""

import ipaddress
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.urls import reverse

from .base import ConfigurationError, HTTPProvider, OutboundMessage, PermanentError
from .phone import is_e164


class SMSProvider(HTTPProvider):
    """The SMS channel's base: checks the number and the text before any kind builds a request.
    `message.to` is the recipient's phone in E.164; `message.content["text"]` the rendered text."""

    channel = "sms"
    option_fields: ClassVar[tuple[str, ...]] = ("base_url", "timeout", "status_callback_url")
    sender_field: ClassVar[str] = "from"
    # The URL name (the kind's StatusCallbackView) of this kind's status callback, if any.
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

    def status_callback_url_for(self, message: OutboundMessage) -> str:
        """`status_callback_url` naming the message: ``?message_id=<Clarion's message id>``
        added, for kinds whose callback URL is given per message and echoes no id of ours
        (Twilio's StatusCallback, Plivo's url). A callback can then find its message even
        when it arrives before the provider's own answer (its message id) is written; Twilio
        signs the full URL, so the id in it is as trusted as the rest. "" when there is none."""
        url = self.status_callback_url
        return url and url_with_message_id(url, message.id)


MESSAGE_ID_PARAMETER = "message_id"


def url_with_message_id(url: str, message_id: str) -> str:
    """`url` with its query's `message_id` set to `message_id` (other parameters kept)."""
    parts = urlsplit(url)
    query = [(name, value) for name, value in parse_qsl(parts.query, keep_blank_values=True)
             if name != MESSAGE_ID_PARAMETER]
    query.append((MESSAGE_ID_PARAMETER, message_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


def public_urls_of(request) -> list[str]:
    """The URLs a provider may have signed for `request`: as the request says it was called, and
    as PUBLIC_URL + its path says (behind a proxy the request may not know its public scheme and
    host)."""
    urls = [request.build_absolute_uri()]
    public = str(getattr(settings, "PUBLIC_URL", "") or "").rstrip("/")
    if public and public + request.get_full_path() not in urls:
        urls.append(public + request.get_full_path())
    return urls


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
