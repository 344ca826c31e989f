"""Delivery-status events from every provider, normalised into one shape.

Like django-anymail's AnymailTrackingEvent: each provider's callback becomes a `StatusEvent`
(what happened, to which provider message, when) and the provider's raw payload is kept beside it
in a `MessageEvent` row. Email events arrive through anymail's own `tracking` signal; Twilio and
Vonage callbacks through notifications/providers/webhooks.py.

A message's status only moves forward (see STATUS_RANK): a late "delivered" never undoes an
"opened", and the first time of each event is kept.
"""

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, TextField, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..models import Message, MessageEvent

logger = logging.getLogger(__name__)

Kind = MessageEvent.Kind
Status = Message.Status

# How far along a message is. A status event moves it only to a higher rank. A failure reported
# after "sent"/"delivered" wins (the carrier or mailbox said no), but once the person opened,
# clicked or complained, a late bounce cannot be the truer story. A complaint is the last word.
STATUS_RANK: dict[str, int] = {
    Status.QUEUED: 0,
    Status.SENDING: 0,
    Status.SENT: 1,
    Status.DELIVERED: 2,
    Status.BOUNCED: 3,
    Status.FAILED: 3,
    Status.OPENED: 4,
    Status.CLICKED: 5,
    Status.COMPLAINED: 6,
}

# Event kind → (Message status it leads to, timestamp field set the first time it happens).
EVENT_EFFECT: dict[str, tuple[str, str | None]] = {
    Kind.SENT: (Status.SENT, "sent_at"),
    Kind.DELIVERED: (Status.DELIVERED, "delivered_at"),
    Kind.BOUNCED: (Status.BOUNCED, "bounced_at"),
    Kind.FAILED: (Status.FAILED, None),
    Kind.REJECTED: (Status.FAILED, None),
    Kind.OPENED: (Status.OPENED, "opened_at"),
    Kind.CLICKED: (Status.CLICKED, "clicked_at"),
    Kind.COMPLAINED: (Status.COMPLAINED, "complained_at"),
}


@dataclass(frozen=True)
class StatusEvent:
    """One provider's report about one message, in Clarion's words."""

    provider: str
    kind: str
    provider_message_id: str = ""
    message_id: str = ""  # Clarion's Message id, when the provider echoes it back (metadata)
    occurred_at: datetime | None = None
    event_id: str = ""  # the provider's id for this event; else a digest of `raw`
    description: str = ""
    raw: dict = field(default_factory=dict)
    # The ProviderConfig whose secret verified the callback: only messages that provider was
    # called for may be moved by it (another tenant's provider must not reach them).
    sent_by: str = ""
    channel: str = ""  # only messages of this channel (email, for anymail's tracking)


def message_event_record(*, event: StatusEvent) -> MessageEvent | None:
    """Store the event once and move its message forward. None when the message is unknown
    (logged: a provider retries a failing callback, so the caller still answers 2xx)."""
    message = _message_for(event)
    if message is None:
        logger.warning("Status event for an unknown message ignored: %s %s %s",
                       event.provider, event.kind, event.provider_message_id or event.message_id)
        return None
    now = timezone.now()
    occurred_at = event.occurred_at or now
    event_id = event.event_id or _digest(event.raw)
    try:
        with transaction.atomic():
            record = MessageEvent.objects.create(
                message=message, provider=event.provider, kind=event.kind,
                provider_message_id=event.provider_message_id, event_id=event_id[:255],
                occurred_at=occurred_at, description=event.description[:2000], raw=event.raw,
            )
            _advance(message, event, occurred_at, now)
    except IntegrityError:
        # The provider re-sent an event we already have (same provider and event id).
        logger.info("Duplicate status event ignored: %s %s", event.provider, event_id)
        return MessageEvent.objects.filter(provider=event.provider, event_id=event_id[:255]).first()
    if message.channel == "sms" and event.kind in (Kind.FAILED, Kind.REJECTED):
        code = carrier_error_code(event)
        if code in CARRIER_FAILOVER_CODES.get(event.provider, ()):
            from ..delivery import message_fail_over_after_carrier_refusal

            message_fail_over_after_carrier_refusal(
                message_id=message.pk, provider_message_id=event.provider_message_id,
                reason=event.description or event.kind)
    return record


