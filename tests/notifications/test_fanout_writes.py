"""A fan-out's runs written a table at a time (notifications/engine/writes.py): the queries of a
batch do not grow with its size, and a batch killed mid-write, or replayed, writes nothing twice."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from inbox.models import InboxItem
from notifications import services
from notifications.engine.writes import Writes
from notifications.models import Message, Recipient, Run, StepLog, Topic
from notifications.tasks import advance_runs
from preferences.services import preference_set_update
from tests.e2e_support import served_database_url

from ..conftest import email_step, in_app_step
from .test_fanout import subscribe

TRIGGER = "/api/v1/workflows/welcome/trigger"
ROOT = Path(__file__).resolve().parents[2]


def _fan_out(api, key: str, count: int) -> str:
    """A trigger to a new topic `key` of `count` subscribers (with email addresses, the first
    one opted out of in-app); returns its id. Its runs are not created yet."""
    topic = Topic.objects.create(key=key)
    people = subscribe(topic, count, prefix=f"{key}-")
    Recipient.objects.filter(pk__in=[p.pk for p in people]).update(email="p@example.com")
    preference_set_update(recipient=people[0], merge=True,
                          data={"channel_types": {"in_app": False}})
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": key}],
                                    "data": {"body": "News"}}).json()["trigger_id"]
    return trigger_id


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


def test_a_fan_out_costs_the_same_queries_for_50_and_200_subscribers(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    queries = {}
    for count in (50, 200):
        trigger_id = _fan_out(api, f"t{count}", count)
        with CaptureQueriesContext(connection) as fanned:
            services.trigger_fanout(trigger_id=trigger_id)
        run_ids = _runs(trigger_id)
        with CaptureQueriesContext(connection) as advanced:
            advance_runs(*run_ids)  # the whole fan-out as one batch
        queries[count] = (len(_statements(fanned)), len(_statements(advanced)))
        if connection.vendor == "postgresql":  # no cap: every INSERT is one statement
            assert queries[count] == (len(fanned), len(advanced))

        assert Run.objects.filter(pk__in=run_ids, status="completed").count() == count
        assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == count - 1
        assert Message.objects.filter(run_id__in=run_ids, step_ref="mail",
                                      status="queued").count() == count
        assert _timeline(run_ids[0]) == [("", "triggered"), ("inbox", "opted_out"),
                                         ("mail", "queued"), ("", "completed")]
        assert all(_timeline(pk) == [("", "triggered"), ("inbox", "sent"), ("mail", "queued"),
                                     ("", "completed")] for pk in run_ids[1:])
        sent = StepLog.objects.get(run_id=run_ids[1], event="sent")
        assert sent.detail["inbox_item_id"] == InboxItem.objects.get(
            message__run_id=run_ids[1]).pk

    # Four times the subscribers, the same statements: one per table for the whole batch.
    assert queries[200] == queries[50]
    assert queries[200][1] <= 30


def test_a_replayed_write_inserts_nothing_twice_and_drops_its_entries(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()])
    trigger_id = _fan_out(api, "t", 3)
    services.trigger_fanout(trigger_id=trigger_id)
    run_ids = _runs(trigger_id)
    advance_runs(*run_ids)
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
    from notifications.tasks import advance_runs

    real = services.inbox_items_create

    def dies_after_writing(**kwargs):
        created = real(**kwargs)  # the Messages and InboxItems are written, not committed
        os.kill(os.getpid(), signal.SIGKILL)
        return created

    services.inbox_items_create = dies_after_writing
    advance_runs(*sys.argv[1:])
""")


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_commits_nothing_and_the_replay_writes_each_row_once(
        api_key, make_workflow):
    from ..conftest import client_for

    api = client_for(api_key[1])
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    trigger_id = _fan_out(api, "t", 40)
    services.trigger_fanout(trigger_id=trigger_id)
    run_ids = _runs(trigger_id)
    env = {**os.environ, "DATABASE_URL": served_database_url(),
           "DJANGO_SETTINGS_MODULE": "clarion.settings"}

    worker = subprocess.run([sys.executable, "-c", KILLED_WORKER, *run_ids], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)

    assert worker.returncode == -signal.SIGKILL, worker.stderr[-2000:]
    assert not Message.objects.filter(run_id__in=run_ids).exists()
    assert not InboxItem.objects.filter(message__run_id__in=run_ids).exists()
    assert Run.objects.filter(pk__in=run_ids, status="running").count() == 40

    advance_runs(*run_ids)  # the task, presented again
    advance_runs(*run_ids)  # and once more (a duplicate delivery of the task)

    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == 40
    assert Message.objects.filter(run_id__in=run_ids, step_ref="inbox").count() == 40
    assert Message.objects.filter(run_id__in=run_ids, step_ref="mail").count() == 40
    assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == 39
    assert _timeline(run_ids[0]) == [("", "triggered"), ("inbox", "opted_out"),
                                     ("mail", "queued"), ("", "completed")]
    assert all(_timeline(pk) == [("", "triggered"), ("inbox", "sent"), ("mail", "queued"),
                                 ("", "completed")] for pk in run_ids[1:])
