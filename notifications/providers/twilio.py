"""Twilio SMS: sending through the Messages API, and its StatusCallback (X-Twilio-Signature)."""

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import httpx
from django.conf import settings
from django.http import HttpRequest, QueryDict

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
from .sms import MESSAGE_ID_PARAMETER, SMSProvider


class TwilioMessagesAPI:
    """Twilio's Messages API, shared by its SMS and WhatsApp kinds: POST
    /2010-04-01/Accounts/{AccountSid}/Messages.json with a form, HTTP Basic (AccountSid,
    AuthToken); answers 201 with the message's `sid`; errors carry Twilio's `code` (20429 and
    5xx are worth retrying, other codes below 500 are not).
    https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource"""

    def messages_request(self, form: dict) -> HTTPRequest:
        sid = self.credentials["account_sid"]
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
                raise PermanentError(f"Twilio {body['code']}: {body.get('message')}",
                                     status_code=response.status_code)
        super().raise_for_error(message, response)


@register
class Twilio(TwilioMessagesAPI, SMSProvider):
    """Twilio SMS: form fields To, From, Body (and StatusCallback, naming the message: see
    `status_callback_url_for`)."""

    kind, label = "twilio", "Twilio"
    credential_fields = ("account_sid", "auth_token", "from")
    default_base_url = "https://api.twilio.com"
    webhook_route = "webhook-twilio-status"

    can_find_accepted = True
    # How far back before `since` a message may have been created (the two clocks differ), and
    # how many pages of 50 (newest first) a lookup reads at most.
    LOOKUP_SKEW, LOOKUP_PAGES = timedelta(minutes=5), 10

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        form = {"To": message.to, "From": self.sender, "Body": self.text_of(message)}
        callback = self.status_callback_url_for(message)
        if callback:
            form["StatusCallback"] = callback
        return self.messages_request(form)

    def find_accepted(self, message: OutboundMessage, *, since: datetime,
                      exclude: Iterable[str] = ()) -> str | None:
        """Twilio's Messages list filtered by To and From (newest first, 50 a page), read back
        to `since` less LOOKUP_SKEW: the `sid` of the first message with this text not in
        `exclude`, else None. Twilio creates the Message resource before it answers the
        create request, so a request that reached it is listed.
        https://www.twilio.com/docs/messaging/api/message-resource#read-multiple-message-resources
        Raises TransientError when the list cannot be read (or is longer than LOOKUP_PAGES
        pages back to `since`)."""
        text, excluded = self.text_of(message), set(exclude)
        sid, oldest = self.credentials["account_sid"], since - self.LOOKUP_SKEW
        auth = (sid, self.credentials["auth_token"])
        url = f"{self.base_url}/2010-04-01/Accounts/{sid}/Messages.json"
        params: dict | None = {"To": message.to, "From": self.sender, "PageSize": 50}
        for _page in range(self.LOOKUP_PAGES):
            try:
                response = self.client().get(url, params=params, auth=auth)
            except httpx.TransportError as exc:
                raise TransientError(f"Twilio's message list: {type(exc).__name__}: {exc}") \
                    from exc
            if not response.is_success:
                raise TransientError(f"Twilio's message list answered HTTP "
                                     f"{response.status_code}.")
            try:
                page = response.json()
                listed = [(item["sid"], item.get("body"),
                           parsedate_to_datetime(item["date_created"]))
                          for item in page.get("messages") or []]
            except (ValueError, KeyError, TypeError) as exc:
                raise TransientError(f"Twilio's message list is unreadable: {exc}") from exc
            for found, body, created in listed:
                if created >= oldest and body == text and found not in excluded:
                    return str(found)
            if not listed or listed[-1][2] < oldest or not page.get("next_page_uri"):
                return None
            url, params = f"{self.base_url}{page['next_page_uri']}", None
        raise TransientError(f"Twilio's message list holds more than {self.LOOKUP_PAGES} pages "
                             f"since {oldest.isoformat()}.")


# --- Status callbacks ---------------------------------------------------------------------------

# MessageStatus (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values)
EVENT_KINDS = {
    "accepted": Kind.QUEUED, "scheduled": Kind.QUEUED, "queued": Kind.QUEUED,
    "sending": Kind.QUEUED, "sent": Kind.SENT, "delivered": Kind.DELIVERED,
    "undelivered": Kind.FAILED, "failed": Kind.FAILED, "read": Kind.OPENED,
    "canceled": Kind.FAILED,
}

