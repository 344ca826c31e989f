"""Sinch SMS: sending through the SMS REST API (batches), and its delivery report callbacks
(HMAC-signed when the service plan has a callback secret).

API: https://developers.sinch.com/docs/sms/api-reference/sms/batches — POST
https://{region}.sms.api.sinch.com/xms/v1/{service_plan_id}/batches, `Authorization: Bearer
<api_token>`, JSON `from`, `to` ([E.164]), `body` (at most 2000 characters), `delivery_report`
("per_recipient": a callback per recipient and status), `callback_url`, `client_reference`
(Clarion's message id, echoed in delivery reports). Answers 201 with the batch `id`; errors are
`{"code", "text"}` with the HTTP status (400 syntax/parameters, 401, 403, 404, 429, 5xx).
Callback signing (Sinch webhook HMAC): headers `x-sinch-webhook-signature-timestamp`,
`x-sinch-webhook-signature-nonce`, `x-sinch-webhook-signature-algorithm` (HmacSHA256) and
`x-sinch-webhook-signature`, the base64 HMAC-SHA256, keyed with the callback secret, of
``<raw body>.<nonce>.<timestamp>``: the scheme of the official SDK's SMS webhooks
(sinch-sdk-python `SmsWebhooks.validate_authentication_header`, which calls
`validate_webhook_signature_with_nonce`).
"""

import base64
import contextlib
import hashlib
import hmac
import json
import time
from datetime import datetime

import httpx

from .base import HTTPRequest, OutboundMessage, PermanentError, SendResult
from .callbacks import (
    SIGNATURE_MAX_AGE_SECONDS,
    CallbackInvalid,
    CallbackRefused,
    Kind,
    StatusCallbackView,
    StatusEvent,
    register_callback,
)
from .registry import register
from .sms import SMSProvider

SINCH_MAX_BODY = 2000


@register
class Sinch(SMSProvider):
    """POST /xms/v1/{service_plan_id}/batches, bearer `api_token`; `base_url` picks the region
    (https://us.sms.api.sinch.com by default; eu., au., br., ca.)."""

    kind, label = "sinch", "Sinch"
    credential_fields = ("service_plan_id", "api_token", "from")
    optional_credential_fields = ("callback_secret",)
    public_credential_fields = SMSProvider.public_credential_fields | {"service_plan_id"}
    default_base_url = "https://us.sms.api.sinch.com"
    webhook_route = "webhook-sinch-status"
    alphanumeric_sender = True

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        if len(text) > SINCH_MAX_BODY:
            raise PermanentError(f"Sinch takes at most {SINCH_MAX_BODY} characters; the text "
                                 f"has {len(text)}.")
        body = {"from": self.sender, "to": [message.to], "body": text,
                "client_reference": message.id, "delivery_report": "per_recipient"}
        if self.status_callback_url:
            body["callback_url"] = self.status_callback_url
        plan = self.credentials["service_plan_id"]
        return HTTPRequest("POST", f"{self.base_url}/xms/v1/{plan}/batches", json=body,
                           headers={"Authorization": f"Bearer {self.credentials['api_token']}"})

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["id"]))
    # Errors: the base's mapping is Sinch's (429 and 5xx worth retrying; 400 syntax_*, 401, 403
    # forbidden and 404 not).


# --- Delivery reports ---------------------------------------------------------------------------

# `status` of a recipient delivery report
# (https://developers.sinch.com/docs/sms/api-reference/sms/tag/Delivery-reports/).
EVENT_KINDS = {
    "Queued": Kind.QUEUED, "Dispatched": Kind.SENT, "Delivered": Kind.DELIVERED,
    "Aborted": Kind.FAILED, "Cancelled": Kind.FAILED, "Rejected": Kind.REJECTED,
    "Deleted": Kind.FAILED, "Failed": Kind.FAILED, "Expired": Kind.FAILED,
    "Unknown": Kind.UNKNOWN,
}

# Delivery report `code`s after which another provider may deliver the message (the route or
# account failed, not the number): 402 unroutable, 403 internal error, 406 internal expiry,
# 408 internal reject, 410 unmatched default originator, 412 unprovisioned region. The others
# (0 delivered, 404 temporary delivery failure, 407 cancelled, 411 too many parts, 413 blocked,
# and the operator's codes for the handset) leave it failed.
CARRIER_FAILOVER_CODES = frozenset({402, 403, 406, 408, 410, 412})


def from_sinch(report: dict) -> StatusEvent:
    """A `recipient_delivery_report_sms` (batch_id, recipient, code, status, at,
    client_reference) → StatusEvent; `client_reference` is Clarion's message id."""
    status = str(report.get("status") or "")
    code = report.get("code")
    kind = EVENT_KINDS.get(status, Kind.UNKNOWN)
    occurred = None
    with contextlib.suppress(ValueError):
        occurred = datetime.fromisoformat(str(report.get("at") or "").replace("Z", "+00:00"))
    return StatusEvent(
        provider_kind="sinch", kind=kind,
        provider_message_id=str(report.get("batch_id") or ""),
        message_id=str(report.get("client_reference") or ""),
        occurred_at=occurred,
        event_id=":".join(str(report.get(n) or "") for n in ("batch_id", "recipient", "status",
                                                              "code")),
        description=f"{status} (code {code})" if code not in (None, 0) else status,
        raw=report,
        carrier_refused=kind in (Kind.FAILED, Kind.REJECTED)
        and isinstance(code, int) and code in CARRIER_FAILOVER_CODES,
    )


def sinch_signature(body: bytes, nonce: str, timestamp: str, secret: str) -> str:
    """Sinch's webhook HMAC: base64 HMAC-SHA256 (key: the callback secret) of
    ``<body>.<nonce>.<timestamp>``."""
    signed = body + b"." + nonce.encode() + b"." + timestamp.encode()
    return base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest()).decode()


@register_callback
class SinchDeliveryReport(StatusCallbackView):
    """Sinch's delivery report callback: JSON, HMAC-signed with the provider's
    `callback_secret` (Sinch configures it on the service plan). Unsigned reports are refused:
    a provider without `callback_secret` gets none recorded."""

    kind, label = "sinch", "Sinch"
    route = "sinch/<str:key>/status/"
    name = "webhook-sinch-status"

    def validate_request(self, request, config) -> None:
        secret = str(config.credentials.get("callback_secret") or "")
        if not secret:
            raise CallbackRefused("This provider has no callback_secret: delivery reports "
                                  "cannot be verified.")
        headers = request.headers
        nonce = headers.get("x-sinch-webhook-signature-nonce", "")
        timestamp = headers.get("x-sinch-webhook-signature-timestamp", "")
        signature = headers.get("x-sinch-webhook-signature", "")
        if not (nonce and timestamp and signature):
            raise CallbackRefused("Missing x-sinch-webhook-signature headers.")
        expected = sinch_signature(request.body, nonce, timestamp, secret)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise CallbackRefused("Invalid x-sinch-webhook-signature.")
        try:
            age = abs(time.time() - float(timestamp))
        except ValueError:
            raise CallbackRefused("The signature timestamp is not a number.") from None
        if age > SIGNATURE_MAX_AGE_SECONDS:
            raise CallbackRefused("The signature timestamp is too old.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise CallbackInvalid("The body is not JSON.") from None
        reports = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(r, dict) for r in reports):
            raise CallbackInvalid("Expected a delivery report object.")
        return [from_sinch(r) for r in reports
                if r.get("type", "recipient_delivery_report_sms").startswith("recipient_")]
