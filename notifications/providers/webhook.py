"""The webhook channel: POST the rendered message as JSON to the step's URL, signed.

Headers: `Clarion-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`
(Stripe's scheme: the receiver recomputes it on the raw body, compares in constant time and
rejects old timestamps), `Idempotency-Key` and `Clarion-Message-Id` (the Message id: receivers
de-duplicate on it, which is why a message whose worker died mid-call may be sent again).
"""

import contextlib
import hashlib
import hmac
import json
import time
from typing import Any, ClassVar

import httpx
from django.conf import settings

from .base import HTTPProvider, HTTPRequest, OutboundMessage, PermanentError, SendResult
from .registry import register
from .ssrf import UnsafeURL, check_public_url

SIGNATURE_HEADER = "Clarion-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """The receiver's side, for docs and tests: a valid, recent signature of `body`."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), f"t={timestamp},v1={fields['v1']}")


def default_signing_secret() -> str:
    configured = settings.CLARION.get("WEBHOOK_SIGNING_SECRET")
    if configured:
        return configured
    return hashlib.sha256(f"clarion-webhook:{settings.SECRET_KEY}".encode()).hexdigest()


@register
class SignedWebhook(HTTPProvider):
    """The URL is the message's address (the step's `url`); the secret is the provider's
    `signing_secret` (or CLARION_WEBHOOK_SIGNING_SECRET when no webhook provider is configured).
    Any 2xx is accepted; redirects are not followed."""

    kind, label, channel = "webhook", "Signed webhook (HMAC-SHA256)", "webhook"
    credential_fields = ("signing_secret",)
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)
    supports_idempotency = True
    public_urls_only = True  # the URL comes from the step

    def payload(self, message: OutboundMessage) -> dict[str, Any]:
        body: Any = message.content.get("body", "")
        if isinstance(body, str) and body.strip():
            with contextlib.suppress(ValueError):  # a text body stays text
                body = json.loads(body)
        return {"id": message.id, "workflow": message.workflow_key,
                "recipient": message.recipient_id, "tenant": message.tenant_key or None,
                "data": body}

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        if not message.to:
            raise PermanentError("The webhook step has no URL.")
        raw = json.dumps(self.payload(message), separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.credentials["signing_secret"], timestamp, raw),
            "Idempotency-Key": message.idempotency_key,
            "Clarion-Message-Id": message.id,
            "User-Agent": "Clarion-Webhook/1",
        }
        return HTTPRequest("POST", message.to, headers=headers, content=raw)

    def before_send(self, request: HTTPRequest) -> None:
        try:
            check_public_url(request.url)
        except UnsafeURL as exc:
            raise PermanentError(str(exc)) from exc

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=message.id)

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if response.is_redirect:
            raise PermanentError(f"HTTP {response.status_code}: redirects are not followed "
                                 f"(to {response.headers.get('Location', '?')}).")
        super().raise_for_error(message, response)
