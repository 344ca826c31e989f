"""Fan-out to a topic and digest throughput, each measured against a floor in the same run.

(a) A trigger to a topic of 10,000 subscribers (a workflow with one in-app step), from the
    trigger call until every subscriber's InboxItem exists: the fan-out task, then every run's
    `advance_run`, taken from the real ORM queue (dequeue, run, acknowledge) one after the other
    in this process, as one worker would. Floor: the same 10,000 InboxItems written by one bulk
    INSERT. Goal: within 5× the floor. Also the statements and this process's CPU time per
    subscriber, which a loaded machine changes far less than the wall time.
(b) Digest throughput: 10,000 events for one recipient into 1,000 keys (10 per key) of a digest
    step: each run's `advance_run` joins (or opens) its key's batch; events/s. Then the 1,000
    batches close (their `flush_digest` wake-ups) and each carrier renders its in-app digest;
    batches/s. Floor for the joins: the same rows (lock the batch, insert the event, count it,
    park the run, its timeline entry) by bare SQL, one transaction per event.

PostgreSQL only. Usage: .venv/bin/python bench/fanout.py [--subscribers 10000] [--events 10000]
[--keys 1000]. DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_fanout
(created if missing; its tables are emptied first).
"""

import argparse
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from pydoc import locate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench_fanout")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"
# The tasks run here as in a qcluster worker, which keeps its connection between tasks (the ORM
# broker closes a connection without CONN_MAX_AGE at every dequeue and acknowledgement).
os.environ.setdefault("CLARION_PROCESS", "worker")

from common import result  # noqa: E402
from trigger import ensure_database  # noqa: E402

TABLES = ("notifications_trigger, notifications_recipient, notifications_topic, "
          "notifications_digestbatch, django_q_ormq, inbox_inboxitem")


def drain(until=None) -> int:
    """Run the tasks of the real ORM queue in this process (dequeue, run, acknowledge) until it
    is empty; returns how many ran."""
    from django_q.brokers import get_broker
    from django_q.signing import SignedPackage

    broker, ran = get_broker(), 0
    while True:
        batch = broker.dequeue() or []
        if not batch:
            return ran
        for ack_id, payload in batch:
            task = SignedPackage.loads(payload)
            locate(task["func"])(*task.get("args", ()), **task.get("kwargs", {}))
            broker.acknowledge(ack_id)
            ran += 1


@contextmanager
def counted_statements():
    """Count the statements psycopg sends (COPY included) inside the block: yields a list that
    gets one entry per statement."""
    import psycopg

    statements, real_execute, real_copy = [], psycopg.Cursor.execute, psycopg.Cursor.copy

    def execute(self, query, *args, **kwargs):
        statements.append(query)
        return real_execute(self, query, *args, **kwargs)

    def copy(self, statement, *args, **kwargs):
        statements.append(statement)
        return real_copy(self, statement, *args, **kwargs)

    psycopg.Cursor.execute, psycopg.Cursor.copy = execute, copy
    try:
        yield statements
    finally:
        psycopg.Cursor.execute, psycopg.Cursor.copy = real_execute, real_copy


