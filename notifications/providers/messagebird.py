"""MessageBird (Bird) SMS: sending through the SMS Messaging API, and its status reports
(signed with the `MessageBird-Signature-JWT` header).

API: https://developers.messagebird.com/api/sms-messaging/ — POST https://rest.messagebird.com/
messages, `Authorization: AccessKey <key>`, JSON `originator`, `recipients` (numbers without
'+'), `body`, `reference` (Clarion's message id, echoed in status reports), `reportUrl`.
Signed webhooks: https://developers.messagebird.com/docs/verify-http-requests — an HS256 JWT
keyed with the account's signing key, issuer "MessageBird", with `nbf`/`exp`, `url_hash` (the
SHA-256 of the full URL called) and, when there is a body, `payload_hash` (its SHA-256).
"""

import contextlib
import hashlib
import hmac
from datetime import datetime

import httpx
import jwt
from django.http import HttpRequest

from .base import (
    HTTPRequest,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    json_or_empty,
    parse_retry_after,
)
from .callbacks import CallbackRefused, Kind, StatusCallbackView, StatusEvent, register_callback
from .registry import register
from .sms import SMSProvider, public_urls_of

# The API's `errors[].code` values worth retrying: 99 internal error. 2 (not allowed: a wrong
# key), 9/10 (missing or invalid parameters), 20 (not found), 21 (bad request), 25 (not enough
# balance) and 98 (no such API) will fail again the same way.
MESSAGEBIRD_TRANSIENT = frozenset({99})


@register
class MessageBird(SMSProvider):
    """POST /messages with `Authorization: AccessKey <access_key>`. Answers 201 with the
    message's `id`; errors are `{"errors": [{"code", "description", "parameter"}]}`."""

    kind, label = "messagebird", "MessageBird (Bird)"
    credential_fields = ("access_key", "from")
    optional_credential_fields = ("signing_key",)
    default_base_url = "https://rest.messagebird.com"
    webhook_route = "webhook-messagebird-status"
    alphanumeric_sender = True

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        body = {"originator": self.sender.lstrip("+"),
                "recipients": [message.to.lstrip("+")], "body": text,
                "reference": message.id, "datacoding": "auto"}
        if self.status_callback_url:
            body["reportUrl"] = self.status_callback_url
        return HTTPRequest("POST", f"{self.base_url}/messages", json=body,
                           headers={"Authorization": f"AccessKey {self.credentials['access_key']}"})

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["id"]))

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if not response.is_success:
            errors = json_or_empty(response).get("errors") or []
            codes = {error.get("code") for error in errors if isinstance(error, dict)}
            text = "; ".join(f"MessageBird {e.get('code')}: {e.get('description')}"
                             for e in errors if isinstance(e, dict))
            if codes & MESSAGEBIRD_TRANSIENT:
                raise TransientError(text, status_code=response.status_code,
                                     retry_after=parse_retry_after(
                                         response.headers.get("Retry-After")))
            if codes and response.status_code < 500 and response.status_code != 429:
                raise PermanentError(text, status_code=response.status_code)
        super().raise_for_error(message, response)


# --- Status reports -----------------------------------------------------------------------------

# `status` of a status report (https://developers.messagebird.com/api/sms-messaging/#the-message-object).
EVENT_KINDS = {
    "scheduled": Kind.QUEUED, "buffered": Kind.QUEUED, "sent": Kind.SENT,
    "delivered": Kind.DELIVERED, "expired": Kind.FAILED, "delivery_failed": Kind.FAILED,
}

# `statusErrorCode`s after which another provider may deliver the message (Bird's "SMS platform
# extended error codes"): 34 system failure / network error on the route, 39 SMSC rejected the
# route; and a report `expired` before MessageBird reached any operator. The subscriber codes
# (1 unknown subscriber, 2/3 unknown base station/MSC, 5 unidentified subscriber…) leave it
# failed: another provider would reach the same dead number.
CARRIER_FAILOVER_CODES = frozenset({"34", "39"})


def from_messagebird(params: dict) -> StatusEvent:
    """A status report's parameters (id, reference, recipient, status, statusReason,
    statusErrorCode, statusDatetime) → StatusEvent; `reference` is Clarion's message id."""
    status = str(params.get("status") or "")
    code = str(params.get("statusErrorCode") or "")
    reason = str(params.get("statusReason") or "")
    kind = EVENT_KINDS.get(status, Kind.UNKNOWN)
    occurred = None
    with contextlib.suppress(ValueError):
        occurred = datetime.fromisoformat(str(params.get("statusDatetime") or ""))
    description = " ".join(part for part in (status, reason and f"({reason})",
                                             code and f"error {code}") if part)
    return StatusEvent(
        provider_kind="messagebird", kind=kind,
        provider_message_id=str(params.get("id") or ""),
        message_id=str(params.get("reference") or ""),
        occurred_at=occurred if occurred and occurred.tzinfo else None,
        event_id=":".join(str(params.get(n) or "") for n in ("id", "status", "statusDatetime")),
        description=description, raw=params,
        carrier_refused=kind == Kind.FAILED and (code in CARRIER_FAILOVER_CODES
                                                 or reason.lower() == "expired"),
    )


def messagebird_signature(url: str, body: bytes, signing_key: str, *, now: int) -> str:
    """A MessageBird-Signature-JWT for `url` and `body`, as MessageBird makes one (tests and
    docs use it): HS256, iss "MessageBird", nbf/exp around `now` (Unix seconds), url_hash and
    payload_hash hex SHA-256."""
    claims = {"iss": "MessageBird", "nbf": now, "exp": now + 300, "jti": f"{now}-{len(body)}",
              "url_hash": hashlib.sha256(url.encode()).hexdigest()}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(claims, signing_key, algorithm="HS256")


@register_callback
class MessageBirdStatusReport(StatusCallbackView):
    """MessageBird's status report: a GET (or POST) to the message's reportUrl, signed with
    `MessageBird-Signature-JWT` over its full URL (query included) and body."""

    kind, label = "messagebird", "MessageBird"
    route = "messagebird/<str:key>/status/"
    name = "webhook-messagebird-status"
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, key: str):
        return self.post(request, key)

    def validate_request(self, request, config) -> None:
        key = str(config.credentials.get("signing_key") or "")
        if not key:
            raise CallbackRefused("This provider has no signing_key: reports cannot be verified.")
        token = request.headers.get("MessageBird-Signature-JWT", "")
        try:
            claims = jwt.decode(token, key, algorithms=["HS256"], issuer="MessageBird",
                                options={"require": ["iss", "nbf", "exp", "url_hash"]},
                                leeway=5)
        except jwt.InvalidTokenError as exc:
            raise CallbackRefused(f"Missing or invalid MessageBird-Signature-JWT: {exc}") from exc
        url_hashes = [hashlib.sha256(url.encode()).hexdigest()
                      for url in public_urls_of(request)]
        if not any(hmac.compare_digest(h.encode(), str(claims["url_hash"]).encode())
                   for h in url_hashes):
            raise CallbackRefused("The JWT does not sign this URL.")
        expected = hashlib.sha256(request.body).hexdigest() if request.body else ""
        if not hmac.compare_digest(expected.encode(),
                                   str(claims.get("payload_hash") or "").encode()):
            raise CallbackRefused("The JWT does not sign this body.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        source = request.GET if request.method == "GET" else (request.POST or request.GET)
        params = {name: source.get(name) for name in source}
        return [from_messagebird(params)]
