"""The trigger path, measured against its floor.

1. POST /api/v1/workflows/welcome/trigger through the whole stack in-process (API key, validation,
   recipient upsert, trigger + run + timeline rows and the queued task in one transaction),
   against the same rows written by bare SQL in one transaction (the floor).
2. advance_run of each run (in_app + email: two messages, an inbox item, the timeline, a queued
   delivery task), against the same rows by bare SQL.

PostgreSQL only. Usage: .venv/bin/python bench/trigger.py [--n 500]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing;
its tables are emptied first).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
# Count triggers against the per-key rate limit (its cost is part of the figure), never refuse.
os.environ.setdefault("CLARION_TRIGGER_RATE_LIMIT", "100000000")
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"


def ensure_database(url: str) -> None:
    import psycopg
    from dj_database_url import parse

    db = parse(url)
    if "postgresql" not in db["ENGINE"]:
        sys.exit("bench/trigger.py measures PostgreSQL: set DATABASE_URL to a postgres:// URL.")
    admin = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"],
                            password=db["PASSWORD"] or None, dbname="postgres", autocommit=True)
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                               [db["NAME"]]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{db["NAME"]}"')


def timed(fn, n: int, warmup: int = 20) -> list[float]:
    for i in range(warmup):
        fn(-1 - i)
    samples = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "per_s": 1000 * len(ordered) / sum(ordered),
    }


def report(name: str, full: list[float], floor: list[float]) -> None:
    f, b = summary(full), summary(floor)
    print(f"{name}")
    print(f"  clarion  p50 {f['p50']:7.2f} ms  p99 {f['p99']:7.2f} ms  {f['per_s']:8.1f}/s")
    print(f"  floor    p50 {b['p50']:7.2f} ms  p99 {b['p99']:7.2f} ms  {b['per_s']:8.1f}/s")
    print(f"  ratio    p50 {f['p50'] / b['p50']:7.2f}x    p99 {f['p99'] / b['p99']:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django_q.models import OrmQ

    from notifications.models import Run, Workflow
    from notifications.services import StepSpec, api_key_create, workflow_put
    from notifications.tasks import advance_run

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_trigger, notifications_recipient, django_q_ormq "
                       "CASCADE")
    workflow, _ = workflow_put(key="bench-welcome", name="Bench", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ recipient.name }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Welcome {{ recipient.name }}", "html": "<p>{{ data.text }}</p>"}}),
    ])
    _, secret = api_key_create(name="bench")
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    tag = uuid.uuid4().hex[:6]

    def body(i: int) -> str:
        return json.dumps({"recipients": [{"id": f"{tag}-u{i}", "name": f"User {i}",
                                           "email": f"u{i}@example.com"}],
                           "data": {"text": "Your invoice is ready"}})

    def trigger_full(i: int) -> None:
        response = client.post("/api/v1/workflows/bench-welcome/trigger", body(i),
                               content_type="application/json")
        assert response.status_code == 202, response.content

    def trigger_floor(i: int) -> None:
        now = time.time()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(
                "INSERT INTO notifications_recipient (external_id, name, email, phone, locale, "
                "timezone, data, created_at, updated_at) VALUES (%s, %s, %s, '', '', '', '{}', "
                "to_timestamp(%s), to_timestamp(%s)) ON CONFLICT (external_id) DO UPDATE SET "
                "name = EXCLUDED.name RETURNING id",
                [f"{tag}-f{i}", f"User {i}", f"u{i}@example.com", now, now])
            recipient_id = cur.fetchone()[0]
            trigger_id, run_id = uuid.uuid4(), uuid.uuid4()
            cur.execute(
                "INSERT INTO notifications_trigger (id, workflow_id, data, recipients, "
                "cancellation_key, fanout, fanout_after, runs_created, idempotency_key, "
                "created_at) VALUES (%s, %s, %s, %s, '', 'done', 0, 1, '', to_timestamp(%s))",
                [trigger_id, workflow.pk, '{"text": "x"}', "[]", now])
            cur.execute(
                "INSERT INTO notifications_run (id, trigger_id, workflow_id, recipient_id, status, "
                "cursor, state, step_refs, created_at, updated_at) VALUES (%s, %s, %s, %s, "
                "'running', 0, '{}', '[\"inbox\", \"mail\"]', to_timestamp(%s), "
                "to_timestamp(%s))",
                [run_id, trigger_id, workflow.pk, recipient_id, now, now])
            cur.execute(
                "INSERT INTO notifications_steplog (run_id, step_ref, event, detail, created_at) "
                "VALUES (%s, '', 'triggered', '{}', to_timestamp(%s))", [run_id, now])
            cur.execute("INSERT INTO django_q_ormq (key, payload, lock) VALUES "
                        "('clarion', %s, to_timestamp(%s))", ["x" * 200, now])

    print(f"Clarion trigger benchmark: n={args.n}, PostgreSQL {connection.pg_version}")
    report("trigger (POST /trigger vs bare SQL)", timed(trigger_full, args.n),
           timed(trigger_floor, args.n))

    OrmQ.objects.all().delete()
    full_runs = list(Run.objects.filter(recipient__external_id__startswith=f"{tag}-u")
                     .values_list("id", flat=True))
    floor_runs = list(Run.objects.filter(recipient__external_id__startswith=f"{tag}-f")
                      .values_list("id", "recipient_id"))
    warm = 20

    def advance_full(i: int) -> None:
        advance_run(str(full_runs[i + warm if i >= 0 else -1 - i]))

    def advance_floor(i: int) -> None:
        run_id, recipient_id = floor_runs[i + warm if i >= 0 else -1 - i]
        now = time.time()
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute("SELECT status FROM notifications_run WHERE id = %s FOR UPDATE", [run_id])
            for ref, channel, status in (("inbox", "in_app", "sent"), ("mail", "email", "queued")):
                message_id = uuid.uuid4()
                cur.execute(
                    "INSERT INTO notifications_message (id, run_id, step_ref, recipient_id, "
                    "workflow_id, channel, status, \"to\", content, provider, "
                    "provider_message_id, attempts, send_number, error, cost_currency, created_at, "
                    "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, '', %s, '', '', 0, 1, '', '', "
                    "to_timestamp(%s), to_timestamp(%s))",
                    [message_id, run_id, ref, recipient_id, workflow.pk, channel, status,
                     '{"body": "Hi"}', now, now])
                cur.execute(
                    "INSERT INTO notifications_steplog (run_id, step_ref, event, detail, "
                    "created_at) VALUES (%s, %s, %s, '{}', to_timestamp(%s))",
                    [run_id, ref, status, now])
            cur.execute(
                "INSERT INTO inbox_inboxitem (recipient_id, workflow_key, category, tags, content, "
                "created_at) VALUES (%s, 'bench', '', '[]', '{}', to_timestamp(%s))",
                [recipient_id, now])
            cur.execute("INSERT INTO django_q_ormq (key, payload, lock) VALUES "
                        "('clarion', %s, to_timestamp(%s))", ["x" * 200, now])
            cur.execute("UPDATE notifications_run SET status = 'completed', cursor = 2, "
                        "updated_at = to_timestamp(%s) WHERE id = %s", [now, run_id])

    n = min(len(full_runs), len(floor_runs)) - warm
    report("advance_run (in_app + email vs bare SQL)", timed(advance_full, n, warmup=warm),
           timed(advance_floor, n, warmup=warm))
    assert Run.objects.filter(status="completed",
                              recipient__external_id__startswith=f"{tag}-u").count() == len(
        full_runs)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_trigger, notifications_recipient, django_q_ormq "
                       "CASCADE")
    Workflow.objects.filter(pk=workflow.pk).delete()


if __name__ == "__main__":
    main()
