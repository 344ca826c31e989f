"""The inbox's realtime events: what changed in one recipient's inbox, as small typed objects.

Each event is built here, published once its transaction commits (`realtime.publish_on_commit`),
crosses the channel layer as a plain dict (`message()`, read back with `from_message()`), and
becomes one websocket frame (`frame()`), followed by that socket's `CountsChanged`:

- ItemCreated  → `{"type": "item.created", "item": {…}}`
- ItemUpdated  → `{"type": "item.updated", "item": {…}}` (read, archived… in another tab)
- ItemsUpdated → `{"type": "items.updated", "action": …, "at": iso time, "up_to": id, "tenant":
  key or null}` (a bulk action on the items up to `up_to`, in `tenant` when not null)
- CountsChanged → `{"type": "counts.changed", "meta": {unread_count, unseen_count, total_count}}`
"""

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import ClassVar

from .models import InboxItem
from .selectors import ITEM_FIELDS, item_detail, item_json

# The one channel-layer message type; the consumer's handler is `inbox_event`.
LAYER_TYPE = "inbox.event"


@dataclass(frozen=True)
class InboxEvent:
    """A change in the inbox of recipient `recipient_id` (pk), in tenant `tenant_id` (pk) or in
    none (None)."""

    kind: ClassVar[str] = ""
    recipient_id: int
    tenant_id: int | None

    def visible_to(self, tenant_id: int | None) -> bool:
        """Whether a socket scoped to `tenant_id` (None: every tenant) hears of it."""
        return tenant_id is None or tenant_id == self.tenant_id

    def message(self) -> dict:
        """The event as a channel-layer message (JSON- and msgpack-safe)."""
        return {"type": LAYER_TYPE, "event": self.kind, **asdict(self)}

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
    `up_to`; tenant_id None: every tenant (`tenant` is the key of the one it covered)."""

    kind: ClassVar[str] = "items.updated"
    action: str
    at: str  # ISO 8601, UTC
    up_to: int
    tenant: str | None

    @classmethod
    def of(cls, *, recipient_id: int, tenant_id: int | None, action: str, up_to: int,
           at: datetime, tenant_key: str | None = None) -> "ItemsUpdated":
        return cls(recipient_id=recipient_id, tenant_id=tenant_id, action=action,
                   at=at.isoformat(), up_to=up_to, tenant=tenant_key)

    def visible_to(self, tenant_id: int | None) -> bool:
        return self.tenant_id is None or super().visible_to(tenant_id)

    def frame(self) -> dict:
        return {"type": self.kind, "action": self.action, "at": self.at, "up_to": self.up_to,
                "tenant": self.tenant}


@dataclass(frozen=True)
class CountsChanged:
    """A socket's counts, computed for its own scope after each change (never published)."""

    kind: ClassVar[str] = "counts.changed"
    meta: dict  # inbox.selectors.inbox_counts

    def frame(self) -> dict:
        return {"type": self.kind, "meta": self.meta}


EVENTS = {cls.kind: cls for cls in (ItemCreated, ItemUpdated, ItemsUpdated)}


def from_message(message: dict) -> InboxEvent:
    """The event a channel-layer message (InboxEvent.message()) carries."""
    cls = EVENTS[message["event"]]
    return cls(**{f.name: message[f.name] for f in fields(cls)})
