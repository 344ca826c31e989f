"""Recording events: called inside the transaction of the change that causes them.

An event is written only when an active endpoint subscribes to its type (for its tenant or for
all): one `Event` row and one `EventDelivery` per such endpoint, and a delivery task per
endpoint. With the ORM broker the task is a row of the same transaction; with another broker
it is pushed after commit, and the sweeper (events.tasks.sweep) finds deliveries whose task was
lost. Either way an event commits with its change or not at all: a worker that dies after the
commit leaves the delivery pending, never lost.

Callers pass what changed; the payload is built here. Without a subscribed endpoint recording
costs one query (the active endpoints) and writes nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from notifications.queue import enqueue_many

from .models import EVENT_TYPES, Event, EventDelivery, EventEndpoint


@dataclass(frozen=True)
class NewEvent:
    """An event to record: its type, the tenant it belongs to (a tenant's endpoints and the
    global ones receive it), the recipient's id (events about one recipient are delivered in
    order) and its `data`."""

    type: str
    tenant_id: int | None
    recipient: str
    data: dict = field(default_factory=dict)


def _subscribers(types: set[str]) -> list[tuple[int, int | None, set[str]]]:
    """(endpoint id, tenant id, event types) of the active endpoints wanting any of `types`."""
    rows = EventEndpoint.objects.filter(active=True).values_list("id", "tenant_id", "events")
    return [(pk, tenant_id, set(events)) for pk, tenant_id, events in rows
            if types & set(events or ())]


def events_record(events: Sequence[NewEvent], *, now: datetime | None = None) -> int:
    """Write `events` for the endpoints that subscribe to them and enqueue their delivery.
    Returns how many events were written (those no endpoint wants are not). ValueError for an
    unknown event type."""
    if not events:
        return 0
    unknown = {e.type for e in events} - set(EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {sorted(unknown)}")
    endpoints = _subscribers({e.type for e in events})
    if not endpoints:
        return 0
    now = now or timezone.now()
    rows, deliveries = [], []
    for new in events:
        targets = [pk for pk, tenant_id, types in endpoints
                   if new.type in types and tenant_id in (None, new.tenant_id)]
        if not targets:
            continue
        event = Event(type=new.type, tenant_id=new.tenant_id, recipient=new.recipient,
                      data=new.data, created_at=now)
        rows.append(event)
        deliveries += [EventDelivery(event=event, endpoint_id=pk, ordering_key=new.recipient,
                                     next_attempt_at=now) for pk in targets]
    if not rows:
        return 0
    Event.objects.bulk_create(rows)
    EventDelivery.objects.bulk_create(deliveries)
    endpoint_ids = sorted({d.endpoint_id for d in deliveries})
    enqueue_many("events.tasks.deliver_endpoint", [(pk,) for pk in endpoint_ids])
    return len(rows)


def wanted(types: Sequence[str]) -> set[str]:
    """Which of `types` some active endpoint subscribes to (one query): callers that must read
    more to build a payload ask this first."""
    endpoints = _subscribers(set(types))
    return {t for t in types if any(t in subscribed for _, _, subscribed in endpoints)}


def message_events_record(changes: Sequence[tuple[str, object, dict]], *,
                          now: datetime | None = None) -> int:
    """Record `message.*` events: `changes` holds (event type, message id, extra data). The
    payload names the message, its run, workflow, step, channel, status, recipient, tenant and
    provider. One query when no endpoint wants these types; two more when one does."""
    if not changes:
        return 0
    types = wanted([t for t, _, _ in changes])
    changes = [c for c in changes if c[0] in types]
    if not changes:
        return 0
    from notifications.models import Message

    rows = {row["id"]: row for row in Message.objects.filter(
        pk__in={message_id for _, message_id, _ in changes}).values(
        "id", "run_id", "workflow__key", "step_ref", "channel", "status",
        "recipient__external_id", "tenant_id", "tenant__key", "provider",
        "provider_message_id")}
    events = []
    for event_type, message_id, extra in changes:
        row = rows.get(message_id)
        if row is None:
            continue
        data = {"message_id": str(row["id"]), "run_id": str(row["run_id"]),
                "workflow": row["workflow__key"], "step": row["step_ref"],
                "channel": row["channel"], "status": row["status"],
                "recipient": row["recipient__external_id"], "tenant": row["tenant__key"],
                "provider": row["provider"], "provider_message_id": row["provider_message_id"],
                **extra}
        events.append(NewEvent(type=event_type, tenant_id=row["tenant_id"],
                               recipient=row["recipient__external_id"], data=data))
    return events_record(events, now=now)


# Message statuses the engine or delivery writes, and the event each one is.
MESSAGE_STATUS_EVENTS = {
    "sent": "message.sent",
    "failed": "message.failed",
    "suppressed": "message.suppressed",
    "undeliverable": "message.suppressed",
}


def message_event(event_type: str, message, **extra) -> NewEvent:
    """A `message.*` event of a Message whose workflow, recipient and tenant are loaded (as
    the engine holds them: no query)."""
    recipient = message.recipient.external_id
    data = {"message_id": str(message.id), "run_id": str(message.run_id),
            "workflow": message.workflow.key, "step": message.step_ref,
            "channel": message.channel, "status": message.status, "recipient": recipient,
            "tenant": message.tenant.key if message.tenant_id else None,
            "provider": message.provider, "provider_message_id": message.provider_message_id}
    if message.status in ("suppressed", "undeliverable", "failed") and message.error:
        data["reason"] = message.error
    return NewEvent(type=event_type, tenant_id=message.tenant_id, recipient=recipient,
                    data={**data, **extra})


def run_event(event_type: str, run) -> NewEvent:
    """A `run.*` event of a Run whose workflow, recipient and tenant are loaded."""
    recipient = run.recipient.external_id
    return NewEvent(type=event_type, tenant_id=run.tenant_id, recipient=recipient, data={
        "run_id": str(run.id), "trigger_id": str(run.trigger_id),
        "workflow": run.workflow.key, "status": run.status, "recipient": recipient,
        "tenant": run.tenant.key if run.tenant_id else None})