# ErrorCodes of a failed/undelivered message after which another SMS provider may deliver it:
# the route or account failed, not the number (https://www.twilio.com/docs/api/errors): 30001
# queue overflow, 30002 account suspended, 30008 unknown error, 30009 missing segment, 30010
# price exceeds max price, 30017 carrier network congestion, 30022/30023 10DLC throughput/daily
# cap, 30032 toll-free number not verified, 30034 unregistered 10DLC number. Anything else —
# the person unsubscribed (21610), the number is unreachable, unknown, a landline or blocked
# (30003-30007), or no code at all — leaves the message failed: a second provider would reach
# the same handset, or bill for nothing.
CARRIER_FAILOVER_CODES = frozenset({"30001", "30002", "30008", "30009", "30010", "30017",
                                    "30022", "30023", "30032", "30034"})


def twilio_signature(url: str, params: Mapping[str, Iterable[str]], auth_token: str) -> str:
    """Twilio's request signature: HMAC-SHA1 (key: the auth token) over the full URL followed by
    each POST parameter's name and value, sorted by name, base64-encoded."""
    payload = url + "".join(name + value for name in sorted(params)
                            for value in sorted(set(params[name])))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def from_twilio(params: dict, *, event_id: str = "", message_id: str = "") -> StatusEvent:
    """A StatusCallback's parameters (MessageSid, MessageStatus, ErrorCode…) → StatusEvent;
    `message_id` is Clarion's, from the (signed) callback URL."""
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    error = params.get("ErrorCode") or ""
    kind = EVENT_KINDS.get(status, Kind.UNKNOWN)
    return StatusEvent(
        provider_kind="twilio",
        kind=kind,
        provider_message_id=params.get("MessageSid") or params.get("SmsSid") or "",
        message_id=message_id,
        event_id=event_id,
        description=f"{status} (Twilio error {error})" if error else status,
        raw=params,
        carrier_refused=kind == Kind.FAILED and str(error) in CARRIER_FAILOVER_CODES,
    )


def _urls_twilio_may_have_signed(request: HttpRequest) -> list[str]:
    """The URL as this request says it was called, and as PUBLIC_URL says (behind a proxy
    the request may not know the public scheme and host)."""
    urls = [request.build_absolute_uri()]
    public = f"{settings.PUBLIC_URL.rstrip('/')}{request.get_full_path()}"
    if public not in urls:
        urls.append(public)
    return urls


def _form(request: HttpRequest) -> dict[str, list[str]]:
    params = QueryDict(request.body, encoding="utf-8")  # the raw body, as Twilio signed it
    return {name: params.getlist(name) for name in params}


@register_callback
class TwilioStatusCallback(StatusCallbackView):
    """Twilio's StatusCallback: a form POST signed with `X-Twilio-Signature` (over the full URL,
    whose `message_id` names Clarion's message, and the parameters)."""

    kind, label = "twilio", "Twilio"
    route = "twilio/<str:key>/status/"
    name = "webhook-twilio-status"

    def validate_request(self, request, config) -> None:
        auth_token = str(config.credentials.get("auth_token") or "")
        signature = request.headers.get("X-Twilio-Signature", "")
        lists = _form(request)
        valid = bool(auth_token and signature) and any(
            hmac.compare_digest(twilio_signature(url, lists, auth_token).encode(),
                                signature.encode())
            for url in _urls_twilio_may_have_signed(request))
        if not valid:
            raise CallbackRefused("Missing or invalid X-Twilio-Signature.")

    def parse_events(self, request, config) -> list[StatusEvent]:
        # The event id comes from the signed parameters (not the unsigned idempotency header),
        # so a replayed callback is recorded once.
        values = {name: values[-1] for name, values in _form(request).items()}
        return [from_twilio(values, event_id=":".join(
            values.get(name, "") for name in ("MessageSid", "MessageStatus", "ErrorCode")),
            # Clarion's id, in the URL Twilio signed (Twilio.status_callback_url_for).
            message_id=request.GET.get(MESSAGE_ID_PARAMETER, ""))]
