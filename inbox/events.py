"""The inbox's realtime events: what changed in one recipient's inbox, as small typed objects.

Each event is built here, published once its transaction commits (`realtime.publish_on_commit`),
crosses the channel layer as a plain dict (`message()`, read back with `from_message()`), and
becomes one websocket frame (`frame()`), followed by that socket's `CountsChanged`:

- ItemCreated  → `{"type": "item.created", "item": {…}}`
- ItemUpdated  → `{"type": "item.updated", "item": {…}}` (read, archived… in another tab)
- ItemsUpdated → `{"type": "items.updated", "action": …, "at": iso time, "up_to": id}` (a bulk
  action on the items up to `up_to`), with `"tenant": key or null` when it covered one tenant's
  items (null: the items without a tenant)
- CountsChanged → `{"type": "counts.changed", "meta": {unread_count, unseen_count, total_count}}`
- Resync → `{"type": "resync", "before": id}`: pushes to this socket were lost; fetch the feed's
  items newer than `before` (its `before` cursor) again
"""

from dataclasses import dataclass, fields
from datetime import datetime
from typing import ClassVar

from .models import InboxItem
from .selectors import ITEM_FIELDS, TenantScope, item_detail, item_json, scope_includes

# The one channel-layer message type; the consumer's handler is `inbox_event`.
LAYER_TYPE = "inbox.event"


@dataclass(frozen=True)
class InboxEvent:
    """A change in the inbox of recipient `recipient_id` (pk), in tenant `tenant_id` (pk) or in
    none (None)."""

    kind: ClassVar[str] = ""
    recipient_id: int
    tenant_id: int | None

    def visible_to(self, scope: TenantScope) -> bool:
        """Whether a socket whose principal reads `scope` (a Tenant, NO_TENANT, or None: every
        tenant) hears of it."""
        return scope_includes(scope, self.tenant_id)

    def message(self) -> dict:
        """The event as a channel-layer message (JSON- and msgpack-safe). Its values are the
        event's own, not copies (dataclasses.asdict copied each item's content, a fan-out's
        thousands of them): the layer serializes it, or (in memory) copies it."""
        return {"type": LAYER_TYPE, "event": self.kind,
                **{field.name: getattr(self, field.name) for field in fields(self)}}

    def frame(self) -> dict:
        """The websocket frame sent to a browser."""
        raise NotImplementedError


@dataclass(frozen=True)
class ItemCreated(InboxEvent):
    kind: ClassVar[str] = "item.created"
    item: dict  # inbox.selectors.item_json

    @classmethod
    def of(cls, item: InboxItem) -> "ItemCreated":
        """The event of an item just created (from the instance: no query)."""
        row = {name: getattr(item, name) for name in ITEM_FIELDS}
        row["tenant_key"] = item.tenant.key if item.tenant_id else None
        return cls(recipient_id=item.recipient_id, tenant_id=item.tenant_id,
                   item=item_json(row))

    def frame(self) -> dict:
        return {"type": self.kind, "item": self.item}


@dataclass(frozen=True)
class ItemUpdated(InboxEvent):
    kind: ClassVar[str] = "item.updated"
    item: dict  # inbox.selectors.item_json

    @classmethod
    def of(cls, item: InboxItem) -> "ItemUpdated":
        """The event of an item just changed (read back from the database)."""
        return cls(recipient_id=item.recipient_id, tenant_id=item.tenant_id,
                   item=item_detail(item))

    def frame(self) -> dict:
        return {"type": self.kind, "item": self.item}


@dataclass(frozen=True)
class ItemsUpdated(InboxEvent):
    """A bulk action (mark all seen / read, archive all read) of the items with ids up to
    `up_to`: of every tenant (`every_tenant`), else of tenant `tenant_id` (key `tenant`), or of
    the items without a tenant (both None)."""

    kind: ClassVar[str] = "items.updated"
    action: str
    at: str  # ISO 8601, UTC
    up_to: int
    tenant: str | None
    every_tenant: bool

    @classmethod
    def of(cls, *, recipient_id: int, scope: TenantScope, action: str, up_to: int,
           at: datetime) -> "ItemsUpdated":
        return cls(recipient_id=recipient_id, tenant_id=getattr(scope, "pk", None),
                   action=action, at=at.isoformat(), up_to=up_to,
                   tenant=getattr(scope, "key", None), every_tenant=scope is None)

    def visible_to(self, scope: TenantScope) -> bool:
        return self.every_tenant or super().visible_to(scope)

    def frame(self) -> dict:
        """`tenant` is present when the action covered one scope: the tenant's key, or null for
        the items without a tenant."""
        frame = {"type": self.kind, "action": self.action, "at": self.at, "up_to": self.up_to}
        return frame if self.every_tenant else {**frame, "tenant": self.tenant}


@dataclass(frozen=True)
class CountsChanged:
    """A socket's counts, computed for its own scope after each change (never published)."""

    kind: ClassVar[str] = "counts.changed"
    meta: dict  # inbox.selectors.inbox_counts

    def frame(self) -> dict:
        return {"type": self.kind, "meta": self.meta}


@dataclass(frozen=True)
class Resync:
    """A socket's own notice that item pushes to it were lost (never published): the client
    fetches the feed with `before=<before>` (every item newer than that id), page after page."""

    kind: ClassVar[str] = "resync"
    before: int

    def frame(self) -> dict:
        return {"type": self.kind, "before": self.before}


EVENTS = {cls.kind: cls for cls in (ItemCreated, ItemUpdated, ItemsUpdated)}
# Each event's field names, read once: dataclasses.fields() per message was 7 % of a web
# process's CPU over a burst of items (bench/websockets.py --profile-gil).
_FIELD_NAMES = {kind: tuple(f.name for f in fields(cls)) for kind, cls in EVENTS.items()}


def from_message(message: dict) -> InboxEvent:
    """The event a channel-layer message (InboxEvent.message()) carries; KeyError for an
    unknown event or a missing field."""
    kind = message["event"]
    return EVENTS[kind](**{name: message[name] for name in _FIELD_NAMES[kind]})
