"""A fan-out's runs written a table at a time (notifications/engine/writes.py): the statements of
a fan-out chunk (its runs created and walked in one transaction) and of an advance batch do not
grow with their size, and a chunk or batch killed mid-write, or replayed, writes nothing twice."""

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from inbox.models import InboxItem
from notifications import engine, services
from notifications.engine.writes import Writes
from notifications.models import DigestBatch, Message, Recipient, Run, StepLog, Topic
from notifications.services import StepSpec
from notifications.tasks import advance_runs
from preferences.services import preference_set_update
from tests.e2e_support import served_database_url

from ..conftest import advance_at, delay_step, email_step, in_app_step
from .test_fanout import subscribe

TRIGGER = "/api/v1/workflows/welcome/trigger"
ROOT = Path(__file__).resolve().parents[2]


def _people(key: str, count: int) -> list[Recipient]:
    """`count` new recipients with email addresses, the first one opted out of in-app."""
    topic = Topic.objects.create(key=key)
    people = subscribe(topic, count, prefix=f"{key}-")
    Recipient.objects.filter(pk__in=[p.pk for p in people]).update(email="p@example.com")
    preference_set_update(recipient=people[0], merge=True,
                          data={"channel_types": {"in_app": False}})
    return people


def _fan_out(api, key: str, count: int) -> str:
    """A trigger to a new topic `key` of `count` _people; returns its id. Its runs are not
    created yet."""
    _people(key, count)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": key}],
                                    "data": {"body": "News"}}).json()["trigger_id"]
    return trigger_id


def _direct(api, key: str, count: int) -> str:
    """A trigger to `count` _people named one by one; returns its id. Its runs are created,
    their advance tasks not run."""
    people = _people(key, count)
    return api.post(TRIGGER, {"recipients": [p.external_id for p in people],
                              "data": {"body": "News"}}).json()["trigger_id"]


def _runs(trigger_id: str) -> list[str]:
    """The trigger's run ids, the opted-out subscriber's first."""
    return [str(pk) for pk in Run.objects.filter(trigger_id=trigger_id)
            .order_by("recipient__external_id").values_list("pk", flat=True)]


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """The statements the code issued: an INSERT or UPDATE the backend split into several
    (SQLite caps the parameters of one statement; bulk_update there) counts once."""
    statements: list[str] = []
    for query in captured.captured_queries:
        sql = query["sql"]
        head = (sql.split("(", 1)[0] if sql.startswith("INSERT") else
                sql.split(" SET ", 1)[0] if sql.startswith("UPDATE") else None)
        if head is None or not statements or statements[-1] != head:
            statements.append(head or sql)
    return statements


def _timeline(run_id: str) -> list[tuple[str, str]]:
    return [(log.step_ref, log.event) for log in
            StepLog.objects.filter(run_id=run_id).order_by("created_at", "pk")]


def _assert_walked(run_ids: list[str], count: int, mail: tuple = ("queued",)) -> None:
    """Each of the runs walked once: completed, an in-app item (but the opted-out first), an
    email (its status in `mail`), and their timelines."""
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == count
    assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == count - 1
    assert Message.objects.filter(run_id__in=run_ids, step_ref="mail",
                                  status__in=mail).count() == count
    # (then the email's delivery, when it ran)
    assert _timeline(run_ids[0])[:4] == [("", "triggered"), ("inbox", "opted_out"),
                                         ("mail", "queued"), ("", "completed")]
    assert all(_timeline(pk)[:4] == [("", "triggered"), ("inbox", "sent"), ("mail", "queued"),
                                     ("", "completed")] for pk in run_ids[1:])
    sent = StepLog.objects.get(run_id=run_ids[1], step_ref="inbox", event="sent")
    assert sent.detail["inbox_item_id"] == InboxItem.objects.get(
        message__run_id=run_ids[1]).pk


# The statements of one fan-out chunk (of up to FANOUT_BATCH_SIZE subscribers), whatever its
# size, on PostgreSQL: the trigger's lock, audience reads and progress, the runs' triggered
# entries, the walk's savepoint, its reads (one each: recipients, preferences, steps,
# templates, versions, defaults, the layout) and writes (one per table, COPY for new rows:
# messages, item-order locks, item ids, items, the runs in their final state, timeline,
# endpoints, facts, delivery tasks); 4 are the savepoints of the test's transaction. A
# change that makes it grow per subscriber fails the comparison below; one that adds a
# statement per chunk must raise this bound on purpose.
FANOUT_CHUNK_STATEMENTS = 27


