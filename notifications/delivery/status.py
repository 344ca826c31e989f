"""What providers report about messages, applied: the message status state machine.

Each provider's callback becomes a normalised `StatusEvent` in that provider's own module
(providers/twilio.py, vonage.py; anymail's tracking for email,
providers/anymail_tracking.py); here it is stored once, with the raw payload, in a
`MessageEvent` row, and moves its Message forward. Events that arrive while the message is
still being sent are replayed once the sender has written `sent`; an SMS the carrier refused
for a reason another provider may not meet is failed over.

A message's status only moves forward (see STATUS_RANK): a late "delivered" never undoes an
"opened", and the first time of each event is kept.
"""

import hashlib
import json
import logging
import uuid
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, TextField, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.rollups import message_facts_record
from events.outbox import message_events_record

from ..models import DeliveryAttempt, Message, MessageEvent, StepLog
from ..providers.anymail_tracking import from_anymail
from ..providers.base import kept_provider_message_id
from ..providers.callbacks import StatusEvent
from ..queue import enqueue
from .pool import ProviderPool

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

# Provider event kinds that are outbound events (events/).
EVENT_TYPES: dict[str, str] = {
    Kind.DELIVERED: "message.delivered",
    Kind.BOUNCED: "message.bounced",
    Kind.FAILED: "message.failed",
    Kind.REJECTED: "message.failed",
    Kind.CLICKED: "message.clicked",
}

# Provider event kinds counted in the analytics rollups (an email open counts as read).
ANALYTICS_METRICS: dict[str, str] = {
    Kind.DELIVERED: "delivered",
    Kind.BOUNCED: "bounced",
    Kind.CLICKED: "clicked",
    Kind.OPENED: "read",
}


def message_event_record(*, event: StatusEvent) -> MessageEvent | None:
    """Store the event once and move its message forward. None when the message is unknown
    (logged: a provider retries a failing callback, so the caller still answers 2xx)."""
    message = _message_for(event)
    if message is None:
        logger.warning("Status event for an unknown message ignored: %s %s %s",
                       event.provider_kind, event.kind,
                       event.provider_message_id or event.message_id)
        return None
    now = timezone.now()
    occurred_at = event.occurred_at or now
    event_id = event.event_id or _digest(event.raw)
    try:
        with transaction.atomic():
            record = MessageEvent.objects.create(
                message=message, provider_kind=event.provider_kind, kind=event.kind,
                provider_message_id=kept_provider_message_id(event.provider_message_id),
                event_id=event_id[:255],
                occurred_at=occurred_at, description=event.description[:2000], raw=event.raw,
            )
            _advance(message, event, occurred_at, now)
            if event.kind in EVENT_TYPES:
                message_events_record([(EVENT_TYPES[event.kind], message.pk, {
                    "occurred_at": occurred_at.isoformat(), "description": event.description})])
            if event.kind in ANALYTICS_METRICS:
                message_facts_record([(ANALYTICS_METRICS[event.kind], message.pk)], at=now)
    except IntegrityError:
        # The provider re-sent an event we already have (same provider and event id).
        logger.info("Duplicate status event ignored: %s %s", event.provider_kind, event_id)
        return MessageEvent.objects.filter(provider_kind=event.provider_kind,
                                           event_id=event_id[:255]).first()
    if (message.channel == "sms" and event.kind in (Kind.FAILED, Kind.REJECTED)
            and event.carrier_refused):
        message_fail_over_after_carrier_refusal(
            message_id=message.pk, provider_message_id=event.provider_message_id,
            reason=event.description or event.kind)
    return record


def _message_for(event: StatusEvent) -> Message | None:
    messages = Message.objects.only("id", "status", "channel")
    if event.channel:
        messages = messages.filter(channel=event.channel)
    if event.provider_key:  # sent through it, or in flight to it (an attempt is written first)
        messages = messages.filter(Q(provider=event.provider_key)
                                   | Q(delivery_attempts__provider=event.provider_key)).distinct()
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
        event = StatusEvent(provider_kind=record.provider_kind, kind=record.kind,
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


def anymail_tracking_received(sender, event, esp_name, **kwargs) -> None:
    """Receiver of anymail's `tracking` signal (connected in NotificationsConfig.ready)."""
    message_event_record(event=from_anymail(event, esp_name))


# --- A carrier that refused an accepted message ------------------------------------------------

def message_fail_over_after_carrier_refusal(*, message_id, provider_message_id: str,
                                            reason: str) -> bool:
    """An SMS provider accepted the message, then reported that the carrier did not deliver it
    for a reason another provider may not meet (`StatusEvent.carrier_refused`, from each kind's
    CARRIER_FAILOVER_CODES): queue it again for the next provider. Once per send of the message
    at most (a resend is a new send), only while it is still `failed` from that very provider
    call, and only when a provider its current send has not tried is left; the refusal is a
    `carrier_refused` DeliveryAttempt (which makes delivery skip that provider) and a
    `retrying` timeline entry. Returns whether it failed over."""
    now = timezone.now()
    with transaction.atomic():
        message = (Message.objects.select_for_update()
                   .filter(pk=message_id, status=Message.Status.FAILED,
                           provider_message_id=provider_message_id).first())
        if message is None or not provider_message_id:
            return False
        attempts = DeliveryAttempt.objects.filter(message=message,
                                                  send_number=message.send_number)
        if attempts.filter(outcome=DeliveryAttempt.Outcome.CARRIER_REFUSED).exists():
            return False  # this send failed over once already: never a third call
        tried = set(attempts.values_list("provider", flat=True))
        left = [c.key for c in ProviderPool().candidates(message.channel, message.tenant_id)
                if c.key not in tried]
        if not left:
            return False
        kind = (attempts.filter(provider=message.provider)
                .values_list("provider_kind", flat=True).last())
        DeliveryAttempt.objects.create(
            message=message, provider=message.provider, provider_kind=kind or "", started_at=now,
            send_number=message.send_number, duration_ms=0,
            outcome=DeliveryAttempt.Outcome.CARRIER_REFUSED,
            error=f"Accepted, then not delivered by the carrier: {reason}"[:2000],
            response={"message_id": provider_message_id})
        Message.objects.filter(pk=message.pk, status=Message.Status.FAILED).update(
            status=Message.Status.QUEUED, next_attempt_at=None, updated_at=now,
            provider_message_id="", error=f"{message.provider}: {reason}"[:2000])
        StepLog.objects.create(
            run_id=message.run_id, step_ref=message.step_ref, event=StepLog.Event.RETRYING,
            detail={"message_id": str(message.id), "provider": message.provider,
                    "provider_message_id": provider_message_id, "error": reason[:500],
                    "reason": "the carrier did not deliver it; failing over", "next": left[0]})
        enqueue("notifications.tasks.deliver_message", str(message.id))
    return True
