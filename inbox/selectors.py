"""Reads of the inbox: one recipient's feed (keyset pages on id, never OFFSET) and its counts."""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db import connection
from django.db.models import F, QuerySet

from notifications.models import Recipient, Tenant

from .models import InboxItem

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
STATUSES = ("all", "unread", "read", "unseen", "seen")
ARCHIVED = ("exclude", "include", "only")

# The columns an item is shown with; the tenant's key comes through a join on its primary key.
ITEM_FIELDS = ("id", "workflow_key", "category", "tags", "content", "created_at", "seen_at",
               "read_at", "archived_at", "tenant_id")


class NoTenant:
    """The scope of the items that belong to no tenant: what an HMAC made with the global
    INBOX_HMAC_SECRET opens. Use the one instance, NO_TENANT."""

    pk = None
    key = None

    def __repr__(self):
        return "NO_TENANT"


NO_TENANT = NoTenant()
# Which items a reader sees: one tenant's, those without a tenant (NO_TENANT), or every
# tenant's and those without one (None).
TenantScope = Tenant | NoTenant | None


def scope_includes(scope: TenantScope, tenant_id: int | None) -> bool:
    """Whether an item of tenant `tenant_id` (pk, None: no tenant) is in `scope`."""
    if scope is None:
        return True
    if scope is NO_TENANT:
        return tenant_id is None
    return scope.pk == tenant_id


def _scope_sql(scope: TenantScope, column: str) -> tuple[str, list]:
    """(" AND <condition>", params) limiting `column` to the scope; ("", []) for every tenant."""
    if scope is None:
        return "", []
    if scope is NO_TENANT:
        return f" AND {column} IS NULL", []
    return f" AND {column} = %s", [scope.pk]


@dataclass(frozen=True)
class FeedFilters:
    status: str = "all"
    archived: str = "exclude"
    tenant: TenantScope = None
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


def inbox_items_visible(*, recipient: Recipient, tenant: TenantScope) -> QuerySet[InboxItem]:
    """Every item a principal may touch: its recipient's, in its scope (see TenantScope)."""
    queryset = InboxItem.objects.filter(recipient=recipient)
    if tenant is NO_TENANT:
        return queryset.filter(tenant__isnull=True)
    return queryset.filter(tenant=tenant) if tenant is not None else queryset


def _feed_sql(*, recipient_pk: int, filters: FeedFilters, vendor: str) -> tuple[str, list]:
    """The WHERE clause of a feed query. The feed is the hot path: it is written as SQL, not
    compiled by the ORM on every request (the ORM's compile alone costs as much as the query;
    bench/inbox_feed.py measures both against a bare query)."""
    scope, params = _scope_sql(filters.tenant, "i.tenant_id")
    where, params = [f"i.recipient_id = %s{scope}"], [recipient_pk, *params]
    if filters.archived == "exclude":
        where.append("i.archived_at IS NULL")
    elif filters.archived == "only":
        where.append("i.archived_at IS NOT NULL")
    status = {"unread": "i.read_at IS NULL", "read": "i.read_at IS NOT NULL",
              "unseen": "i.seen_at IS NULL", "seen": "i.seen_at IS NOT NULL"}.get(filters.status)
    if status:
        where.append(status)
    if filters.category:
        where.append("i.category = %s")
        params.append(filters.category)
    for tag in filters.tags:
        if vendor == "postgresql":
            where.append("i.tags @> %s::jsonb")
            params.append(json.dumps([tag]))
        else:  # SQLite has no JSON containment operator
            where.append("EXISTS (SELECT 1 FROM json_each(i.tags) WHERE json_each.value = %s)")
            params.append(tag)
    return " AND ".join(where), params


def _aware(value):
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # SQLite stores UTC without an offset
    return value


def _json(value):
    return json.loads(value) if isinstance(value, str | bytes) else value


