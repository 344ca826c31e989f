"""Reads several callers share: the API's documented JSON shapes of the domain."""

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, Prefetch, Q, QuerySet

from .models import (
    ApiKey,
    Approval,
    Channel,
    DeliveryAttempt,
    Message,
    MessageEvent,
    Recipient,
    Run,
    StepLog,
    Subscription,
    Tenant,
    Topic,
    Trigger,
    Workflow,
)
from .rendering.variables import recipient_variables, tenant_variables
from .workflow_json import step_children, step_export


def runs_visible_to(api_key: ApiKey) -> QuerySet[Run]:
    runs = Run.objects.all()
    return runs.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else runs


def recipients_visible_to(api_key: ApiKey) -> QuerySet[Recipient]:
    """Recipients are global; a tenant-restricted key sees those its tenant reached (a run) or
    holds (a subscription to one of its topics)."""
    recipients = Recipient.objects.all()
    if not api_key.tenant_id:
        return recipients
    tenant_id = api_key.tenant_id
    return recipients.filter(
        Exists(Run.objects.filter(recipient=OuterRef("pk"), tenant_id=tenant_id))
        | Exists(Subscription.objects.filter(recipient=OuterRef("pk"),
                                             topic__tenant_id=tenant_id)))


def triggers_visible_to(api_key: ApiKey) -> QuerySet[Trigger]:
    triggers = Trigger.objects.all()
    return triggers.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else triggers


def workflow_export(workflow: Workflow) -> dict:
    """The workflow as its PUT body: a PUT of this dict changes nothing."""
    top, children = step_children(workflow.steps.prefetch_related("templates__published_version"))
    steps = [step_export(step, children) for step in top]
    return {
        "key": workflow.key,
        "name": workflow.name,
        "category": workflow.category,
        "critical": workflow.critical,
        "active": workflow.active,
        "default_locale": workflow.default_locale,
        "data_schema": workflow.data_schema,
        "steps": steps,
    }


def recipient_detail(recipient: Recipient) -> dict:
    """The recipient as the API shows it: what templates see, plus channel data and times."""
    return {
        **recipient_variables(recipient),
        "channel_data": {
            (f"{item.channel}:{item.provider_kind}" if item.provider_kind else item.channel):
                item.data
            for item in recipient.channel_data.all()
        },
        "created_at": recipient.created_at,
        "updated_at": recipient.updated_at,
    }


def tenant_detail(tenant: Tenant) -> dict:
    return {**tenant_variables(tenant), "retention_days": tenant.retention_days}


def topic_detail(topic: Topic) -> dict:
    return {
        "key": topic.key,
        "name": topic.name,
        "tenant": topic.tenant.key if topic.tenant_id else None,
        "subscribers": topic.subscriptions.count(),
    }


def runs_with_history(runs: QuerySet[Run]) -> QuerySet[Run]:
    """`runs` with what a run's detail shows (api.serializers.RunDetailSerializer): messages
    with their attempts, then the timeline, each in order.

    Messages are read before the timeline: a delivery commits a message's outcome together with
    its timeline entry, so a message read as sent always has its `sent` entry below.
    """
    return runs.select_related("workflow", "workflow_version", "recipient",
                               "tenant").prefetch_related(
        Prefetch("messages", queryset=Message.objects.select_related("template_version")
                 .order_by("created_at")),
        Prefetch("messages__delivery_attempts",
                 queryset=DeliveryAttempt.objects.order_by("started_at", "id")),
        Prefetch("step_logs", queryset=StepLog.objects.order_by("id")),
        Prefetch("approvals", queryset=Approval.objects.select_related("recipient")
                 .order_by("created_at")),
    )


TRIGGER_RUNS_DEFAULT_LIMIT = 100
TRIGGER_RUNS_MAX_LIMIT = 1000


def trigger_runs_page(trigger: Trigger, *, limit: int,
                      after: "MessageLogCursor | None" = None) -> tuple[list[Run], str | None]:
    """A page of `trigger`'s runs, oldest first, by keyset on (created_at, id) after the cursor
    `after` (never OFFSET: a topic's 100,000th run costs what its first does), with their
    recipients; and the cursor of the next page, None on the last."""
    runs = trigger.runs.select_related("recipient")
    if after is not None:
        runs = runs.filter(Q(created_at__gt=after.created_at)
                           | Q(created_at=after.created_at, id__gt=after.id))
    limit = max(1, min(limit, TRIGGER_RUNS_MAX_LIMIT))
    rows = list(runs.order_by("created_at", "id")[:limit + 1])
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, MessageLogCursor(rows[-1].created_at, rows[-1].id).encode()


# --- The message log (GET /api/v1/messages) -----------------------------------------------

MESSAGE_LOG_MAX_LIMIT = 100
MESSAGE_LOG_DEFAULT_LIMIT = 20
# engagement filter value → the lookup it means
ENGAGEMENT = {
    "seen": {"seen_at__isnull": False}, "unseen": {"seen_at__isnull": True},
    "read": {"read_at__isnull": False}, "unread": {"read_at__isnull": True},
    "opened": {"opened_at__isnull": False}, "clicked": {"clicked_at__isnull": False},
}


