"""Writes to the inbox. Every state change also sets the Message's engagement timestamps (so
workflow conditions can branch on "read") and is pushed to the recipient's sockets after commit."""

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.rollups import message_facts_record
from clarion.db import instance_maker, rows_copy
from events.outbox import message_events_record
from notifications.crypto import encrypt_json
from notifications.models import Message, Recipient, Tenant

from . import realtime
from .events import ItemCreated, ItemsUpdated, ItemUpdated
from .models import InboxItem
from .selectors import TenantScope, inbox_items_visible

ITEM_ACTIONS = ("seen", "read", "unread", "archived", "unarchived", "clicked")
BULK_ACTIONS = ("seen", "read", "archive_read")
# Ids per UPDATE of a bulk mark: well under SQLite's 32,766 bound variables.
BULK_BATCH = 500
# The first key of the advisory lock that orders one recipient's new items (the second is the
# recipient's pk); any constant other Clarion locks do not use.
ITEM_ORDER_LOCK = 7_001


def _hold_item_order(recipient_pks: list[int]) -> None:
    """Until this transaction ends, no other transaction adds an item for these recipients.

    An item's id is taken at INSERT, and on PostgreSQL concurrent transactions can commit out of
    id order: an item with a lower id could become visible after a client has shown a higher
    one, and then fall under that client's `up_to` (bulk marks) or below its `before` cursor
    (re-sync). Taking the ids under this lock makes one recipient's items commit in id order.
    The locks are taken in one statement, in ascending order (two batches never wait on each
    other in a cycle). SQLite has one writer at a time: there, ids always commit in order."""
    if connection.vendor != "postgresql" or not recipient_pks:
        return
    keys = sorted({pk % (2**31 - 1) for pk in recipient_pks})
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_advisory_xact_lock(%s, key)) FROM unnest(%s::int[]) "
                       "AS key", [ITEM_ORDER_LOCK, keys])


def inbox_items_create(*, items: Sequence[tuple[Message, dict]],
                       new: bool = False) -> list[InboxItem]:
    """The InboxItems of new in_app Messages, given as (message, content) with each message's
    recipient, tenant, workflow and step loaded: one INSERT for all, inside the runs'
    transaction, whose commit releases the recipients' item-order locks. A message that has its
    item already (a replay) gets no second one (the column is unique: the INSERT skips it).
    `new`: the messages were created in this transaction, so none has an item: their ids taken
    from the sequence and the rows copied in (clarion.db.rows_copy: a conflict is an
    IntegrityError). Returns the items (pk set) of
    `items`' messages; sockets hear of them after commit, in one batch
    (realtime.publish_many_on_commit)."""
    if not items:
        return []
    _hold_item_order([message.recipient_id for message, _ in items])
    rows = []
    for message, content in items:
        tags = (message.step.config or {}).get("tags", []) if message.step_id else []
        rows.append(instance_maker(InboxItem)(
            {"message": message, "tenant": message.tenant}, recipient_id=message.recipient_id,
            workflow_key=message.workflow.key, category=message.workflow.category,
            tags=[str(tag) for tag in tags] if isinstance(tags, list) else [],
            content=content))
    if new:
        rows_copy(InboxItem, rows, returning_ids=True)
    else:
        InboxItem.objects.bulk_create(rows, ignore_conflicts=True)
        stored = dict(InboxItem.objects.filter(message_id__in=[m.id for m, _ in items])
                      .values_list("message_id", "id"))
        for row in rows:
            row.pk = stored.get(row.message_id)
        rows = [row for row in rows if row.pk is not None]
    realtime.publish_many_on_commit([ItemCreated.of(row) for row in rows])
    return rows


def inbox_item_create(*, message: Message, content: dict) -> InboxItem:
    """The InboxItem of a new in_app Message (one per message: the column is unique); see
    inbox_items_create."""
    return inbox_items_create(items=[(message, content)])[0]


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


