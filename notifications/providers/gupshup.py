"""Gupshup SMS: sending through the Enterprise SMS API, and its real-time delivery reports.

API: https://docs.gupshup.io/docs/send-message-to-single-number — POST
https://enterprise.smsgupshup.com/GatewayAPI/rest, form `method=SendMessage`, `userid`,
`password`, `auth_scheme=plain`, `v=1.1`, `format=json`, `send_to` (the number, digits only),
`msg`, `msg_type` (TEXT, or UNICODE_TEXT beyond GSM-7), `mask` (the sender). The answer is a 200
either way: `{"response": {"status": "success", "id": <message id>, …}}` or `{"response":
{"status": "error", "id": <error code>, "details": …}}` (https://docs.gupshup.io/docs/error-codes).

Delivery reports (https://docs.gupshup.io/docs/real-time-delivery-reports) are sent to the
account's "Realtime Delivery URL", as a GET (`externalId`, `deliveredTS`, `status`, `cause`,
`phoneNo`, `errCode`) or a POST of a JSON array of events (`externalId`, `eventType`, `eventTs`,
`cause`, `errCode`…). Gupshup does not sign them: the URL carries the provider's own
`callback_token` (`?token=…`), compared in constant time, and an unsigned report without it is
refused.
"""

import contextlib
import hmac
import json
from datetime import UTC, datetime

import httpx

from .base import (
    HTTPRequest,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    json_or_empty,
)
from .callbacks import (
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

# Error codes of the send answer worth retrying: 100 "unknown error has occurred". The others
# (101 parameter missing, 102 auth failed, 103 no such user, 104 user disabled, 105 invalid
# phone, 106 method not supported, 107 version unknown, 108 invalid mask…) fail again.
GUPSHUP_TRANSIENT = frozenset({"100"})


@register
class Gupshup(SMSProvider):
    """The Enterprise SMS API's SendMessage; `from` is the mask (sender id, up to 8
    alphanumerics, or a number)."""

    kind, label = "gupshup", "Gupshup"
    credential_fields = ("userid", "password", "from")
    optional_credential_fields = ("callback_token",)
    public_credential_fields = SMSProvider.public_credential_fields | {"userid"}
    default_base_url = "https://enterprise.smsgupshup.com"
    alphanumeric_sender = True
    option_fields = ("base_url", "timeout")  # reports go to the account's Realtime Delivery URL

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        form = {
            "method": "SendMessage", "userid": self.credentials["userid"],
            "password": self.credentials["password"], "auth_scheme": "plain", "v": "1.1",
            "format": "json", "send_to": message.to.lstrip("+"), "msg": text,
            "msg_type": "UNICODE_TEXT" if sms_size(text).encoding == "UCS-2" else "TEXT",
            "mask": self.sender.lstrip("+"),
        }
        return HTTPRequest("POST", f"{self.base_url}/GatewayAPI/rest", data=form)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        answer = json_or_empty(response).get("response")
        if isinstance(answer, list):  # one entry per number; we send to one
            answer = answer[0] if answer else {}
        if not isinstance(answer, dict):
            raise TransientError(f"Gupshup answered without a response: {response.text[:200]}")
        if str(answer.get("status")).lower() != "success":
            code = str(answer.get("id") or "")
            text = f"Gupshup {code}: {answer.get('details') or answer.get('status')}"
            raise (TransientError if code in GUPSHUP_TRANSIENT else PermanentError)(text)
        return SendResult(provider_message_id=str(answer["id"]))


# --- Delivery reports ---------------------------------------------------------------------------

EVENT_KINDS = {
    "success": Kind.DELIVERED, "delivered": Kind.DELIVERED, "sent": Kind.SENT,
    "fail": Kind.FAILED, "failed": Kind.FAILED, "undeliv": Kind.FAILED,
    "unknown": Kind.UNKNOWN,
}


def from_gupshup(report: dict) -> StatusEvent:
    """One delivery report (GET parameters or one POSTed event) → StatusEvent. Gupshup echoes
    no reference of ours: the message is found by its `externalId` (the send answer's id).
    Gupshup documents no route-failure codes, so no report fails a message over."""
    status = str(report.get("status") or report.get("eventType") or "")
    cause = str(report.get("cause") or "")
    code = str(report.get("errCode") or "")
    stamp = report.get("deliveredTS") or report.get("eventTs")
    occurred = None
    with contextlib.suppress(TypeError, ValueError, OverflowError):
        occurred = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC) if stamp else None
    return StatusEvent(
        provider_kind="gupshup", kind=EVENT_KINDS.get(status.lower(), Kind.UNKNOWN),
        provider_message_id=str(report.get("externalId") or ""),
        occurred_at=occurred,
        event_id=":".join(str(x) for x in (report.get("externalId") or "", status, stamp or "")),
        description=" ".join(p for p in (status, cause and f"({cause})",
                                         code and f"error {code}") if p),
        raw=report,
    )


@register_callback
class GupshupDeliveryReport(StatusCallbackView):
    """Gupshup's real-time delivery report at ``…/status/?token=<callback_token>``."""

    kind, label = "gupshup", "Gupshup"
    route = "gupshup/<str:key>/status/"
    name = "webhook-gupshup-status"
    http_method_names = ["get", "post"]

    def get(self, request, key: str):
        return self.post(request, key)

    def validate_request(self, request, config) -> None:
        token = str(config.credentials.get("callback_token") or "")
        if not token:
            raise CallbackRefused("This provider has no callback_token: reports cannot be "
                                  "verified.")
        given = request.GET.get("token", "")
        if not hmac.compare_digest(token.encode(), given.encode()):
            raise CallbackRefused("Missing or wrong token.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        if request.method == "GET":
            params = {n: request.GET.get(n) for n in request.GET if n != "token"}
            if not params.get("externalId"):
                raise CallbackInvalid("No externalId.")
            return [from_gupshup(params)]
        try:
            payload = json.loads(request.body)
        except ValueError:
            raise CallbackInvalid("The body is not JSON.") from None
        if isinstance(payload, dict) and isinstance(payload.get("response"), list):
            payload = payload["response"]
        events = payload if isinstance(payload, list) else [payload]
        if not all(isinstance(e, dict) and e.get("externalId") for e in events):
            raise CallbackInvalid("Expected delivery report events with an externalId.")
        return [from_gupshup(e) for e in events]