def test_a_fan_out_chunk_costs_the_same_statements_for_50_and_200_subscribers(
        api, make_workflow):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    statements = {}
    for count in (50, 200):
        trigger_id = _fan_out(api, f"t{count}", count)
        with CaptureQueriesContext(connection) as fanned:
            services.trigger_fanout(trigger_id=trigger_id)  # one chunk: created and walked
        statements[count] = _statements(fanned)
        if connection.vendor == "postgresql":  # no cap: every INSERT is one statement
            assert len(statements[count]) == len(fanned)
        _assert_walked(_runs(trigger_id), count)
        assert not OrmQ.objects.filter(key="notifications.tasks.advance_runs").exists()

    # Four times the subscribers, the same statements: one per table for the whole chunk.
    assert len(statements[200]) == len(statements[50]) <= FANOUT_CHUNK_STATEMENTS


def test_an_advance_batch_costs_the_same_statements_for_50_and_200_runs(api, make_workflow,
                                                                       clarion_settings):
    # Both batches full (no top-up query): a task's own runs, at least a batch of them.
    clarion_settings(ADVANCE_BATCH_SIZE=50)
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    statements = {}
    for count in (50, 200):
        trigger_id = _direct(api, f"t{count}", count)
        run_ids = _runs(trigger_id)
        with CaptureQueriesContext(connection) as advanced:
            advance_runs(*run_ids)  # the whole trigger as one batch
        statements[count] = _statements(advanced)
        if connection.vendor == "postgresql":
            assert len(statements[count]) == len(advanced)
        _assert_walked(run_ids, count)

    assert len(statements[200]) == len(statements[50]) <= 30


def test_a_fan_out_chunk_whose_walk_fails_leaves_its_runs_to_advance_tasks(
        api, make_workflow, monkeypatch, run_tasks):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    trigger_id = _fan_out(api, "t", 6)
    real = engine.batch.Batch.write

    def dies_at_the_end(self):
        real(self)  # the chunk's rows are written, in its savepoint
        raise RuntimeError("the walk failed")

    monkeypatch.setattr(engine.batch.Batch, "write", dies_at_the_end)
    services.trigger_fanout(trigger_id=trigger_id)
    run_ids = _runs(trigger_id)

    # The runs and their triggered entries stand; nothing of the walk does.
    assert Run.objects.filter(pk__in=run_ids, status="running").count() == 6
    assert not Message.objects.filter(run_id__in=run_ids).exists()
    assert not InboxItem.objects.exists()
    assert set(StepLog.objects.filter(run_id__in=run_ids).values_list("event", flat=True)) == {
        "triggered"}
    monkeypatch.setattr(engine.batch.Batch, "write", real)
    assert "notifications.tasks.advance_runs" in run_tasks()  # and the emails' deliveries
    _assert_walked(run_ids, 6, mail=("sent", "failed"))


def test_a_replayed_write_inserts_nothing_twice_and_drops_its_entries(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()])
    trigger_id = _fan_out(api, "t", 3)
    services.trigger_fanout(trigger_id=trigger_id)  # the runs created and walked
    run_ids = _runs(trigger_id)
    stored = {m.run_id: m for m in Message.objects.filter(run_id__in=run_ids)}
    before = (Message.objects.count(), InboxItem.objects.count(), OrmQ.objects.count(),
              StepLog.objects.count())

    # The same decisions again, as a pass that read no messages would make them: new ids, the
    # same (run, step, channel).
    writes = Writes()
    entries = []
    with transaction.atomic():
        for run in Run.objects.filter(pk__in=run_ids).select_related("recipient", "workflow",
                                                                      "tenant"):
            step = run.workflow.steps.get(ref="inbox")
            again = Message(run=run, step=step, step_ref="inbox", recipient=run.recipient,
                            workflow=run.workflow, tenant=run.tenant, channel="in_app",
                            status="sent", content={"body": "again"}, sent_at=timezone.now())
            entry = StepLog(run=run, step_ref="inbox", event="sent",
                            detail={"message_id": str(again.id), "inbox_item_id": None})
            writes.message(again)
            writes.inbox_item(again, {"body": "again"}, entry)
            writes.deliver(again)
            entries.append(entry)
        writes.flush()

    assert (Message.objects.count(), InboxItem.objects.count(), OrmQ.objects.count(),
            StepLog.objects.count()) == before
    assert {m.run_id: m for m in Message.objects.filter(run_id__in=run_ids)} == stored
    assert not any(writes.keeps(entry) for entry in entries)
    assert len(writes.duplicates) == 3


KILLED_WORKER = textwrap.dedent("""
    import os, signal, sys
    import django
    django.setup()
    from inbox import services
    from notifications.services import trigger_fanout
    from notifications.tasks import advance_runs

    real = services.inbox_items_create

    def dies_after_writing(**kwargs):
        created = real(**kwargs)  # the Messages and InboxItems are written, not committed
        os.kill(os.getpid(), signal.SIGKILL)
        return created

    services.inbox_items_create = dies_after_writing
    if sys.argv[1] == "fanout":
        trigger_fanout(trigger_id=sys.argv[2])
    else:
        advance_runs(*sys.argv[2:])
""")