def _events_of(item: InboxItem, action: str) -> list[str]:
    """The outbound events a mark makes: each engagement the first time it happens (the item
    as read before the mark says which are first), every click."""
    first = {"message.seen": item.seen_at is None, "message.read": item.read_at is None,
             "message.archived": item.archived_at is None, "message.clicked": True}
    wanted = {"seen": ["message.seen"], "read": ["message.seen", "message.read"],
              "clicked": ["message.seen", "message.read", "message.clicked"],
              "archived": ["message.archived"]}.get(action, [])
    return [event_type for event_type in wanted if first[event_type]]


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
    if item.message_id:
        happened = _events_of(item, action)
        message_events_record([(event_type, item.message_id, {}) for event_type in happened])
        message_facts_record([(event_type.split(".")[1], item.message_id)
                              for event_type in happened if event_type != "message.archived"],
                             at=now)
    event = ItemUpdated.of(item)
    realtime.publish_on_commit(event)
    return event.item


@transaction.atomic
def inbox_mark_all(*, recipient: Recipient, tenant: TenantScope, action: str,
                   up_to: int) -> int:
    """Mark the recipient's unarchived items in `tenant` (a TenantScope: one tenant, NO_TENANT,
    or None for all) seen or read, or archive the read ones, among those with an id up to
    `up_to`: the newest item the client has shown. Items that arrived since (higher ids: see
    `inbox_item_create`) are left as they are.

    The items are selected once, locked (PostgreSQL), and both the InboxItems and their Messages
    are updated by those ids, so the two tables always change the same rows. Returns how many
    items changed. ValueError for an unknown action."""
    if action not in BULK_ACTIONS:
        raise ValueError(f"unknown bulk inbox action {action!r}")
    now = timezone.now()
    items = inbox_items_visible(recipient=recipient, tenant=tenant).filter(
        archived_at__isnull=True, id__lte=up_to)
    if action == "seen":
        items, item_action = items.filter(seen_at__isnull=True), "seen"
    elif action == "read":
        items, item_action = items.filter(read_at__isnull=True), "read"
    else:
        items, item_action = items.filter(read_at__isnull=False), "archived"
    rows = list(items.select_for_update().order_by("id").values_list("id", "message_id"))
    item_changes, message_changes = _item_changes(item_action, now), _message_changes(
        item_action, now)
    for start in range(0, len(rows), BULK_BATCH):
        batch = rows[start:start + BULK_BATCH]
        InboxItem.objects.filter(pk__in=[item_id for item_id, _ in batch]).update(**item_changes)
        message_ids = [message_id for _, message_id in batch if message_id is not None]
        if message_changes and message_ids:
            Message.objects.filter(pk__in=message_ids).update(**message_changes)
        message_events_record([(f"message.{item_action}", message_id, {})
                               for message_id in message_ids])
        if item_action != "archived":
            message_facts_record([(item_action, message_id) for message_id in message_ids],
                                 at=now)
    if rows:
        realtime.publish_on_commit(ItemsUpdated.of(
            recipient_id=recipient.pk, scope=tenant, action=action, up_to=up_to, at=now))
    return len(rows)


def tenant_inbox_secret_rotate(*, tenant: Tenant, keep_previous_seconds: int | None = None,
                               now: datetime | None = None) -> str:
    """Give `tenant` a new inbox secret and return it (shown once: only its encrypted form is
    stored). HMACs made with the secret it replaces stay valid for `keep_previous_seconds`
    (default INBOX_SECRET_ROTATION_SECONDS; 0: not at all), so the app can deploy the new one; a
    secret older than that is dropped. `now` (aware) is when the rotation happens."""
    now = now or timezone.now()
    keep = (settings.INBOX_SECRET_ROTATION_SECONDS if keep_previous_seconds is None
            else keep_previous_seconds)
    if keep < 0:
        raise ValueError("keep_previous_seconds must be 0 or more")
    with transaction.atomic():
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        current = locked.inbox_secrets.get("current")
        previous = current if current and keep > 0 else None
        secret = secrets.token_urlsafe(32)
        locked.inbox_secrets_encrypted = encrypt_json({"current": secret, "previous": previous})
        locked.inbox_secret_rotated_at = now
        locked.inbox_previous_secret_expires_at = (now + timedelta(seconds=keep)
                                                   if previous else None)
        locked.save(update_fields=["inbox_secrets_encrypted", "inbox_secret_rotated_at",
                                   "inbox_previous_secret_expires_at", "updated_at"])
        realtime.publish_secrets_changed_on_commit(locked)
    for name in ("inbox_secrets_encrypted", "inbox_secret_rotated_at",
                 "inbox_previous_secret_expires_at", "updated_at"):
        setattr(tenant, name, getattr(locked, name))
    return secret