def fanout(n: int) -> None:
    from django.db import connection, transaction

    from inbox.models import InboxItem
    from notifications.models import Recipient, Subscription, Topic
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put

    workflow, _ = workflow_put(key="bench-fanout", name="Fan-out", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {
            "body": "{{ data.title }} was published"}})])
    topic = Topic.objects.create(key="bench-everyone")
    recipients = Recipient.objects.bulk_create(
        [Recipient(external_id=f"s{i}", name=f"Subscriber {i}") for i in range(n)],
        batch_size=2000)
    Subscription.objects.bulk_create([Subscription(topic=topic, recipient=r) for r in recipients],
                                     batch_size=2000)
    ids = [r.pk for r in recipients]
    # A warm-up fan-out to 20 of them first: what a worker loads once (the URLconf, the template
    # cache, the queries' compiled forms) is not counted per subscriber.
    warm = Topic.objects.create(key="bench-warm-up")
    Subscription.objects.bulk_create([Subscription(topic=warm, recipient=r)
                                      for r in recipients[:20]])
    trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{"topic": warm.key}],
                                    data={"title": "Warm-up"}))
    drain()
    InboxItem.objects.filter(workflow_key="bench-fanout").delete()

    start, cpu = time.perf_counter(), time.process_time()
    with counted_statements() as statements:
        trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{"topic": topic.key}],
                                        data={"title": "Release 2.0"}))
        tasks = drain()
    full, cpu = time.perf_counter() - start, time.process_time() - cpu
    items = InboxItem.objects.filter(workflow_key="bench-fanout").count()
    assert items == n, f"{items} in-app items, expected {n}"

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM inbox_inboxitem WHERE workflow_key = 'bench-floor'")
    start = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO inbox_inboxitem (recipient_id, workflow_key, category, tags, content, "
            "created_at) SELECT r, 'bench-floor', '', '[]', %s, now() FROM unnest(%s) AS r",
            ['{"body": "Release 2.0 was published"}', ids])
    floor = time.perf_counter() - start
    same_rows, chunks, size = same_rows_floor(workflow, topic)
    print(f"(a) trigger to a topic of {n:,} subscribers until every in-app item exists "
          f"({tasks:,} tasks)")
    print(f"  clarion  {full:8.2f} s   {n / full:9.0f} items/s")
    print(f"  floor    {floor:8.2f} s   {n / floor:9.0f} items/s  (one bulk INSERT)")
    print(f"  ratio    {full / floor:8.1f}x   (goal: within 5x)")
    print(f"  rows     {same_rows:8.2f} s   {n / same_rows:9.0f} items/s  (the same rows by "
          f"bare SQL: run, 3 timeline entries, message, item; {chunks} transactions of "
          f"{size})")
    print(f"  ratio    {full / same_rows:8.1f}x   to the same rows ({same_rows / floor:.1f}x the "
          f"bulk INSERT: what the schema alone costs)")
    print(f"  per subscriber: {len(statements) / n:.3f} statements, {cpu / n * 1000:.3f} ms of "
          f"this process's CPU ({cpu:.2f} s in all; the floor's wall time is "
          f"{floor / n * 1000:.3f} ms a row, the same rows' {same_rows / n * 1000:.3f} ms a "
          f"subscriber)")
    per = f"{cpu / n * 1000:.2f} ms CPU, {len(statements) / n:.3f} statements a subscriber"
    result(f"fan-out to {n:,} subscribers until every in-app item exists, s ({per})", full,
           f"one bulk INSERT {floor:.2f} s", full / floor, 5, at_most=True)
    result(f"fan-out to {n:,} subscribers, against the same rows by bare SQL, s", full,
           f"run, timeline, message, item set-based {same_rows:.2f} s", full / same_rows)