def _feed_rows(sql: str, params: list) -> list[dict]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [
        {"id": row[0], "workflow_key": row[1], "category": row[2], "tags": _json(row[3]),
         "content": _json(row[4]), "created_at": _aware(row[5]), "seen_at": _aware(row[6]),
         "read_at": _aware(row[7]), "archived_at": _aware(row[8]), "tenant_id": row[9],
         "tenant_key": row[10]}
        for row in rows
    ]


FEED_SELECT = (
    "SELECT i.id, i.workflow_key, i.category, i.tags, i.content, i.created_at, i.seen_at, "
    "i.read_at, i.archived_at, i.tenant_id, t.key FROM inbox_inboxitem i "
    "LEFT JOIN notifications_tenant t ON t.id = i.tenant_id WHERE "
)


def inbox_feed(*, recipient: Recipient, filters: FeedFilters = FeedFilters(),
               limit: int = DEFAULT_LIMIT, after: int | None = None,
               before: int | None = None) -> FeedPage:
    """A page of the feed, newest first, by keyset on id (never OFFSET). `after` continues to
    older items (the next page); `before` returns the newer items closest to that cursor (the
    re-sync of a client that reconnects)."""
    limit = max(1, min(limit, MAX_LIMIT))
    where, params = _feed_sql(recipient_pk=recipient.pk, filters=filters,
                              vendor=connection.vendor)
    if before is not None:
        rows = _feed_rows(f"{FEED_SELECT}{where} AND i.id > %s ORDER BY i.id ASC LIMIT %s",
                          [*params, before, limit + 1])
        rows = rows[:limit][::-1]
        return FeedPage(
            items=[item_json(row) for row in rows],
            after=str(rows[-1]["id"]) if rows else str(before),
            before=str(rows[0]["id"]) if rows else str(before),
        )
    if after is not None:
        where += " AND i.id < %s"
        params.append(after)
    rows = _feed_rows(f"{FEED_SELECT}{where} ORDER BY i.id DESC LIMIT %s", [*params, limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return FeedPage(
        items=[item_json(row) for row in rows],
        after=str(rows[-1]["id"]) if more else None,
        before=str(rows[0]["id"]) if rows else (str(after) if after is not None else None),
    )


def inbox_ids_after(*, recipient: Recipient, tenant: TenantScope, after: int,
                    limit: int) -> list[tuple[int, datetime]]:
    """(id, created_at) of the recipient's items in `tenant` scope with an id above `after`,
    oldest first, at most `limit` (archived ones too): what a socket reconciles its pushes
    with. One range scan of inbox_feed_idx."""
    return list(inbox_items_visible(recipient=recipient, tenant=tenant)
                .filter(id__gt=after).order_by("id").values_list("id", "created_at")[:limit])


# Sockets whose items one statement of inbox_items_above_many reads at most.
ABOVE_MANY_CHUNK = 500


def inbox_items_above_many(watermarks: list[tuple[int, int]],
                           ) -> list[Sequence[tuple[int, int | None]]]:
    """For each (recipient pk, id) of `watermarks`, in their order: (id, tenant pk) of that
    recipient's items with an id above it, every tenant, oldest first (a list; none: one shared
    empty tuple, not a list per socket for the garbage collector to track). One statement per
    ABOVE_MANY_CHUNK watermarks, a range scan of inbox_feed_idx each: what a web process's push
    probe reads for all its sockets at once (inbox.socket_reads)."""
    unique = list(dict.fromkeys(watermarks))
    found: dict[tuple[int, int], list[tuple[int, int | None]]] = {}
    for start in range(0, len(unique), ABOVE_MANY_CHUNK):
        chunk = unique[start:start + ABOVE_MANY_CHUNK]
        sql = (f"WITH w(recipient_id, after) AS (VALUES {', '.join(['(%s, %s)'] * len(chunk))}) "
               "SELECT w.recipient_id, w.after, i.id, i.tenant_id FROM w JOIN inbox_inboxitem i "
               "ON i.recipient_id = w.recipient_id AND i.id > w.after ORDER BY i.id")
        with connection.cursor() as cursor:
            cursor.execute(sql, [value for pair in chunk for value in pair])
            for recipient_pk, after, item_id, tenant_pk in cursor.fetchall():
                found.setdefault((recipient_pk, after), []).append((item_id, tenant_pk))
    return [found.get(key, ()) for key in watermarks]


def inbox_newest_id(*, recipient: Recipient, tenant: TenantScope) -> int:
    """The id of the recipient's newest item in `tenant` scope (0: none)."""
    return (inbox_items_visible(recipient=recipient, tenant=tenant).order_by("-id")
            .values_list("id", flat=True).first() or 0)


# unread, unseen, total of the recipient `{recipient}` (a placeholder or a column).
COUNTS_COLUMNS = (
    "(SELECT count(*) FROM inbox_inboxitem WHERE recipient_id = {recipient}{tenant} "
    "AND read_at IS NULL AND archived_at IS NULL), "
    "(SELECT count(*) FROM inbox_inboxitem WHERE recipient_id = {recipient}{tenant} "
    "AND seen_at IS NULL AND archived_at IS NULL), "
    "(SELECT count(*) FROM inbox_inboxitem WHERE recipient_id = {recipient}{tenant} "
    "AND archived_at IS NULL)"
)


def inbox_counts(*, recipient: Recipient, tenant: TenantScope = None) -> dict:
    """unread, unseen and total (not archived) counts: one statement, three index-only counts on
    the partial indexes (inbox_unread_idx, inbox_unseen_idx, inbox_active_idx)."""
    condition, params = _scope_sql(tenant, "tenant_id")
    scope = [recipient.pk, *params]
    sql = "SELECT " + COUNTS_COLUMNS.format(recipient="%s", tenant=condition)
    with connection.cursor() as cursor:
        cursor.execute(sql, scope * 3)
        unread, unseen, total = cursor.fetchone()
    return {"unread_count": unread, "unseen_count": unseen, "total_count": total}



# Recipients whose counts one statement of inbox_counts_many reads at most.
COUNTS_MANY_CHUNK = 500


def _scope_key(scope: TenantScope) -> object:
    """A hashable stand-in for `scope`: None, NO_TENANT, or ("tenant", pk)."""
    return scope if scope is None or scope is NO_TENANT else ("tenant", scope.pk)


def inbox_counts_many(requests: list[tuple[int, TenantScope]]) -> list[dict]:
    """inbox_counts of each (recipient pk, scope) of `requests`, in their order: one statement
    per scope and COUNTS_MANY_CHUNK recipients, with the same three index-only counts per
    recipient (over a VALUES list of their pks). For the sockets of a web process that need
    their counts at the same moment (a burst of items to as many recipients)."""
    by_scope: dict[object, tuple[TenantScope, list[int]]] = {}
    for recipient_pk, scope in requests:
        by_scope.setdefault(_scope_key(scope), (scope, []))[1].append(recipient_pk)
    found: dict[tuple[object, int], dict] = {}
    for key, (scope, pks) in by_scope.items():
        condition, params = _scope_sql(scope, "tenant_id")
        unique = list(dict.fromkeys(pks))
        for start in range(0, len(unique), COUNTS_MANY_CHUNK):
            chunk = unique[start:start + COUNTS_MANY_CHUNK]
            sql = (f"WITH r(id) AS (VALUES {', '.join(['(%s)'] * len(chunk))}) SELECT r.id, "
                   f"{COUNTS_COLUMNS.format(recipient='r.id', tenant=condition)} FROM r")
            with connection.cursor() as cursor:
                cursor.execute(sql, [*chunk, *params * 3])
                for pk, unread, unseen, total in cursor.fetchall():
                    found[key, pk] = {"unread_count": unread, "unseen_count": unseen,
                                      "total_count": total}
    return [found[_scope_key(scope), pk] for pk, scope in requests]
