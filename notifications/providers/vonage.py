"""Vonage SMS: sending through the SMS API, its signed delivery receipts (`sig`) and its Messages
API status webhooks (a signed JWT)."""

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime

import httpx
import jwt
from django.http import HttpRequest, QueryDict

from .base import (
    ConfigurationError,
    HTTPRequest,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
)
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
from .sms_segments import sms_size

# Vonage SMS API statuses worth retrying: 1 throttled, 5 internal error.
VONAGE_TRANSIENT = frozenset({"1", "5"})


@register
class Vonage(SMSProvider):
    """POST /sms/json with api_key, api_secret, from, to (digits, no '+'), text, type (unicode
    for UCS-2), client-ref. Always HTTP 200: each part in `messages[]` has a `status`, "0" for
    accepted, else an error code (1 throttled and 5 internal error are transient)."""

    kind, label = "vonage", "Vonage (SMS API)"
    credential_fields = ("api_key", "api_secret", "from")
    # Verify signed delivery receipts (VonageReceipt below).
    optional_credential_fields = ("signature_secret", "signature_method")
    default_base_url = "https://rest.nexmo.com"
    webhook_route = "webhook-vonage-receipt"
    alphanumeric_sender = True

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        """Also refuse a `signature_method` Vonage does not sign with (its signed-webhooks
        docs: md5hash, md5, sha1, sha256, sha512): every receipt would be refused."""
        super().validate_config(credentials, options)
        method = str(credentials.get("signature_method") or "md5hash").lower()
        if method not in SIGNATURE_METHODS:
            raise ConfigurationError({"credentials.signature_method": [
                f"Expected one of: {', '.join(SIGNATURE_METHODS)}."]})

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


# --- Status callbacks ---------------------------------------------------------------------------

# SMS API delivery receipt and Messages API status values.
EVENT_KINDS = {
    "delivered": Kind.DELIVERED, "expired": Kind.FAILED, "failed": Kind.FAILED,
    "rejected": Kind.REJECTED, "undeliverable": Kind.FAILED, "accepted": Kind.QUEUED,
    "buffered": Kind.QUEUED, "submitted": Kind.SENT, "read": Kind.OPENED,
    "unknown": Kind.UNKNOWN,
}

# Delivery receipt err-codes after which another SMS provider may deliver the message: 5
# portability error, 8 network error, 11 unroutable, 99 general error. The others (1-4, 6, 7,
# 9, 10, 12-15: the number is unreachable, unknown, barred…) leave it failed.
CARRIER_FAILOVER_CODES = frozenset({"5", "8", "11", "99"})

SIGNATURE_METHODS = {
    "md5hash": None, "md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}


def vonage_signature(params: Mapping[str, object], secret: str, method: str = "md5hash") -> str:
    """Vonage's signed-request `sig` (lower-case hex): each parameter but `sig`, sorted by name,
    as ``&name=value`` with '&' and '=' in values replaced by '_'; then MD5 of that plus the
    secret ("md5hash"), or an HMAC of it keyed by the secret (md5, sha1, sha256, sha512)."""
    text = "".join(
        f"&{name}={str(params[name]).replace('&', '_').replace('=', '_')}"
        for name in sorted(params) if name != "sig")
    digest = SIGNATURE_METHODS[method]
    if digest is None:
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), digest).hexdigest()


def from_vonage_receipt(params: dict) -> StatusEvent:
    """An SMS API delivery receipt (DLR): messageId, status, err-code, message-timestamp…"""
    status = (params.get("status") or "").lower()
    err = params.get("err-code") or ""
    occurred = _vonage_time(params.get("message-timestamp") or params.get("scts") or "")
    kind = EVENT_KINDS.get(status, Kind.UNKNOWN)
    return StatusEvent(
        provider_kind="vonage",
        kind=kind,
        provider_message_id=params.get("messageId") or "",
        message_id=params.get("client-ref") or "",  # Clarion's id, sent as client-ref
        occurred_at=occurred,
        description=f"{status} (err-code {err})" if err and err != "0" else status,
        raw=params,
        carrier_refused=kind in (Kind.FAILED, Kind.REJECTED)
        and str(err) in CARRIER_FAILOVER_CODES,
    )


