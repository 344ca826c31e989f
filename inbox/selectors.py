"""Reads of the inbox: one recipient's feed (keyset pages on id, never OFFSET) and its counts."""

from dataclasses import dataclass, field

from django.db import connections
from django.db.models import Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from notifications.models import Recipient, Tenant

from .models import InboxItem

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
STATUSES = ("all", "unread", "read", "unseen", "seen")
ARCHIVED = ("exclude", "include", "only")

# The columns an item is shown with; the tenant's key comes through a join on its primary key.
ITEM_FIELDS = ("id", "workflow_key", "category", "tags", "content", "created_at", "seen_at",
               "read_at", "archived_at", "tenant_id")


@dataclass(frozen=True)
class FeedFilters:
    status: str = "all"
    archived: str = "exclude"
    tenant: Tenant | None = None
    category: str | None = None
    tags: tuple[str, ...] = ()


@dataclass
class FeedPage:
    items: list[dict]
    after: str | None  # cursor of the next, older page; None when this page is the last
    before: str | None  # cursor for newer items than this page's first
    meta: dict = field(default_factory=dict)


def _iso(value):
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def item_json(row: dict) -> dict:
    """An item as the API, the websocket and the widget show it (JSON-safe: it also crosses
    the channel layer)."""
    content = row["content"] or {}
    return {
        "id": row["id"],
        "body": content.get("body", ""),
        "action_url": content.get("action_url", ""),
        "avatar": content.get("avatar", ""),
        "content": content,
        "workflow": row["workflow_key"],
        "category": row["category"],
        "tags": row["tags"] or [],
        "tenant": row["tenant_key"],
        "created_at": _iso(row["created_at"]),
        "seen_at": _iso(row["seen_at"]),
        "read_at": _iso(row["read_at"]),
        "archived_at": _iso(row["archived_at"]),
    }


def item_rows(queryset: QuerySet[InboxItem]) -> QuerySet:
    return queryset.values(*ITEM_FIELDS, tenant_key=F("tenant__key"))


def item_detail(item: InboxItem) -> dict:
    return item_json(item_rows(InboxItem.objects.filter(pk=item.pk)).get())


def _has_tag(queryset: QuerySet[InboxItem], tag: str) -> QuerySet[InboxItem]:
    """Items whose `tags` list holds `tag`: jsonb containment on PostgreSQL, json_each on
    SQLite (which has no JSON `contains` lookup)."""
    if connections[queryset.db].vendor == "sqlite":
        return queryset.extra(  # constant SQL; the tag is a parameter
            where=["EXISTS (SELECT 1 FROM json_each(inbox_inboxitem.tags) "
                   "WHERE json_each.value = %s)"],
            params=[tag],
        )
    return queryset.filter(tags__contains=[tag])


def inbox_items_visible(*, recipient: Recipient, tenant: Tenant | None) -> QuerySet[InboxItem]:
    """Every item a principal may touch: its recipient's, in its token's tenant if it has one."""
    queryset = InboxItem.objects.filter(recipient=recipient)
    return queryset.filter(tenant=tenant) if tenant is not None else queryset


def inbox_feed(*, recipient: Recipient, filters: FeedFilters = FeedFilters(),
               limit: int = DEFAULT_LIMIT, after: int | None = None,
               before: int | None = None) -> FeedPage:
    """A page of the feed, newest first. `after` continues to older items (the next page),
    `before` returns the newer items closest to that cursor (re-sync after a reconnect)."""
    limit = max(1, min(limit, MAX_LIMIT))
    queryset = inbox_items_visible(recipient=recipient, tenant=filters.tenant)
    if filters.archived == "exclude":
        queryset = queryset.filter(archived_at__isnull=True)
    elif filters.archived == "only":
        queryset = queryset.filter(archived_at__isnull=False)
    status_filter = {
        "unread": Q(read_at__isnull=True), "read": Q(read_at__isnull=False),
        "unseen": Q(seen_at__isnull=True), "seen": Q(seen_at__isnull=False),
    }.get(filters.status)
    if status_filter is not None:
        queryset = queryset.filter(status_filter)
    if filters.category:
        queryset = queryset.filter(category=filters.category)
    for tag in filters.tags:
        queryset = _has_tag(queryset, tag)
    if before is not None:
        rows = list(item_rows(queryset.filter(id__gt=before).order_by("id"))[:limit + 1])
        more_newer = len(rows) > limit
        rows = rows[:limit][::-1]
        items = [item_json(row) for row in rows]
        return FeedPage(
            items=items,
            after=str(rows[-1]["id"]) if rows else str(before),
            before=str(rows[0]["id"]) if rows else str(before),
            meta={"has_more_newer": more_newer},
        )
    if after is not None:
        queryset = queryset.filter(id__lt=after)
    rows = list(item_rows(queryset.order_by("-id"))[:limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedPage(
        items=[item_json(row) for row in rows],
        after=str(rows[-1]["id"]) if more else None,
        before=str(rows[0]["id"]) if rows else (str(after) if after is not None else None),
    )


def _count(queryset: QuerySet[InboxItem]) -> Coalesce:
    counted = (queryset.filter(recipient=OuterRef("pk")).order_by().values("recipient")
               .annotate(n=Count("*")).values("n"))
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def inbox_counts(*, recipient: Recipient, tenant: Tenant | None = None) -> dict:
    """unread, unseen and total (not archived) counts in one query: three index-only counts on
    the partial indexes."""
    active = InboxItem.objects.filter(archived_at__isnull=True)
    if tenant is not None:
        active = active.filter(tenant=tenant)
    return (
        Recipient.objects.filter(pk=recipient.pk)
        .values(
            unread_count=_count(active.filter(read_at__isnull=True)),
            unseen_count=_count(active.filter(seen_at__isnull=True)),
            total_count=_count(active),
        )
        .get()
    )
