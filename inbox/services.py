"""Writes to the inbox. Every state change also sets the Message's engagement timestamps (so
workflow conditions can branch on "read") and is pushed to the recipient's sockets after commit."""

from django.db import transaction
from django.db.models import Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from notifications.models import Message, Recipient, Tenant

from . import realtime
from .events import ItemCreated, ItemsUpdated, ItemUpdated
from .models import InboxItem

ITEM_ACTIONS = ("seen", "read", "unread", "archived", "unarchived", "clicked")
BULK_ACTIONS = ("seen", "read", "archive_read")


def inbox_item_create(*, message: Message, content: dict) -> InboxItem:
    """The InboxItem of a new in_app Message (one per message: the column is unique). Called
    inside the run's transaction; sockets hear of it after commit."""
    tags = (message.step.config or {}).get("tags", []) if message.step_id else []
    item = InboxItem.objects.create(
        message=message,
        recipient=message.recipient,
        tenant=message.tenant,
        workflow_key=message.workflow.key,
        category=message.workflow.category,
        tags=[str(tag) for tag in tags] if isinstance(tags, list) else [],
        content=content,
    )
    realtime.publish_on_commit(ItemCreated.of(item))
    return item


def _item_changes(action: str, now) -> dict:
    return {
        "seen": {"seen_at": Coalesce("seen_at", now)},
        "read": {"seen_at": Coalesce("seen_at", now), "read_at": Coalesce("read_at", now)},
        "clicked": {"seen_at": Coalesce("seen_at", now), "read_at": Coalesce("read_at", now)},
        "unread": {"read_at": None},
        "archived": {"archived_at": Coalesce("archived_at", now)},
        "unarchived": {"archived_at": None},
    }[action]


def _message_changes(action: str, now) -> dict:
    """What an item's state change means for its Message (which has no archived state)."""
    changes = {
        "seen": {"seen_at": Coalesce("seen_at", now)},
        "read": {"seen_at": Coalesce("seen_at", now), "read_at": Coalesce("read_at", now)},
        "clicked": {"seen_at": Coalesce("seen_at", now), "read_at": Coalesce("read_at", now),
                    "clicked_at": Coalesce("clicked_at", now)},
        "unread": {"read_at": None},
    }.get(action, {})
    return {**changes, "updated_at": now} if changes else {}


@transaction.atomic
def inbox_item_mark(*, item: InboxItem, action: str) -> dict:
    """Mark one item seen, read, unread, archived, unarchived or clicked (read + the Message's
    clicked_at). Idempotent: a first timestamp is kept. Returns the item as the API shows it."""
    if action not in ITEM_ACTIONS:
        raise ValueError(f"unknown inbox action {action!r}")
    now = timezone.now()
    InboxItem.objects.filter(pk=item.pk).update(**_item_changes(action, now))
    message_changes = _message_changes(action, now)
    if item.message_id and message_changes:
        Message.objects.filter(pk=item.message_id).update(**message_changes)
    event = ItemUpdated.of(item)
    realtime.publish_on_commit(event)
    return event.item


@transaction.atomic
def inbox_mark_all(*, recipient: Recipient, tenant: Tenant | None, action: str) -> int:
    """Mark every unarchived item of the recipient (in one tenant, if given) seen or read, or
    archive every read one. Returns how many items changed."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk inbox action {action!r}")
    now = timezone.now()
    items = InboxItem.objects.filter(recipient=recipient, archived_at__isnull=True)
    if tenant is not None:
        items = items.filter(tenant=tenant)
    if action == "seen":
        items, item_action = items.filter(seen_at__isnull=True), "seen"
    elif action == "read":
        items, item_action = items.filter(read_at__isnull=True), "read"
    else:
        items, item_action = items.filter(read_at__isnull=False), "archived"
    message_changes = _message_changes(item_action, now)
    if message_changes:
        Message.objects.filter(
            Q(pk__in=items.exclude(message_id=None).values("message_id"))
        ).update(**message_changes)
    changed = items.update(**_item_changes(item_action, now))
    if changed:
        realtime.publish_on_commit(ItemsUpdated.of(
            recipient_id=recipient.pk, tenant_id=tenant.pk if tenant else None, action=action,
            at=now))
    return changed
