"""Writing facts (in the caller's transaction), folding them into hourly rollups, reading them.

Callers record what happened where it is decided: `facts_record` with `Fact`s built by
`message_fact` (a Message whose workflow and tenant are loaded: no query) or
`message_facts_record` (message ids: one query). Each fact is one small INSERT, with no row
that concurrent workers contend for; `rollup_fold` (every minute, and before the dashboard
reads) adds them into `HourlyRollup` under row locks taken in one order, and deletes them.
"""

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from clarion.db import instance_maker, numbered_cursor

from .models import LATENCY_BOUNDS_MS, LATENCY_FIELDS, METRICS, HourlyRollup, RollupDelta

KEY_FIELDS = ("hour", "workflow", "tenant", "channel", "provider")
FOLD_BATCH = 20_000


@dataclass(frozen=True)
class Fact:
    """One count for one hour and (workflow, tenant, channel, provider) key."""

    metric: str
    at: datetime
    workflow: str = ""
    tenant: str = ""
    channel: str = ""
    provider: str = ""
    count: int = 1
    latency_ms: int | None = None
    cost: Decimal | None = None


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def facts_record(facts: Iterable[Fact]) -> int:
    """Write `facts` as deltas (one INSERT). Facts that differ only in `count` (same hour, key,
    metric, latency and no cost: e.g. a batch's sends) are one delta with their counts added,
    which folds to the same rollup. Returns how many facts. ValueError for an unknown metric."""
    rows, total = fact_rows(facts)
    RollupDelta.objects.bulk_create(rows)
    return total


def fact_rows(facts: Iterable[Fact]) -> tuple[list[RollupDelta], int]:
    """facts_record's deltas, unsaved (for the caller to insert with other rows in one
    statement: clarion.db.rows_insert), and how many facts they hold."""
    merged: dict[tuple, RollupDelta] = {}
    rows, total = [], 0
    for fact in facts:
        if fact.metric not in METRICS:
            raise ValueError(f"unknown analytics metric {fact.metric!r}")
        total += 1
        hour = hour_of(fact.at)
        key = (hour, fact.workflow, fact.tenant, fact.channel, fact.provider[:128],
               fact.metric, fact.latency_ms)
        if fact.cost is None and key in merged:
            merged[key].count += fact.count
            continue
        row = instance_maker(RollupDelta)(
            hour=hour, workflow=fact.workflow, tenant=fact.tenant, channel=fact.channel,
            provider=fact.provider[:128], metric=fact.metric, count=fact.count,
            latency_ms=fact.latency_ms, cost=fact.cost)
        if fact.cost is None:
            merged[key] = row
        rows.append(row)
    return rows, total


def suppression_metric(status: str, error: str) -> str:
    """The suppressed_* metric of a message the engine did not send."""
    if status == "undeliverable":
        return "suppressed_undeliverable"
    if error.startswith("Opted out"):
        return "suppressed_opted_out"
    return "suppressed_other"


def message_fact(metric: str, message, *, at: datetime, **extra) -> Fact:
    """A fact about a Message whose workflow and tenant are loaded."""
    return Fact(metric=metric, at=at, workflow=message.workflow.key,
                tenant=message.tenant.key if message.tenant_id else "",
                channel=message.channel, provider=message.provider or "", **extra)


def message_facts_record(changes: Sequence[tuple[str, object]], *,
                         at: datetime | None = None) -> int:
    """Record (metric, message id) facts at `at` (default now): one query for the messages'
    keys, one INSERT."""
    if not changes:
        return 0
    from notifications.models import Message

    at = at or timezone.now()
    keys = {row[0]: row[1:] for row in Message.objects.filter(
        pk__in={message_id for _, message_id in changes}).values_list(
        "id", "workflow__key", "tenant__key", "channel", "provider")}
    facts = [Fact(metric=metric, at=at, workflow=keys[message_id][0],
                  tenant=keys[message_id][1] or "", channel=keys[message_id][2],
                  provider=keys[message_id][3] or "")
             for metric, message_id in changes if message_id in keys]
    return facts_record(facts)