# What a fan-out chunk writes per subscriber of a one-step in-app workflow, with the same tables
# and indexes, by one set-based statement (data-modifying CTEs) per chunk of subscribers read
# from the topic's subscriptions by keyset, one transaction each: the run (already completed),
# its Message (sent) and InboxItem, and its three timeline entries (triggered, sent naming the
# message and item, completed) with the details Clarion writes. Left out: what a chunk writes
# once (the trigger's progress, the analytics delta) and every read and check Clarion makes
# (preferences, templates, the recipient's locale), and the item-order locks.
SAME_ROWS_SQL = """
WITH chunk AS (
    SELECT s.recipient_id, r.external_id FROM notifications_subscription s
    JOIN notifications_recipient r ON r.id = s.recipient_id
    WHERE s.topic_id = %(topic)s AND s.recipient_id > %(after)s
    ORDER BY s.recipient_id LIMIT %(size)s
), runs AS (
    INSERT INTO notifications_run (id, trigger_id, workflow_id, workflow_version_id,
        recipient_id, tenant_id, status, cursor, wake_at, step_refs, state, created_at,
        updated_at)
    SELECT gen_random_uuid(), %(trigger)s, %(workflow)s, %(version)s, recipient_id, NULL,
        'completed', 1, NULL, '[]', '{}', now(), now() FROM chunk
    RETURNING id, recipient_id
), messages AS (
    INSERT INTO notifications_message (id, run_id, step_id, step_ref, recipient_id,
        workflow_id, tenant_id, channel, status, "to", content, template_version_id, provider,
        provider_message_id, cost_currency, attempts, send_number, error, created_at,
        updated_at, sent_at)
    SELECT gen_random_uuid(), runs.id, %(step)s, 'inbox', runs.recipient_id, %(workflow)s,
        NULL, 'in_app', 'sent', chunk.external_id, %(content)s, %(template_version)s, 'inbox',
        '', '', 0, 1, '', now(), now(), now()
    FROM runs JOIN chunk USING (recipient_id)
    RETURNING id, run_id, recipient_id
), items AS (
    INSERT INTO inbox_inboxitem (recipient_id, tenant_id, message_id, workflow_key, category,
        tags, content, created_at)
    SELECT recipient_id, NULL, id, 'bench-fanout', '', '[]', %(content)s, now() FROM messages
    RETURNING id, message_id
), timeline AS (
    INSERT INTO notifications_steplog (run_id, step_ref, event, detail, created_at)
    SELECT m.run_id, entry.step_ref, entry.event, entry.detail, now()
    FROM messages m JOIN items i ON i.message_id = m.id, LATERAL (VALUES
        ('', 'triggered', jsonb_build_object('trigger_id', %(trigger)s::text,
                                             'via', %(via)s::text)),
        ('inbox', 'sent', jsonb_build_object('locale', 'en', 'message_id', m.id::text,
                                             'inbox_item_id', i.id,
                                             'template_version', %(number)s::int)),
        ('', 'completed', '{}'::jsonb)) AS entry(step_ref, event, detail)
)
SELECT max(recipient_id), count(*) FROM chunk
"""


def same_rows_floor(workflow, topic) -> tuple[float, int, int]:
    """The second floor (SAME_ROWS_SQL) over every subscriber of `topic`, for a trigger of
    `workflow` of its own, in chunks of CLARION_FANOUT_BATCH_SIZE as a fan-out's: (seconds,
    transactions, chunk size). The rows stay (the tables are emptied at the end)."""
    from django.conf import settings
    from django.db import connection, transaction

    from notifications.models import Message, StepLog, Trigger

    size = settings.CLARION["FANOUT_BATCH_SIZE"]
    model = Message.objects.filter(workflow=workflow).select_related("template_version").first()
    trigger = Trigger.objects.create(workflow=workflow, data={"title": "Release 2.0"})
    params = {"topic": topic.pk, "size": size, "trigger": trigger.pk, "workflow": workflow.pk,
              "version": workflow.published_version_id, "step": model.step_id,
              "template_version": model.template_version_id,
              "number": model.template_version.number, "via": f"topic:{topic.key}",
              "content": '{"body": "Release 2.0 was published"}'}
    after, chunks, start = 0, 0, time.perf_counter()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(SAME_ROWS_SQL, {**params, "after": after})
            last, count = cursor.fetchone()
        if not count:
            break
        chunks, after = chunks + 1, last
        if count < size:
            break
    seconds = time.perf_counter() - start
    written = (trigger.runs.filter(status="completed").count(),
               Message.objects.filter(run__trigger=trigger, inbox_item__isnull=False).count(),
               StepLog.objects.filter(run__trigger=trigger).count())
    subscribers = topic.subscriptions.count()
    assert written == (subscribers, subscribers, 3 * subscribers), written
    return seconds, chunks, size


