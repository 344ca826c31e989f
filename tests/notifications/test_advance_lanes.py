"""Advance lanes (engine/claim.py, tasks.advance_lane): a trigger whose batch falls in a lane that
a task holds queues no task, and still every run is walked exactly once — when the lane's task
releases it just as such a trigger commits, when a worker is killed holding it, when its task is
lost."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import OrmQ

from notifications import tasks
from notifications.models import AdvanceLane, Message, Run, StepLog
from notifications.services import TriggerRequest, trigger_workflow, trigger_workflow_idempotent
from notifications.tasks import advance_lane

from ..conftest import email_step, in_app_step, queued_tasks
from ..e2e_support import served_database_url
from .test_advance_claim import WALK_THEN_HANG

ROOT = Path(settings.BASE_DIR)
LANE_TASK = "notifications.tasks.advance_lane"


def _trigger(workflow, tag: str, *, statement: bool = False) -> str:
    """One single-recipient trigger (as the API makes it), committed; its run's id. With
    `statement`, as the API writes it on PostgreSQL: one statement (services/
    trigger_statement.py) rather than trigger_workflow's transaction of several."""
    request = TriggerRequest(workflow=workflow, recipients=[
        {"id": tag, "email": f"{tag}@example.com"}])
    if statement:
        answer = trigger_workflow_idempotent(request=request, idempotency_key=None,
                                             request_fingerprint=None)
        return answer.body["runs"][0]["id"]
    return str(trigger_workflow(request)[1][0].pk)


def _walked_once(run_ids: list[str]) -> bool:
    """Every run completed with exactly one message per step and one `completed` entry."""
    return (Run.objects.filter(pk__in=run_ids, status="completed").count() == len(run_ids)
            and Message.objects.filter(run_id__in=run_ids).count() == 2 * len(run_ids)
            and StepLog.objects.filter(run_id__in=run_ids, event="completed").count()
            == len(run_ids))


@pytest.fixture
def workflow(make_workflow, clarion_settings):
    clarion_settings(ADVANCE_LANES=1, ADVANCE_BATCH_SIZE=5)
    return make_workflow("w", steps=[in_app_step(), email_step()])


def test_triggers_in_a_held_lane_queue_no_task_and_its_task_walks_them_all(workflow, run_tasks):
    run_ids = [_trigger(workflow, f"p{i}") for i in range(12)]
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, run_ids[0])]

    ran = run_tasks()

    # One advance task for twelve triggers: batches of 5, 5 and 2, then the lane released.
    assert ran.count(LANE_TASK) == 1
    assert _walked_once(run_ids)
    assert not AdvanceLane.objects.exists()


def test_a_trigger_after_the_lane_was_released_queues_a_task_of_its_own(workflow, run_tasks):
    first = _trigger(workflow, "p1")
    run_tasks()
    assert not AdvanceLane.objects.exists()

    second = _trigger(workflow, "p2")

    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, second)]
    assert run_tasks().count(LANE_TASK) == 1
    assert _walked_once([first, second])


def test_a_lane_task_past_its_budget_hands_the_lane_to_a_new_task(workflow, run_tasks,
                                                                  monkeypatch):
    monkeypatch.setattr(tasks, "LANE_BUDGET_SECONDS", 0.0)
    run_ids = [_trigger(workflow, f"p{i}") for i in range(12)]

    ran = run_tasks()

    # Each full batch (5, 5) queues the next task in its transaction; the third finds 2 and ends.
    assert ran.count(LANE_TASK) == 3
    assert _walked_once(run_ids)
    assert not AdvanceLane.objects.exists()


def test_a_lane_whose_task_was_lost_is_taken_by_one_new_task_once_stale(workflow, run_tasks):
    lost = _trigger(workflow, "p1")
    OrmQ.objects.all().delete()  # as the Redis broker's task popped by a worker killed at once
    held = _trigger(workflow, "p2")
    assert not queued_tasks(LANE_TASK)  # the lane still looks held: no task of its own

    stale = timezone.now() - timedelta(seconds=settings.CLARION["ADVANCE_LANE_STALE_SECONDS"] + 1)
    AdvanceLane.objects.update(touched_at=stale)
    third = _trigger(workflow, "p3")

    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, third)]
    fourth = _trigger(workflow, "p4")  # the third trigger's task holds the lane again
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, third)]
    run_tasks()
    assert _walked_once([lost, held, third, fourth])  # its claims took the others as well


postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'",
                                     reason="row locks held by other sessions: PostgreSQL")


def _waiting_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@postgresql_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("statement", [False, True], ids=["transaction", "one-statement"])
def test_a_trigger_committing_as_the_lane_is_released_is_walked_by_the_releasing_task(
        workflow, statement):
    """The race: a trigger sees the lane held (so it queues no task) while the lane's task, having
    found its last batch short, releases the lane. The release waits for that trigger to commit,
    and the task's next claim walks its run."""
    first = _trigger(workflow, "p1")
    in_trigger, commit, failures = threading.Event(), threading.Event(), []
    second: list[str] = []
    worker_pid: list[int] = []

    def trigger_then_wait() -> None:
        try:
            with transaction.atomic():
                # the lane is held: no task
                second.append(_trigger(workflow, "p2", statement=statement))
                in_trigger.set()
                commit.wait(30)
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)
        finally:
            in_trigger.set()
            connection.close()

    def lane_task() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                worker_pid.append(cursor.fetchone()[0])
            advance_lane(0, first)
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)
        finally:
            connection.close()

    triggering = threading.Thread(target=trigger_then_wait)
    triggering.start()
    assert in_trigger.wait(30)
    working = threading.Thread(target=lane_task)
    working.start()
    try:
        deadline = time.monotonic() + 30
        while not (worker_pid and _waiting_for_a_lock(worker_pid[0])):
            assert working.is_alive() and time.monotonic() < deadline, (
                "the lane's release did not wait for the trigger that saw the lane held")
            time.sleep(0.02)
        # The task walked its batch (committed) and is releasing; the trigger has not committed.
        assert _walked_once([first])
        assert Run.objects.count() == 1
    finally:
        commit.set()
        triggering.join(30)
        working.join(30)
    assert not failures
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, first)]  # the second: none
    assert _walked_once([first, *second])
    assert not AdvanceLane.objects.exists()


KILLED_WORKER = WALK_THEN_HANG + "tasks.advance_lane(0, sys.argv[1])\n"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_lane_task_killed_mid_batch_is_presented_again_and_walks_every_run_once(
        workflow, run_tasks):
    """SIGKILL while the lane's task walks: nothing commits, the lane stays held (triggers
    meanwhile queue no task), and the task, presented again by the ORM broker, walks them all."""
    run_ids = [_trigger(workflow, f"p{i}") for i in range(3)]
    env = dict(os.environ, DATABASE_URL=served_database_url(), SECRET_KEY=settings.SECRET_KEY,
               DJANGO_SETTINGS_MODULE="clarion.settings", CLARION_ADVANCE_LANES="1",
               CLARION_ADVANCE_BATCH_SIZE="5")
    worker = subprocess.Popen([sys.executable, "-c", KILLED_WORKER, run_ids[0]], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline().split() == ["walked", "3"]
        run_ids.append(_trigger(workflow, "p3"))  # while the task is running
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        worker.stdout.close()
    assert not Message.objects.filter(run_id__in=run_ids).exists()  # nothing committed
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, run_ids[0])]

    deadline = time.monotonic() + 10  # PostgreSQL ends the dead session's transaction
    while not _claimable(run_ids):
        assert time.monotonic() < deadline, "the killed worker's runs stayed locked"
        time.sleep(0.1)
    # The killed worker's task, presented again (after Q_CLUSTER["retry"]).
    assert run_tasks().count(LANE_TASK) == 1
    assert _walked_once(run_ids)
    assert not AdvanceLane.objects.exists()


def _claimable(run_ids: list[str]) -> bool:
    """No other session holds any of `run_ids`' rows."""
    with transaction.atomic():
        return Run.objects.select_for_update(skip_locked=True).filter(
            pk__in=run_ids).count() == len(run_ids)


