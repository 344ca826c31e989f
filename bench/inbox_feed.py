"""The inbox feed at scale, measured against its floor.

1,000,000 InboxItems over 10,000 recipients, one of whom ("heavy") has 100,000, interleaved in id
order as a live system writes them (~70% read, ~80% seen, ~5% archived). For the heavy recipient and
for typical ones (90 items each), 1,000 requests each of:

- the first page (20 items), through `inbox.selectors.inbox_feed`;
- a page 50 pages deep (keyset cursor `after`), through `inbox_feed`;
- the badge counts (unread, unseen, total), through `inbox.selectors.inbox_counts`;

each against the same rows read by a bare indexed SQL query on a raw cursor (the floor).

PostgreSQL only. Usage: .venv/bin/python bench/inbox_feed.py [--requests 1000] [--rebuild]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_inbox (created if
missing; the data set is kept between runs unless --rebuild).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench_inbox")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from trigger import ensure_database, summary  # noqa: E402

ITEMS = 1_000_000
RECIPIENTS = 10_000
HEAVY_ITEMS = 100_000
PAGE = 20
DEPTH = 50
PREFIX = "bench-inbox-"


def build(cursor) -> None:
    """The data set, written by SQL in a few statements (about a minute)."""
    print(f"building {ITEMS:,} items …", flush=True)
    started = time.perf_counter()
    cursor.execute("DELETE FROM inbox_inboxitem WHERE recipient_id IN (SELECT id FROM "
                   "notifications_recipient WHERE external_id LIKE %s)", [PREFIX + "%"])
    cursor.execute("DELETE FROM notifications_recipient WHERE external_id LIKE %s",
                   [PREFIX + "%"])
    cursor.execute(
        "INSERT INTO notifications_recipient (external_id, name, email, phone, locale, timezone, "
        "data, created_at, updated_at) SELECT %s || g, 'User ' || g, '', '', '', '', '{}', now(), "
        "now() FROM generate_series(0, %s) g", [PREFIX, RECIPIENTS - 1])
    cursor.execute("SELECT min(id) FROM notifications_recipient WHERE external_id LIKE %s",
                   [PREFIX + "%"])
    first = cursor.fetchone()[0]
    # Every 10th row is the heavy recipient's (first); the rest go round the others. Items are
    # newest last; older ones are read and seen, a few archived.
    cursor.execute(
        """
        INSERT INTO inbox_inboxitem (recipient_id, tenant_id, workflow_key, category, tags,
            content, created_at, seen_at, read_at, archived_at)
        SELECT CASE WHEN g %% 10 = 0 THEN %(first)s ELSE %(first)s + 1 + (g %% (%(others)s)) END,
            NULL, 'comment-mentioned', 'collaboration', '["mention"]',
            jsonb_build_object('body', 'Someone mentioned you in document ' || g ||
                ': “a short excerpt of the comment”', 'action_url', '/docs/' || g),
            ts, CASE WHEN g < %(n)s * 0.8 THEN ts END, CASE WHEN g < %(n)s * 0.7 THEN ts END,
            CASE WHEN g %% 100 IN (7, 30) AND g < %(n)s * 0.7 THEN ts END
        FROM generate_series(0, %(n)s - 1) g,
            LATERAL (SELECT now() - make_interval(secs => %(n)s - g)) t(ts)
        ORDER BY g
        """,
        {"first": first, "others": RECIPIENTS - 1, "n": ITEMS})
    print(f"  written in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE …", flush=True)


def timed(full, floor, args: list, warmup: int = 50) -> tuple[list[float], list[float]]:
    """Both functions over the same arguments, interleaved (full, floor, full, …) so that the
    load of a shared machine falls on both alike."""
    for a in args[:warmup]:
        full(a)
        floor(a)
    samples: tuple[list[float], list[float]] = ([], [])
    for a in args:
        for fn, out in ((full, samples[0]), (floor, samples[1])):
            start = time.perf_counter()
            fn(a)
            out.append((time.perf_counter() - start) * 1000)
    return samples


def report(name: str, samples: tuple[list[float], list[float]]) -> None:
    full, floor = samples
    f, b = summary(full), summary(floor)
    print(f"{name}")
    print(f"  clarion  p50 {f['p50']:7.2f} ms  p99 {f['p99']:7.2f} ms")
    print(f"  floor    p50 {b['p50']:7.2f} ms  p99 {b['p99']:7.2f} ms")
    ratio = (f["p50"] / b["p50"], f["p99"] / b["p99"])
    verdict = "ok" if f["p99"] < 25 and max(ratio) <= 2 else "MISSES the goal"
    print(f"  ratio    p50 {ratio[0]:7.2f}x    p99 {ratio[1]:7.2f}x   "
          f"(goal: p99 < 25 ms and ≤ 2x the floor: {verdict})")


def main() -> None:
    global ITEMS, RECIPIENTS
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--items", type=int, default=ITEMS,
                        help="the data set's size (a tenth the heavy recipient's, 100 a person)")
    args = parser.parse_args()
    ITEMS, RECIPIENTS = args.items, max(args.items // 100, 100)
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from inbox.selectors import inbox_counts, inbox_feed
    from notifications.models import Recipient

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM inbox_inboxitem i JOIN notifications_recipient r "
                       "ON r.id = i.recipient_id WHERE r.external_id LIKE %s", [PREFIX + "%"])
        if args.rebuild or cursor.fetchone()[0] != ITEMS:
            build(cursor)
            cursor.execute("VACUUM ANALYZE inbox_inboxitem")
            cursor.execute("VACUUM ANALYZE notifications_recipient")
    heavy = Recipient.objects.get(external_id=f"{PREFIX}0")
    typical = list(Recipient.objects.filter(external_id__startswith=PREFIX)
                   .exclude(pk=heavy.pk).order_by("?")[:args.requests])
    n_heavy = heavy.inbox_items.count()
    print(f"Clarion inbox feed benchmark: {ITEMS:,} items, {RECIPIENTS:,} recipients (one with "
          f"{n_heavy:,}), {args.requests} requests each, PostgreSQL {connection.pg_version}")

    columns = ("i.id, i.workflow_key, i.category, i.tags, i.content, i.created_at, i.seen_at, "
               "i.read_at, i.archived_at, i.tenant_id, t.key")
    page_sql = (f"SELECT {columns} FROM inbox_inboxitem i LEFT JOIN notifications_tenant t ON "
                "t.id = i.tenant_id WHERE i.recipient_id = %s AND i.archived_at IS NULL {cursor} "
                "ORDER BY i.id DESC LIMIT %s")
    counts_sql = (
        "SELECT (SELECT count(*) FROM inbox_inboxitem WHERE recipient_id = %s AND read_at IS NULL "
        "AND archived_at IS NULL), (SELECT count(*) FROM inbox_inboxitem WHERE recipient_id = %s "
        "AND seen_at IS NULL AND archived_at IS NULL), (SELECT count(*) FROM inbox_inboxitem "
        "WHERE recipient_id = %s AND archived_at IS NULL)")
    raw = connection.cursor()

    def deep_cursor(recipient) -> int | None:
        """The cursor of page DEPTH (or of the last page, for a shorter feed)."""
        cursor = None
        for _ in range(DEPTH - 1):
            page = inbox_feed(recipient=recipient, limit=PAGE, after=cursor)
            if page.after is None:
                break
            cursor = int(page.after)
        return cursor

    def floor_page(recipient_id: int, after: int | None) -> list:
        sql = page_sql.format(cursor="AND i.id < %s" if after else "")
        params = [recipient_id, after, PAGE + 1] if after else [recipient_id, PAGE + 1]
        raw.execute(sql, params)
        return raw.fetchall()

    def floor_counts(recipient_id: int) -> tuple:
        raw.execute(counts_sql, [recipient_id] * 3)
        return raw.fetchone()

    # The service returns the same rows as the floor.
    page = inbox_feed(recipient=heavy, limit=PAGE)
    assert [item["id"] for item in page.items] == [row[0] for row in floor_page(heavy.pk,
                                                                                  None)][:PAGE]
    counts = inbox_counts(recipient=heavy)
    assert tuple(counts.values()) == floor_counts(heavy.pk), (counts, floor_counts(heavy.pk))
    print(f"  heavy recipient counts: {counts}")

    def measure(label: str, recipients: list) -> None:
        print(f"\n== {label}")
        deep = {r.pk: deep_cursor(r) for r in set(recipients)}
        report("first page", timed(lambda r: inbox_feed(recipient=r, limit=PAGE),
                                   lambda r: floor_page(r.pk, None), recipients))
        report(f"page {DEPTH} deep (or the last page of a shorter feed)",
               timed(lambda r: inbox_feed(recipient=r, limit=PAGE, after=deep[r.pk]),
                     lambda r: floor_page(r.pk, deep[r.pk]), recipients))
        report("counts (unread, unseen, total)",
               timed(lambda r: inbox_counts(recipient=r), lambda r: floor_counts(r.pk),
                     recipients))

    measure(f"heavy recipient ({n_heavy:,} items)", [heavy] * args.requests)
    measure("typical recipients (90 items each, a different one per request)", typical)
    raw.close()


if __name__ == "__main__":
    main()