def latency_bucket(latency_ms: int) -> int:
    return bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def rollup_fold(*, limit: int = FOLD_BATCH) -> int:
    """Add up to `limit` deltas into their hourly rollups and delete them, in one transaction.
    Deltas another fold holds are skipped (SKIP LOCKED); rollup rows are locked in key order,
    so two folds never deadlock. Returns how many deltas were folded."""
    with transaction.atomic():
        deltas = _deltas_taken(limit)
        if not deltas:
            return 0
        sums: dict[tuple, dict] = defaultdict(lambda: {
            "counts": defaultdict(int), "latency": [0] * (len(LATENCY_BOUNDS_MS) + 1),
            "latency_sum": 0, "cost": Decimal(0)})
        for *key, metric, count, latency_ms, cost in deltas:
            entry = sums[tuple(key)]
            entry["counts"][metric] += count
            if latency_ms is not None:
                entry["latency"][latency_bucket(latency_ms)] += count
                entry["latency_sum"] += latency_ms * count
            if cost is not None:
                entry["cost"] += cost
        keys = sorted(sums)
        HourlyRollup.objects.bulk_create(
            [HourlyRollup(**dict(zip(KEY_FIELDS, key, strict=True))) for key in keys],
            ignore_conflicts=True)
        match = Q()
        for key in keys:
            match |= Q(**dict(zip(KEY_FIELDS, key, strict=True)))
        rows = list(HourlyRollup.objects.select_for_update().filter(match)
                    .order_by(*KEY_FIELDS))
        for row in rows:
            entry = sums[tuple(getattr(row, f) for f in KEY_FIELDS)]
            for metric, count in entry["counts"].items():
                setattr(row, metric, getattr(row, metric) + count)
            for name, count in zip(LATENCY_FIELDS, entry["latency"], strict=True):
                setattr(row, name, getattr(row, name) + count)
            row.latency_count += sum(entry["latency"])
            row.latency_sum_ms += entry["latency_sum"]
            row.cost += entry["cost"]
        HourlyRollup.objects.bulk_update(
            rows, [*METRICS, *LATENCY_FIELDS, "latency_count", "latency_sum_ms", "cost"])
    return len(deltas)


DELTA_FIELDS = (*KEY_FIELDS, "metric", "count", "latency_ms", "cost")


def _deltas_taken(limit: int) -> list[tuple]:
    """In the caller's transaction, up to `limit` deltas (oldest first; those another fold
    holds skipped) deleted, as tuples of DELTA_FIELDS' values. On PostgreSQL one
    `DELETE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING` kept per process: read
    as model instances and then deleted by a list of their ids quoted into the text (20,000 of
    each a fold), they cost a worker ~0.3 s of CPU per 20,000 deltas (a few a notification).
    Elsewhere the rows are read under lock (a no-op on SQLite, whose writers are serialized),
    then deleted."""
    if connection.vendor != "postgresql":
        deltas = list(RollupDelta.objects.select_for_update(skip_locked=True)
                      .order_by("id").values_list("id", *DELTA_FIELDS)[:limit])
        RollupDelta.objects.filter(pk__in=[pk for pk, *_ in deltas]).delete()
        return [tuple(values) for _, *values in deltas]
    global _taken_sql
    if _taken_sql is None:
        quote = connection.ops.quote_name
        table = quote(RollupDelta._meta.db_table)
        columns = ", ".join(quote(RollupDelta._meta.get_field(f).column) for f in DELTA_FIELDS)
        _taken_sql = (f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY id "
                      f"LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING {columns}")
    with numbered_cursor() as cursor:
        cursor.execute(_taken_sql, [limit])
        return cursor.fetchall()


_taken_sql = None  # _deltas_taken's statement on PostgreSQL


def rollup_fold_all() -> int:
    """Fold until no delta is left. Returns how many were folded."""
    total = 0
    while folded := rollup_fold():
        total += folded
    return total
