"""The analytics page and /metrics at 5,000,000 messages.

Writes, with generate_series (a few minutes): 100 recipients, 20 workflows, 4 tenants, 10,000
triggers over 30 days, 1,000,000 runs and 5,000,000 messages (five channels, statuses, providers,
costs), and their hourly rollups as the workers' fold leaves them (built here by one GROUP BY
over the messages, the same counts). Then measures, interleaved, N loads of:

- the admin analytics page over 30 days and over the default 7 days (rollups only);
- `/metrics` (its message and run counts now come from the rollups);
- the floor it replaces: a GROUP BY over the message table by channel and status (what /metrics
  did before), and the 30-day per-workflow totals computed from the messages.

PostgreSQL only. Usage: .venv/bin/python bench/analytics.py [--loads 20] [--rebuild]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_analytics (created
if missing; the data set is kept between runs unless --rebuild).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL",
                      "postgres://postgres@127.0.0.1:5432/clarion_bench_analytics")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from trigger import ensure_database  # noqa: E402

MESSAGES = 5_000_000
RUNS = MESSAGES // 5
TRIGGERS = 10_000
RECIPIENTS = RUNS // TRIGGERS
DAYS = 30
CHANNELS = ("email", "sms", "push", "in_app", "chat")
PREFIX = "bench-an-"


def defaults(cursor, table: str, given: dict[str, str]) -> tuple[str, str]:
    """(column list, value list) for an INSERT … SELECT into `table`: the `given` SQL
    expressions, and a neutral value for every other NOT NULL column (Django sets no database
    defaults)."""
    cursor.execute("SELECT column_name, data_type FROM information_schema.columns "
                   "WHERE table_name = %s AND is_nullable = 'NO' AND column_default IS NULL "
                   "AND is_identity = 'NO'",
                   [table])
    neutral = {"text": "''", "character varying": "''", "integer": "0", "bigint": "0",
               "smallint": "0", "jsonb": "'{}'::jsonb", "boolean": "false", "numeric": "0",
               "timestamp with time zone": "now()", "uuid": "gen_random_uuid()"}
    values = dict(given)
    for name, data_type in cursor.fetchall():
        values.setdefault(name, neutral[data_type])
    return ", ".join(f'"{name}"' for name in values), ", ".join(values.values())


def build(cursor) -> None:
    from notifications.models import Tenant, Workflow

    started = time.perf_counter()
    print(f"building {MESSAGES:,} messages …", flush=True)
    for table in ("analytics_hourlyrollup", "analytics_rollupdelta", "notifications_stepLog",
                  "notifications_message", "notifications_run", "notifications_trigger"):
        cursor.execute(f'TRUNCATE "{table.lower()}" CASCADE')
    cursor.execute("DELETE FROM notifications_recipient WHERE external_id LIKE %s",
                   [PREFIX + "%"])
    workflows = [Workflow.objects.get_or_create(key=f"{PREFIX}wf{n}",
                                                defaults={"name": f"Workflow {n}"})[0].pk
                 for n in range(20)]
    tenants = [Tenant.objects.get_or_create(key=f"{PREFIX}t{n}",
                                            defaults={"name": f"Tenant {n}"})[0].pk
               for n in range(4)]
    cols, vals = defaults(cursor, "notifications_recipient", {
        "external_id": f"'{PREFIX}' || g", "created_at": "now()", "updated_at": "now()"})
    cursor.execute(f"INSERT INTO notifications_recipient ({cols}) SELECT {vals} "
                   f"FROM generate_series(0, {RECIPIENTS - 1}) g")
    cursor.execute("SELECT min(id) FROM notifications_recipient WHERE external_id LIKE %s",
                   [PREFIX + "%"])
    first_recipient = cursor.fetchone()[0]
    wf = f"(ARRAY{workflows})[1 + g % {len(workflows)}]"
    tn = f"(ARRAY{tenants})[1 + g % {len(tenants)}]"
    cols, vals = defaults(cursor, "notifications_trigger", {
        "id": "gen_random_uuid()", "workflow_id": wf, "tenant_id": tn,
        "created_at": f"now() - make_interval(secs => (g::float / {TRIGGERS}) * {DAYS} * 86400)",
        "fanout": "'done'"})
    cursor.execute(f"INSERT INTO notifications_trigger ({cols}) SELECT {vals} "
                   f"FROM generate_series(0, {TRIGGERS - 1}) g")
    cols, vals = defaults(cursor, "notifications_run", {
        "id": "gen_random_uuid()", "trigger_id": "t.id", "workflow_id": "t.workflow_id",
        "tenant_id": "t.tenant_id", "recipient_id": f"{first_recipient} + r",
        "status": "'completed'", "created_at": "t.created_at", "updated_at": "t.created_at",
        "cursor": "5"})
    cursor.execute(f"INSERT INTO notifications_run ({cols}) SELECT {vals} "
                   f"FROM notifications_trigger t, generate_series(0, {RECIPIENTS - 1}) r")
    print(f"  runs written ({time.perf_counter() - started:.0f} s)", flush=True)
    channel = f"(ARRAY{list(CHANNELS)})[1 + s]"
    status = ("(CASE WHEN h < 70 THEN 'delivered' WHEN h < 85 THEN 'sent' WHEN h < 90 "
              "THEN 'failed' WHEN h < 95 THEN 'suppressed' ELSE 'bounced' END)")
    cols, vals = defaults(cursor, "notifications_message", {
        "id": "gen_random_uuid()", "run_id": "r.id", "step_ref": "'step' || s",
        "recipient_id": "r.recipient_id", "workflow_id": "r.workflow_id",
        "tenant_id": "r.tenant_id", "channel": channel, "status": status,
        "provider": f"{channel} || '-' || (h % 2)",
        "estimated_cost": "CASE WHEN s = 1 THEN 0.0079 END",
        "created_at": "r.created_at", "updated_at": "r.created_at",
        "sent_at": "r.created_at + make_interval(secs => h % 7)"})
    cursor.execute(
        f"INSERT INTO notifications_message ({cols}) SELECT {vals} FROM notifications_run r, "
        f"generate_series(0, 4) s, LATERAL (SELECT abs(hashtext(r.id::text || s)) % 100) x(h)")
    print(f"  messages written ({time.perf_counter() - started:.0f} s)", flush=True)


def build_rollups(cursor) -> None:
    started = time.perf_counter()
    print("building the rollups …", flush=True)
    cursor.execute("TRUNCATE analytics_hourlyrollup")
    # What the workers' fold leaves for these messages: one row per hour and key.
    cursor.execute("""
        INSERT INTO analytics_hourlyrollup (hour, workflow, tenant, channel, provider,
            triggered, sent, delivered, failed, bounced, suppressed_opted_out,
            suppressed_quiet_hours, suppressed_throttled, suppressed_digested,
            suppressed_undeliverable, suppressed_other, seen, read, clicked, provider_calls,
            provider_errors, latency_count, latency_sum_ms, latency_b00, latency_b01,
            latency_b02, latency_b03, latency_b04, latency_b05, latency_b06, latency_b07,
            latency_b08, latency_b09, latency_b10, latency_b11, latency_b12, latency_b13,
            latency_b14, cost)
        SELECT date_trunc('hour', m.created_at), w.key, t.key, m.channel, m.provider,
            count(DISTINCT m.run_id) FILTER (WHERE m.step_ref = 'step0'),
            count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced')),
            count(*) FILTER (WHERE m.status = 'delivered'),
            count(*) FILTER (WHERE m.status = 'failed'),
            count(*) FILTER (WHERE m.status = 'bounced'),
            count(*) FILTER (WHERE m.status = 'suppressed'), 0, 0, 0, 0, 0,
            count(*) FILTER (WHERE m.status = 'delivered') / 2,
            count(*) FILTER (WHERE m.status = 'delivered') / 3,
            count(*) FILTER (WHERE m.status = 'delivered') / 10,
            count(*) FILTER (WHERE m.status <> 'suppressed'),
            count(*) FILTER (WHERE m.status = 'failed'),
            count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced')),
            coalesce(sum(extract(epoch FROM m.sent_at - m.created_at) * 1000)
                FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced')), 0)::bigint,
            0, 0, 0, 0, 0,
            count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced')) / 2,
            count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced'))
              - count(*) FILTER (WHERE m.status IN ('sent', 'delivered', 'bounced')) / 2,
            0, 0, 0, 0, 0, 0, 0, 0, coalesce(sum(m.estimated_cost), 0)
        FROM notifications_message m JOIN notifications_workflow w ON w.id = m.workflow_id
            LEFT JOIN notifications_tenant t ON t.id = m.tenant_id
        GROUP BY 1, 2, 3, 4, 5""")
    print(f"  written in {time.perf_counter() - started:.0f} s; VACUUM ANALYZE …", flush=True)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms  p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    global MESSAGES, RUNS, RECIPIENTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=20)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--messages", type=int, default=MESSAGES,
                        help="the data set's size (a fifth as many runs, over 10,000 triggers)")
    args = parser.parse_args()
    MESSAGES, RUNS = args.messages, args.messages // 5
    RECIPIENTS = max(RUNS // TRIGGERS, 1)
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM notifications_message")
        if args.rebuild or cursor.fetchone()[0] < MESSAGES:
            build(cursor)
        build_rollups(cursor)
    with connection.cursor() as cursor:
        for table in ("notifications_message", "notifications_run", "analytics_hourlyrollup"):
            cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT count(*) FROM notifications_message")
        messages = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM analytics_hourlyrollup")
        rollups = cursor.fetchone()[0]
    admin, _ = User.objects.get_or_create(username="bench-admin", defaults={
        "is_staff": True, "is_superuser": True})
    client = Client()
    client.force_login(admin)
    from datetime import date, timedelta

    today = date.today()
    month = {"start": (today - timedelta(days=DAYS)).isoformat(), "end": today.isoformat()}

    def page_month():
        response = client.get("/admin/analytics/hourlyrollup/", month)
        assert response.status_code == 200 and b"clarion-chart" in response.content

    def page_week():
        assert client.get("/admin/analytics/hourlyrollup/").status_code == 200

    def metrics():
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200

    def floor_status_group_by():
        with connection.cursor() as cursor:
            cursor.execute("SELECT channel, status, count(*) FROM notifications_message "
                           "GROUP BY 1, 2")
            cursor.fetchall()

    def floor_month_from_messages():
        with connection.cursor() as cursor:
            cursor.execute("SELECT workflow_id, count(*) FILTER (WHERE status = 'delivered'), "
                           "count(*) FROM notifications_message WHERE created_at >= now() - "
                           "interval '30 days' GROUP BY 1")
            cursor.fetchall()

    measured = {"analytics page, 30 days": page_month, "analytics page, 7 days": page_week,
                "/metrics": metrics,
                "before: GROUP BY channel, status over messages": floor_status_group_by,
                "before: 30-day per-workflow totals from messages": floor_month_from_messages}
    samples = {name: [] for name in measured}
    for fn in measured.values():
        fn()  # warm-up
    for _ in range(args.loads):
        for name, fn in measured.items():
            started = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - started)
    print(f"{messages:,} messages, {rollups:,} rollup rows, {args.loads} loads each, "
          f"PostgreSQL {connection.pg_version}")
    for name, values in samples.items():
        print(f"  {name:<52} {percentiles(values)}")


if __name__ == "__main__":
    main()