def messages_visible_to(api_key: ApiKey) -> QuerySet[Message]:
    """Every message `api_key` may read: its tenant's only, for a tenant-restricted key."""
    messages = Message.objects.all()
    return messages.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else messages


@dataclass(frozen=True)
class MessageLogCursor:
    """Where a page of the message log stops: the last message's (created_at, id)."""

    created_at: datetime
    id: uuid.UUID

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> "MessageLogCursor":
        """The cursor `text` spells; ValueError if it is not one this API made."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            moment, _, message_id = raw.partition("|")
            created_at = datetime.fromisoformat(moment)
            if created_at.tzinfo is None:
                raise ValueError("naive")
            return cls(created_at, uuid.UUID(message_id))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise ValueError("Not a cursor this API gave: pass `page_info.after` as it "
                             "came.") from None


@dataclass(frozen=True)
class MessageLogPage:
    messages: list[Message]
    after: str | None  # the cursor of the next (older) page; None on the last page


def message_log_query(messages: QuerySet[Message], *, filters: dict,
                      after: MessageLogCursor | None = None) -> QuerySet[Message]:
    """`messages` (already scoped to what the caller may see) filtered, after the cursor,
    newest first by (created_at, id), with their workflow, recipient, tenant and run.

    `filters` may hold recipient (id), workflow (key), channel, status, tenant (Tenant),
    provider (key), created_after (inclusive), created_before (exclusive) and engagement (a key
    of ENGAGEMENT)."""
    lookups: dict = {}
    names = {"recipient": "recipient__external_id", "workflow": "workflow__key",
             "channel": "channel", "status": "status", "tenant": "tenant",
             "provider": "provider", "created_after": "created_at__gte",
             "created_before": "created_at__lt"}
    for name, lookup in names.items():
        if filters.get(name) is not None:
            lookups[lookup] = filters[name]
    if filters.get("engagement"):
        lookups.update(ENGAGEMENT[filters["engagement"]])
    messages = messages.filter(**lookups)
    if after is not None:
        messages = messages.filter(Q(created_at__lt=after.created_at)
                                   | Q(created_at=after.created_at, id__lt=after.id))
    return (messages.select_related("workflow", "recipient", "tenant", "run")
            .order_by("-created_at", "-id"))


def message_log_page(messages: QuerySet[Message], *, filters: dict, limit: int,
                     after: MessageLogCursor | None = None) -> MessageLogPage:
    """A page of message_log_query(...): at most `limit` (1 to MESSAGE_LOG_MAX_LIMIT) messages
    and the cursor of the next page. Keyset, never OFFSET: a page costs the same however deep
    it is (the message_log indexes serve the order)."""
    limit = max(1, min(limit, MESSAGE_LOG_MAX_LIMIT))
    rows = list(message_log_query(messages, filters=filters, after=after)[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = MessageLogCursor(rows[-1].created_at, rows[-1].id).encode() if more else None
    return MessageLogPage(rows, cursor)


def message_with_history(messages: QuerySet[Message]) -> QuerySet[Message]:
    """`messages` with what a message's detail shows: its attempts and provider events, in
    order, and its template version."""
    return messages.select_related("workflow", "recipient", "tenant", "run",
                                   "template_version").prefetch_related(
        Prefetch("delivery_attempts",
                 queryset=DeliveryAttempt.objects.order_by("started_at", "id")),
        Prefetch("events", queryset=MessageEvent.objects.order_by("occurred_at", "id")),
    )


def message_device_sets(message: Message) -> dict[str, str]:
    """A push message's device sets and what became of each in its latest delivery pass:
    ``{kind: state}``, the kind of each set's ChannelData row ("push" for the generic one),
    `state` one of sent, failed, retry, wait, deferred, unknown (the worker stopped during that
    set's call). Read from the message's latest timeline entry (one query); {} for other
    channels, for a message not split into sets (one kind of device), and while a resend has
    not been through a pass yet."""
    if message.channel != Channel.PUSH:
        return {}
    detail = (StepLog.objects.filter(run_id=message.run_id, detail__message_id=str(message.pk))
              .order_by("-id").values_list("detail", flat=True).first()) or {}
    sets = detail.get("device_sets")
    return dict(sets) if isinstance(sets, dict) else {}


def message_devices(message: Message) -> list[dict]:
    """A push message's result per device, the latest call to each device winning (the
    attempts' ``response["devices"]``, in the order they were made; read from the prefetched
    `delivery_attempts`): ``[{"kind", "provider", "device", "result", "status", "error",
    "at"}]`` with `result` one of accepted, deactivated, transient_error, permanent_error,
    `device` shortened as the ledger keeps it, `at` the call's start. Empty for other channels."""
    latest: dict[tuple[str, str], dict] = {}
    for attempt in message.delivery_attempts.all():
        devices = (attempt.response or {}).get("devices")
        if not isinstance(devices, list):
            continue
        for device in devices:
            key = (attempt.provider_kind, str(device.get("device", "")))
            latest.pop(key, None)  # re-inserted: the order is that of the latest calls
            latest[key] = {"kind": attempt.provider_kind, "provider": attempt.provider,
                           "device": key[1], "result": device.get("result", ""),
                           "status": device.get("status"), "error": device.get("error", ""),
                           "at": attempt.started_at}
    return list(latest.values())