def from_vonage_message_status(payload: dict) -> StatusEvent:
    """A Messages API status webhook: message_uuid, status, timestamp, error{…}."""
    status = (payload.get("status") or "").lower()
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    detail = error.get("title") or error.get("detail") or ""
    return StatusEvent(
        provider_kind="vonage",
        kind=EVENT_KINDS.get(status, Kind.UNKNOWN),
        provider_message_id=payload.get("message_uuid") or "",
        occurred_at=_iso_time(payload.get("timestamp") or ""),
        description=f"{status}: {detail}" if detail else status,
        raw=payload,
    )


def _vonage_time(value: str) -> datetime | None:
    """'2020-01-01 12:00:00' (UTC) or the legacy 'YYMMDDHHMM' scts."""
    for fmt in ("%Y-%m-%d %H:%M:%S", "%y%m%d%H%M"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _iso_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _secret(config) -> tuple[str, str]:
    credentials = config.credentials
    return (str(credentials.get("signature_secret") or ""),
            str(credentials.get("signature_method") or "md5hash").lower())


def _receipt_params(request: HttpRequest) -> dict:
    if request.method == "GET":
        return {name: request.GET.get(name) for name in request.GET}
    if request.content_type == "application/json":
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            raise CallbackInvalid("The body is not a JSON object.")
        return payload
    form = QueryDict(request.body, encoding="utf-8")
    return {name: form.get(name) for name in form}


@register_callback
class VonageReceipt(StatusCallbackView):
    """An SMS API delivery receipt (GET or POST). Vonage signs receipts (`sig` plus `timestamp`)
    once signed webhooks are on for the account; Clarion accepts signed receipts only."""

    kind, label = "vonage", "Vonage"
    route = "vonage/<str:key>/receipt/"
    name = "webhook-vonage-receipt"
    http_method_names = ["get", "post"]

    def get(self, request, key):
        return self.post(request, key)

    def validate_request(self, request, config) -> None:
        secret, method = _secret(config)
        if not secret or method not in SIGNATURE_METHODS:
            raise CallbackRefused(
                "This provider has no signature secret: receipts cannot be verified.")
        params = _receipt_params(request)
        signature = str(params.get("sig") or "")
        expected = vonage_signature(params, secret, method)
        if not signature or not hmac.compare_digest(expected.encode(),
                                                    signature.lower().encode()):
            raise CallbackRefused("Missing or invalid sig.")
        try:
            age = abs(time.time() - int(params.get("timestamp")))
        except (TypeError, ValueError):
            raise CallbackRefused("Missing or invalid timestamp.") from None
        if age > SIGNATURE_MAX_AGE_SECONDS:
            raise CallbackRefused("The signature timestamp is too old.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        params = _receipt_params(request)
        return [from_vonage_receipt(
            {name: str(value) for name, value in params.items() if name != "sig"})]


@register_callback
class VonageMessageStatus(StatusCallbackView):
    """A Messages API status webhook: `Authorization: Bearer <JWT>` signed (HS256) with the
    signature secret, whose `payload_hash` claim is the SHA-256 of the body."""

    kind, label = "vonage", "Vonage"
    route = "vonage/<str:key>/status/"
    name = "webhook-vonage-status"

    def validate_request(self, request, config) -> None:
        secret, _ = _secret(config)
        if not secret:
            raise CallbackRefused(
                "This provider has no signature secret: webhooks cannot be verified.")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        try:
            claims = jwt.decode(token, secret, algorithms=["HS256"],
                                options={"require": ["iat", "payload_hash"]})
        except jwt.InvalidTokenError as exc:
            raise CallbackRefused("Missing or invalid signed JWT.") from exc
        body_hash = hashlib.sha256(request.body).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                body_hash.encode(), str(claims["payload_hash"]).lower().encode()):
            raise CallbackRefused("The JWT does not sign this body.")
        if abs(time.time() - float(claims["iat"])) > SIGNATURE_MAX_AGE_SECONDS:
            raise CallbackRefused("The signature timestamp is too old.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise CallbackInvalid("The body is not JSON.") from None
        if not isinstance(payload, dict):
            raise CallbackInvalid("The body is not a JSON object.")
        return [from_vonage_message_status(payload)]
