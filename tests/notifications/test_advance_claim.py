"""Advance tasks claim their runs with SKIP LOCKED and top their batch up with other due runs
(engine/claim.py): nothing is walked twice, nothing is lost when a worker holding a batch dies,
and a batch's deliveries go out as one task."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from django.conf import settings
from django.db import connection  # noqa: F401  (the skipif condition reads it)

from notifications.models import Message, Run, StepLog
from notifications.services import TriggerRequest, trigger_workflow
from notifications.tasks import advance_runs

from ..conftest import email_step, in_app_step, queued_tasks
from ..e2e_support import served_database_url

ROOT = Path(settings.BASE_DIR)


def _trigger(workflow, count: int) -> list[str]:
    """`count` single-recipient triggers (as the API makes them); their run ids, in order."""
    return [str(trigger_workflow(TriggerRequest(workflow=workflow, recipients=[
        {"id": f"p{i}", "email": f"p{i}@example.com"}]))[1][0].pk) for i in range(count)]


def _walked_once(run_ids: list[str]) -> bool:
    """Every run completed with exactly one message per step and one `completed` entry."""
    return (Run.objects.filter(pk__in=run_ids, status="completed").count() == len(run_ids)
            and Message.objects.filter(run_id__in=run_ids).count() == 2 * len(run_ids)
            and StepLog.objects.filter(run_id__in=run_ids, event="completed").count()
            == len(run_ids))


@pytest.fixture
def workflow(make_workflow):
    return make_workflow("w", steps=[in_app_step(), email_step()])


def test_a_task_tops_its_batch_up_with_due_runs_and_their_own_tasks_cost_one_query(
        workflow, django_assert_num_queries, clarion_settings):
    clarion_settings(ADVANCE_LANES=1)
    run_ids = _trigger(workflow, 3)
    # The first trigger's task holds the one advance lane: the others queue none.
    assert [args for args, _ in queued_tasks("notifications.tasks.advance_lane")] == [
        (0, run_ids[0])]

    advance_runs(run_ids[0])

    assert _walked_once(run_ids)
    emails = Message.objects.filter(run_id__in=run_ids, channel="email")
    assert [set(args) for args, _ in queued_tasks("notifications.tasks.deliver_messages")] == [
        {str(pk) for pk in emails.values_list("pk", flat=True)}]
    assert not queued_tasks("notifications.tasks.deliver_message")
    with django_assert_num_queries(1):  # is any of my runs still due? no: done
        advance_runs(run_ids[1])
    assert _walked_once(run_ids)


def test_the_top_up_leaves_runs_older_than_the_stuck_horizon_to_the_sweeper(workflow):
    run_ids = _trigger(workflow, 2)
    Run.objects.filter(pk=run_ids[1]).update(updated_at="2020-01-01T00:00:00Z")

    advance_runs(run_ids[0])

    assert Run.objects.get(pk=run_ids[0]).status == "completed"
    assert Run.objects.get(pk=run_ids[1]).status == "running"
    advance_runs(run_ids[1])  # named explicitly (its own task, the sweeper's): walked
    assert _walked_once(run_ids)


postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'",
                                     reason="row locks held by another session: PostgreSQL")


def _libpq_url() -> str:
    """The test database's URL for libpq: without the Django connection OPTIONS that
    served_database_url passes on (prepare_threshold is psycopg's, not a libpq parameter)."""
    return served_database_url().partition("?")[0]


def _lock(run_id: str) -> psycopg.Connection:
    """Another session (another worker) holding `run_id`'s row lock, until it is closed."""
    other = psycopg.connect(_libpq_url())
    other.execute("SELECT id FROM notifications_run WHERE id = %s FOR UPDATE", [run_id])
    return other


def _die(held: psycopg.Connection) -> None:
    """The worker holding `held` dies: its connection drops, and once PostgreSQL has noticed
    (its backend gone, at most 10 s), its transaction is rolled back and its locks are free.
    Closing alone returns before the server has seen it, and a SKIP LOCKED claim made at once
    could still skip the row (CI met this on a loaded machine)."""
    pid = held.info.backend_pid
    held.close()
    with psycopg.connect(_libpq_url(), autocommit=True) as observer:
        deadline = time.monotonic() + 10
        while observer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                               [pid]).fetchone():
            assert time.monotonic() < deadline, "the closed session's backend is still there"
            time.sleep(0.02)


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_run_another_worker_holds_is_skipped_without_waiting_and_taken_once_it_is_free(
        workflow):
    run_ids = _trigger(workflow, 3)
    held = _lock(run_ids[1])
    try:
        advance_runs(run_ids[0])  # its batch: run 0 and run 2, not the held run 1
        assert [Run.objects.get(pk=pk).status for pk in run_ids] == [
            "completed", "running", "completed"]
        started = time.monotonic()
        advance_runs(run_ids[1])  # held elsewhere: that worker's, this task ends at once
        assert time.monotonic() - started < 2
        assert Run.objects.get(pk=run_ids[1]).status == "running"
    finally:
        _die(held)  # that worker died: its transaction rolls back, its lock goes
    advance_runs(run_ids[1])
    assert _walked_once(run_ids)


# A worker process whose batch walks its runs, says so, and hangs before committing (then the
# test kills it); the task it runs follows (test_advance_lanes runs an advance lane's).
WALK_THEN_HANG = """
import sys, time, django
django.setup()
from notifications import engine, tasks
walk = engine.advance_batch
def walk_then_hang(run_ids, *, now):
    walk(run_ids, now=now)
    print("walked", len(run_ids), flush=True)
    time.sleep(120)  # killed here, before the batch's transaction commits
tasks.engine.advance_batch = walk_then_hang
"""
KILLED_WORKER = WALK_THEN_HANG + "tasks.advance_runs(sys.argv[1])\n"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_batch_commits_nothing_and_each_run_is_then_walked_once(workflow):
    run_ids = _trigger(workflow, 4)
    env = dict(os.environ, DATABASE_URL=served_database_url(), SECRET_KEY=settings.SECRET_KEY,
               DJANGO_SETTINGS_MODULE="clarion.settings")
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, run_ids[0]], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().split() == ["walked", "4"]
        assert Run.objects.filter(pk__in=run_ids, status="running").count() == 4
        started = time.monotonic()
        advance_runs(run_ids[1])  # every run is in the live worker's batch: nothing to do
        assert time.monotonic() - started < 2
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stdout.close()
    assert not Message.objects.filter(run_id__in=run_ids).exists()  # nothing committed
    deadline = time.monotonic() + 10  # PostgreSQL ends the dead session's transaction
    while Run.objects.filter(pk__in=run_ids, status="running").count() == 4:
        advance_runs(run_ids[2])
        assert time.monotonic() < deadline, "the killed worker's runs were never taken again"
        time.sleep(0.1)
    advance_runs(*run_ids)
    assert _walked_once(run_ids)