# Carrier error codes in a failed/undelivered SMS status callback after which another SMS
# provider may deliver the message: the provider's route or account failed, not the number.
# Anything else — the person unsubscribed (Twilio 21610), the number is unreachable, unknown,
# a landline or blocked (Twilio 30003-30007; Vonage 1-4, 6, 7, 9, 10, 12-15), or no code at all
# — leaves the message failed: a second provider would reach the same handset, or bill for
# nothing.
CARRIER_FAILOVER_CODES: dict[str, frozenset[str]] = {
    # https://www.twilio.com/docs/api/errors: 30001 queue overflow, 30002 account suspended,
    # 30008 unknown error, 30009 missing segment, 30010 price exceeds max price, 30017 carrier
    # network congestion, 30022/30023 10DLC throughput/daily cap, 30032 toll-free number not
    # verified, 30034 unregistered 10DLC number.
    "twilio": frozenset({"30001", "30002", "30008", "30009", "30010", "30017", "30022",
                         "30023", "30032", "30034"}),
    # Vonage SMS API delivery receipt err-code: 5 portability error, 8 network error,
    # 11 unroutable, 99 general error.
    "vonage": frozenset({"5", "8", "11", "99"}),
}


def carrier_error_code(event: StatusEvent) -> str:
    """The carrier's error code in an SMS status callback ("" when it has none)."""
    raw = event.raw or {}
    if event.provider == "twilio":
        return str(raw.get("ErrorCode") or "")
    if event.provider == "vonage":
        return str(raw.get("err-code") or "")
    return ""


def _message_for(event: StatusEvent) -> Message | None:
    messages = Message.objects.only("id", "status", "channel")
    if event.channel:
        messages = messages.filter(channel=event.channel)
    if event.sent_by:  # sent through it, or in flight to it (an attempt is written first)
        messages = messages.filter(Q(provider=event.sent_by)
                                   | Q(delivery_attempts__provider=event.sent_by)).distinct()
    if event.message_id:
        try:
            found = messages.filter(pk=uuid.UUID(event.message_id)).first()
        except ValueError:
            found = None
        if found is not None:
            return found
    if event.provider_message_id:
        return messages.filter(provider_message_id=event.provider_message_id).order_by(
            "-created_at").first()
    return None


def message_events_replay(*, message_id) -> None:
    """Apply a message's recorded events again, in order: for events that arrived while the
    message was still being sent (an ESP that echoes our id can call back before the sender has
    written `sent`), whose status change the sender's own write would otherwise hide."""
    message = Message.objects.only("id", "status", "provider_message_id").filter(
        pk=message_id).first()
    if message is None:
        return
    now = timezone.now()
    records = MessageEvent.objects.filter(message_id=message_id).order_by("occurred_at", "id")
    if message.provider_message_id:  # not events about an earlier send (before a failover)
        records = records.filter(provider_message_id__in=("", message.provider_message_id))
    for record in records:
        event = StatusEvent(provider=record.provider, kind=record.kind,
                            description=record.description)
        _advance(message, event, record.occurred_at, now)


def _advance(message: Message, event: StatusEvent, occurred_at: datetime, now: datetime) -> None:
    """One UPDATE: the status moves only up the ranks; each timestamp keeps its first value.
    A message still queued or being sent keeps its status (the sender writes `sent` next and
    would overwrite it; see message_events_replay); its timestamps are set all the same."""
    effect = EVENT_EFFECT.get(event.kind)
    if effect is None:
        return  # queued, deferred, unsubscribed…: recorded, but they do not change the message
    status, timestamp_field = effect
    unsent = (Status.QUEUED, Status.SENDING)
    lower = [s for s, rank in STATUS_RANK.items()
             if rank < STATUS_RANK[status] and s not in unsent]
    moves = When(status__in=lower, then=Value(status))
    changes = {"status": Case(moves, default=F("status")), "updated_at": Value(now)}
    if timestamp_field:
        changes[timestamp_field] = Coalesce(F(timestamp_field), Value(occurred_at))
    if status in (Status.FAILED, Status.BOUNCED) and event.description:
        changes["error"] = Case(When(status__in=lower, then=Value(event.description[:2000])),
                                default=F("error"), output_field=TextField())
    Message.objects.filter(pk=message.pk).update(**changes)