def _lane_row_locker() -> str:
    """The lane row's xmax: '0' when no transaction ever locked or deleted it (a row lock sets
    it, to a MultiXact id when several transactions held it at once)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT xmax::text FROM {AdvanceLane._meta.db_table} WHERE lane = 0")
        return cursor.fetchone()[0]


def _in_trigger(workflow, tag: str, commit: threading.Event, ready: threading.Event,
                out: list, failures: list) -> threading.Thread:
    """A thread making a single-recipient trigger in a transaction that stays open until
    `commit`; `ready` is set once the trigger's statements ran (or it failed)."""
    def run() -> None:
        try:
            with transaction.atomic():
                out.append(_trigger(workflow, tag))
                ready.set()
                commit.wait(60)
        except Exception as error:  # pragma: no cover - reported by the test
            failures.append(error)
        finally:
            ready.set()
            connection.close()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _lock_waiters() -> int:
    """How many sessions of this test database wait for a lock (a row's or an advisory one)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_triggers_that_see_the_lane_held_lock_no_lane_row(workflow):
    """Overlapping triggers in a held lane would each lock its row (FOR KEY SHARE), making a
    MultiXact per trigger at scale (their ids and member space are vacuumed and frozen
    database-wide); they take a shared advisory lock instead and leave the row untouched."""
    _trigger(workflow, "p0")  # holds the lane
    assert _lane_row_locker() == "0"
    commit, failures, out = threading.Event(), [], []
    ready = [threading.Event(), threading.Event()]
    threads = [_in_trigger(workflow, f"p{i + 1}", commit, ready[i], out, failures)
               for i in range(2)]
    try:
        assert all(event.wait(30) for event in ready)
        assert len(out) == 2  # both open at once, each saw the lane held
    finally:
        commit.set()
        for thread in threads:
            thread.join(30)
    assert not failures
    assert len(queued_tasks(LANE_TASK)) == 1
    assert _lane_row_locker() == "0"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_lane_release_waits_only_for_the_triggers_that_came_before_it(workflow, run_tasks,
                                                                        monkeypatch):
    """A stream of overlapping triggers must not starve the release: a row lock FOR KEY SHARE
    taken while the release's DELETE waits is granted at once (the DELETE then waits for it
    too, and for the next), so a task waited as long as triggers overlapped while their runs
    waited for it. A trigger that asks after the release waits behind it instead, then sees the
    lane free and queues a task of its own."""
    from notifications.engine import claim
    monkeypatch.setattr(claim, "RELEASE_LOCK_TIMEOUT_MS", 60_000)  # this release does not give up
    first = _trigger(workflow, "p0")
    commit_a, commit_b, failures = threading.Event(), threading.Event(), []
    ready_a, ready_b, out = threading.Event(), threading.Event(), []
    before = _in_trigger(workflow, "p1", commit_a, ready_a, out, failures)
    released = threading.Event()

    def release() -> None:
        try:
            from notifications import engine
            if engine.lane_release(0):
                released.set()
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)
        finally:
            connection.close()

    releasing = threading.Thread(target=release)
    after = None
    try:
        assert ready_a.wait(30) and len(out) == 1
        releasing.start()
        deadline = time.monotonic() + 30
        while _lock_waiters() < 1:  # the release waits for the first trigger
            assert not released.is_set() and time.monotonic() < deadline
            time.sleep(0.02)
        after = _in_trigger(workflow, "p2", commit_b, ready_b, out, failures)
        deadline = time.monotonic() + 30
        while not (ready_b.is_set() or _lock_waiters() >= 2):  # ran, or waits
            assert time.monotonic() < deadline
            time.sleep(0.02)
        commit_a.set()
        before.join(30)
        # The second trigger is still open (it commits on commit_b), yet the release is done.
        assert released.wait(20), "the release waited for a trigger that came after it"
        assert ready_b.wait(30) and len(out) == 2
    finally:
        commit_a.set()
        commit_b.set()
        for thread in (before, releasing, after):
            if thread is not None and thread.ident is not None:
                thread.join(30)
    assert not failures
    # The first trigger saw the lane held; the second, after the release, queued a task.
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, first), (0, out[1])]
    run_tasks()
    assert _walked_once([first, *out])


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_long_transaction_holding_the_lane_keeps_no_trigger_waiting_behind_the_release(
        workflow, monkeypatch):
    """A schedule's occurrence writes all its triggers in one transaction, holding their lanes
    for as long. A release waiting for it would keep every trigger after it in the lane waiting
    as long (they queue behind the release's exclusive lock): the release gives up after
    RELEASE_LOCK_TIMEOUT_MS instead, its task claims what has committed and tries again, and
    walks the long transaction's runs once it commits."""
    from notifications.engine import claim
    monkeypatch.setattr(claim, "RELEASE_LOCK_TIMEOUT_MS", 2000)  # long enough to be seen
    first = _trigger(workflow, "p0")
    commit_long, commit_after, failures = threading.Event(), threading.Event(), []
    ready_long, ready_after, out = threading.Event(), threading.Event(), []
    long = _in_trigger(workflow, "p1", commit_long, ready_long, out, failures)
    working = threading.Thread(target=lambda: (advance_lane(0, first), connection.close()))
    after = None
    try:
        assert ready_long.wait(30) and len(out) == 1
        working.start()
        deadline = time.monotonic() + 30
        while _lock_waiters() < 1:  # the release waits for the long transaction
            assert working.is_alive() and time.monotonic() < deadline
            time.sleep(0.02)
        after = _in_trigger(workflow, "p2", commit_after, ready_after, out, failures)
        # The long transaction is still open, yet the later trigger got through.
        assert ready_after.wait(20), "a trigger waited behind the release for a long transaction"
        assert len(out) == 2 and working.is_alive()
        commit_after.set()
        after.join(30)
    finally:
        commit_long.set()
        commit_after.set()
        for thread in (long, working, after):
            if thread is not None and thread.ident is not None:
                thread.join(30)
    assert not failures and not working.is_alive()
    assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, first)]  # no other task
    assert _walked_once([first, *out])  # the task walked them once both committed
    assert not AdvanceLane.objects.exists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_release_kept_waiting_past_the_budget_hands_the_lane_to_a_new_task(
        workflow, run_tasks, monkeypatch):
    monkeypatch.setattr(tasks, "LANE_BUDGET_SECONDS", 0.0)
    first = _trigger(workflow, "p0")
    commit, ready, failures, out = threading.Event(), threading.Event(), [], []
    long = _in_trigger(workflow, "p1", commit, ready, out, failures)
    try:
        assert ready.wait(30) and len(out) == 1
        advance_lane(0, first)  # walks the first run; its release gives up and hands over

        assert [args for args, _ in queued_tasks(LANE_TASK)] == [(0, first), (0,)]
        assert AdvanceLane.objects.filter(lane=0).exists()  # still held
    finally:
        commit.set()
        long.join(30)
    assert not failures
    run_tasks()
    assert _walked_once([first, *out])
    assert not AdvanceLane.objects.exists()


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_schedule_firing_in_a_long_transaction_keeps_no_trigger_waiting(workflow, run_tasks):
    """A schedule's occurrence writes all its triggers in one transaction (the zone's row lock).
    Marking a free lane held inserts its row, and a trigger in that lane meanwhile waits for
    that insert to commit (ON CONFLICT): the occurrence's runs get plain advance_runs tasks
    instead, holding no lane, so an API trigger meanwhile goes through."""
    from datetime import UTC, datetime

    from notifications import schedules, services
    services.recipient_upsert(external_id="ny", timezone="America/New_York")
    schedules.schedule_put(key="morning", workflow=workflow,
                           now=datetime(2026, 3, 6, 12, tzinfo=UTC),
                           repeat={"frequency": "daily", "at": "09:00", "days": [],
                                   "day_of_month": None}, recipients=["ny"])
    at = datetime(2026, 3, 6, 14, 0, 1, tzinfo=UTC)
    [zone_id] = list(schedules.schedules_due(at))
    commit, fired, failures, fired_runs = threading.Event(), threading.Event(), [], []

    def fire() -> None:
        try:
            with transaction.atomic():  # held open as a long occurrence's would be
                [trigger] = schedules.schedule_fire(zone_id=zone_id, now=at)
                fired_runs.extend(str(pk) for pk in trigger.runs.values_list("pk", flat=True))
                fired.set()
                commit.wait(60)
        except Exception as error:  # pragma: no cover - reported below
            failures.append(error)
        finally:
            fired.set()
            connection.close()

    firing = threading.Thread(target=fire)
    firing.start()
    api_done, out, api_commit = threading.Event(), [], threading.Event()
    api_commit.set()
    api = None
    try:
        assert fired.wait(30) and fired_runs
        api = _in_trigger(workflow, "p1", api_commit, api_done, out, failures)
        assert api_done.wait(20) and out, "an API trigger waited for the schedule's transaction"
    finally:
        commit.set()
        firing.join(30)
        if api is not None:
            api.join(30)
    assert not failures
    run_tasks()
    assert _walked_once([*fired_runs, *out])