def digest(events: int, keys: int) -> None:
    from django.db import connection, transaction
    from django.utils import timezone

    from notifications.models import DigestBatch, Message, Recipient, Run, Trigger
    from notifications.services import StepSpec, workflow_put
    from notifications.tasks import advance_run, flush_digest

    workflow, _ = workflow_put(key="bench-digest", name="Digest", steps=[
        StepSpec(ref="batch", type="digest",
                 config={"window": {"hours": 1}, "key": "data.thread"}),
        StepSpec(ref="inbox", type="in_app", templates={"en": {
            "body": "{{ steps.batch.count }} new comments: {% for e in steps.batch.events %}"
                    "{{ e.data.n }} {% endfor %}"}})])
    person = Recipient.objects.create(external_id="reader", name="Reader")

    def make_runs(tag: str) -> list[Run]:
        triggers = Trigger.objects.bulk_create([
            Trigger(workflow=workflow, data={"thread": f"{tag}{i % keys}", "n": i})
            for i in range(events)], batch_size=2000)
        return Run.objects.bulk_create([
            Run(trigger=t, workflow=workflow, recipient=person) for t in triggers],
            batch_size=2000)

    runs = make_runs("t")
    start = time.perf_counter()
    for run in runs:
        advance_run(str(run.pk))
    joins = time.perf_counter() - start
    assert DigestBatch.objects.filter(status="open").count() == keys

    # The floor: the same rows by bare SQL, one transaction per event.
    floor_runs = make_runs("f")
    batch_ids = {}
    now = timezone.now()
    with connection.cursor() as cursor:
        for k in range(keys):
            batch_ids[k] = uuid.uuid4()
            cursor.execute(
                "INSERT INTO notifications_digestbatch (id, workflow_id, step_ref, recipient_id, "
                "key, status, opened_at, closes_at, close_reason, event_count) VALUES (%s, %s, "
                "'batch', %s, %s, 'closed', %s, %s, '', 0)",
                [batch_ids[k], workflow.pk, person.pk, f"floor{k}", now, now + timedelta(hours=1)])
    start = time.perf_counter()
    for i, run in enumerate(floor_runs):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT status FROM notifications_run WHERE id = %s FOR UPDATE",
                           [run.pk])
            batch_id = batch_ids[i % keys]
            cursor.execute("SELECT id FROM notifications_digestbatch WHERE id = %s FOR UPDATE",
                           [batch_id])
            cursor.execute(
                "INSERT INTO notifications_digestevent (batch_id, run_id, step_ref, data, actor, "
                "at, outcome) VALUES (%s, %s, 'batch', %s, '{}', now(), '')",
                [batch_id, run.pk, '{"thread": "x", "n": 1}'])
            cursor.execute("UPDATE notifications_digestbatch SET event_count = event_count + 1 "
                           "WHERE id = %s", [batch_id])
            cursor.execute(
                "INSERT INTO notifications_steplog (run_id, step_ref, event, detail, created_at) "
                "VALUES (%s, 'batch', 'batched', '{}', now())", [run.pk])
            cursor.execute("UPDATE notifications_run SET status = 'waiting', wake_at = %s, "
                           "updated_at = now() WHERE id = %s", [now + timedelta(hours=1), run.pk])
    floor = time.perf_counter() - start

    open_batches = list(DigestBatch.objects.filter(status="open", workflow=workflow)
                        .values_list("pk", flat=True))
    DigestBatch.objects.filter(pk__in=open_batches).update(closes_at=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM django_q_ormq")
    start = time.perf_counter()
    for batch_id in open_batches:
        flush_digest(str(batch_id))
    drain()  # each carrier's advance_run: its in-app digest
    closes = time.perf_counter() - start
    digests = Message.objects.filter(workflow=workflow, step_ref="inbox").count()
    assert digests == keys, f"{digests} digests, expected {keys}"

    print(f"(b) digest: {events:,} events into {keys:,} keys")
    print(f"  joins    {joins:8.2f} s   {events / joins:9.0f} events/s")
    print(f"  floor    {floor:8.2f} s   {events / floor:9.0f} events/s  (the same rows, bare "
          f"SQL)")
    print(f"  ratio    {joins / floor:8.1f}x")
    print(f"  closes   {closes:8.2f} s   {keys / closes:9.0f} batches/s  (close, carrier, in-app "
          f"digest of 10 events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--only", choices=("fanout", "digest"))
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from clarion.collector import freeze_loaded

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES} CASCADE")
    freeze_loaded()  # as a qcluster worker does when it starts (its post_spawn signal)
    print(f"Clarion fan-out benchmark, PostgreSQL {connection.pg_version}")
    if args.only != "digest":
        fanout(args.subscribers)
    if args.only != "fanout":
        digest(args.events, args.keys)
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLES} CASCADE")


if __name__ == "__main__":
    main()