def _digest(raw) -> str:
    """A stable id for an event that carries none: the same payload is the same event."""
    return "sha256:" + hashlib.sha256(
        json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


def jsonable(value):
    """The raw payload as JSON (anymail hands some ESPs' events over as QueryDicts)."""
    if hasattr(value, "lists"):
        return {key: values[0] if len(values) == 1 else values for key, values in value.lists()}
    try:
        json.dumps(value)
    except TypeError:
        return json.loads(json.dumps(value, default=str))
    return value


# --- Mappings: each provider's words → StatusEvent ------------------------------------------

ANYMAIL_KINDS = {
    "queued": Kind.QUEUED, "sent": Kind.SENT, "rejected": Kind.REJECTED, "failed": Kind.FAILED,
    "bounced": Kind.BOUNCED, "deferred": Kind.DEFERRED, "delivered": Kind.DELIVERED,
    "autoresponded": Kind.UNKNOWN, "opened": Kind.OPENED, "clicked": Kind.CLICKED,
    "complained": Kind.COMPLAINED, "unsubscribed": Kind.UNSUBSCRIBED,
}


def from_anymail(event, esp_name: str) -> StatusEvent:
    """An anymail AnymailTrackingEvent → StatusEvent. Our emails carry their Message id in
    anymail metadata (delivery._email_for), so ESPs that echo metadata match it exactly."""
    metadata = event.metadata or {}
    description = " ".join(str(part) for part in (event.description, event.mta_response) if part)
    if event.click_url:
        description = description or event.click_url
    return StatusEvent(
        provider=esp_name.lower().replace(" ", "_"),
        kind=ANYMAIL_KINDS.get(event.event_type, Kind.UNKNOWN),
        provider_message_id=str(event.message_id or ""),
        message_id=str(metadata.get("clarion_message_id", "")),
        occurred_at=event.timestamp,
        event_id=str(event.event_id or ""),
        description=description,
        raw=jsonable(event.esp_event),
    )


def anymail_tracking_received(sender, event, esp_name, **kwargs) -> None:
    """Receiver of anymail's `tracking` signal (connected in NotificationsConfig.ready)."""
    message_event_record(event=replace(from_anymail(event, esp_name), channel="email"))


# Twilio MessageStatus (https://www.twilio.com/docs/messaging/api/message-resource#message-status-values)
TWILIO_KINDS = {
    "accepted": Kind.QUEUED, "scheduled": Kind.QUEUED, "queued": Kind.QUEUED,
    "sending": Kind.QUEUED, "sent": Kind.SENT, "delivered": Kind.DELIVERED,
    "undelivered": Kind.FAILED, "failed": Kind.FAILED, "read": Kind.OPENED,
    "canceled": Kind.FAILED,
}


def from_twilio(params: dict, *, event_id: str = "") -> StatusEvent:
    status = params.get("MessageStatus") or params.get("SmsStatus") or ""
    error = params.get("ErrorCode") or ""
    return StatusEvent(
        provider="twilio",
        kind=TWILIO_KINDS.get(status, Kind.UNKNOWN),
        provider_message_id=params.get("MessageSid") or params.get("SmsSid") or "",
        event_id=event_id,
        description=f"{status} (Twilio error {error})" if error else status,
        raw=params,
    )


# Vonage SMS API delivery receipts and Messages API status webhooks.
VONAGE_KINDS = {
    "delivered": Kind.DELIVERED, "expired": Kind.FAILED, "failed": Kind.FAILED,
    "rejected": Kind.REJECTED, "undeliverable": Kind.FAILED, "accepted": Kind.QUEUED,
    "buffered": Kind.QUEUED, "submitted": Kind.SENT, "read": Kind.OPENED,
    "unknown": Kind.UNKNOWN,
}


def from_vonage_receipt(params: dict) -> StatusEvent:
    """An SMS API delivery receipt (DLR): messageId, status, err-code, message-timestamp…"""
    status = (params.get("status") or "").lower()
    err = params.get("err-code") or ""
    occurred = _vonage_time(params.get("message-timestamp") or params.get("scts") or "")
    return StatusEvent(
        provider="vonage",
        kind=VONAGE_KINDS.get(status, Kind.UNKNOWN),
        provider_message_id=params.get("messageId") or "",
        message_id=params.get("client-ref") or "",  # Clarion's id, sent as client-ref
        occurred_at=occurred,
        description=f"{status} (err-code {err})" if err and err != "0" else status,
        raw=params,
    )


def from_vonage_message_status(payload: dict) -> StatusEvent:
    """A Messages API status webhook: message_uuid, status, timestamp, error{…}."""
    status = (payload.get("status") or "").lower()
    error = payload.get("error") if isinstance(payload.get("error"), dict) else {}
    detail = error.get("title") or error.get("detail") or ""
    return StatusEvent(
        provider="vonage",
        kind=VONAGE_KINDS.get(status, Kind.UNKNOWN),
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