@pytest.mark.parametrize("task", ["fanout", "advance"])
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_write_commits_nothing_and_the_replay_writes_each_row_once(
        api_key, make_workflow, task):
    from ..conftest import client_for

    api = client_for(api_key[1])
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    if task == "fanout":  # killed in the chunk's walk: the chunk's runs are not committed
        trigger_id = _fan_out(api, "t", 40)
        args = [trigger_id]
    else:  # killed in an advance batch of a direct trigger's runs
        trigger_id = _direct(api, "t", 40)
        args = _runs(trigger_id)
    env = {**os.environ, "DATABASE_URL": served_database_url(),
           "DJANGO_SETTINGS_MODULE": "clarion.settings"}

    worker = subprocess.run([sys.executable, "-c", KILLED_WORKER, task, *args], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=120)

    assert worker.returncode == -signal.SIGKILL, worker.stderr[-2000:]
    run_ids = _runs(trigger_id)
    assert not Message.objects.filter(run__trigger_id=trigger_id).exists()
    assert not InboxItem.objects.exists()
    if task == "fanout":
        assert run_ids == []
        services.trigger_fanout(trigger_id=trigger_id)  # the task, presented again
        services.trigger_fanout(trigger_id=trigger_id)  # and once more
        run_ids = _runs(trigger_id)
    else:
        assert Run.objects.filter(pk__in=run_ids, status="running").count() == 40
        advance_runs(*run_ids)  # the task, presented again
        advance_runs(*run_ids)  # and once more (a duplicate delivery of the task)

    assert len(run_ids) == 40
    assert Message.objects.filter(run_id__in=run_ids, step_ref="inbox").count() == 40
    _assert_walked(run_ids, 40)


def test_a_fan_out_chunk_writes_each_run_once_in_the_state_its_walk_left_it(
        api, make_workflow):
    make_workflow("welcome", steps=[in_app_step(), delay_step(hours=1), email_step()])
    trigger_id = _fan_out(api, "t", 5)
    with CaptureQueriesContext(connection) as fanned:
        services.trigger_fanout(trigger_id=trigger_id)

    # No run is updated after its walk: each is inserted waiting at its delay.
    assert not [q["sql"] for q in fanned.captured_queries
                if q["sql"].startswith("UPDATE") and "notifications_run" in q["sql"]]
    run_ids = _runs(trigger_id)
    runs = Run.objects.filter(pk__in=run_ids)
    assert {(run.status, run.cursor, tuple(run.step_refs)) for run in runs} == {
        ("waiting", 1, ("inbox", "wait", "mail"))}
    for run in runs:
        triggered = StepLog.objects.get(run=run, event="triggered")
        assert run.created_at <= triggered.created_at <= run.updated_at
        hour = timedelta(hours=1)  # from the walk's clock, between the two
        assert run.created_at + hour <= run.wake_at <= run.updated_at + hour
    assert _timeline(run_ids[1]) == [("", "triggered"), ("inbox", "sent"), ("wait", "delayed")]
    assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == 4

    # Woken after the hour, each goes on from its delay: the email, and completed.
    for run in runs:
        advance_at(run, timezone.now() + timedelta(hours=2))
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == 5
    assert Message.objects.filter(run_id__in=run_ids, step_ref="mail").count() == 5


def test_a_fan_out_through_a_digest_step_closes_and_carries_before_its_runs_are_written(
        api, make_workflow):
    # A digest's close locks and ends its batch's other runs (of earlier triggers) and picks
    # the closing run, not written yet (it is inserted after its walk), as carrier.
    make_workflow("welcome", steps=[
        StepSpec(ref="batch", type="digest",
                 config={"window": {"hours": 1}, "key": "data.thread", "max_events": 2}),
        in_app_step(ref="summary", body="{{ steps.batch.count }} new")])
    people = subscribe(Topic.objects.create(key="t"), 3, prefix="d-")
    first, second = (api.post(TRIGGER, {"recipients": [{"topic": "t"}],
                                        "data": {"thread": 7}}).json()["trigger_id"]
                     for _ in range(2))
    services.trigger_fanout(trigger_id=first)  # each subscriber's batch opens
    services.trigger_fanout(trigger_id=second)  # and fills: the second run closes and carries

    for person in people:
        opened = Run.objects.get(trigger_id=first, recipient=person)
        filled = Run.objects.get(trigger_id=second, recipient=person)
        batch = DigestBatch.objects.get(recipient=person)
        assert (batch.status, batch.close_reason, batch.carrier_id) == (
            "closed", "max_events", filled.pk)
        assert (opened.status, filled.status) == ("completed", "completed")
        assert _timeline(opened.pk)[-1] == ("batch", "digested")
        assert Message.objects.get(recipient=person, step_ref="summary").run_id == filled.pk
        assert InboxItem.objects.get(recipient=person).content == {"body": "2 new"}
