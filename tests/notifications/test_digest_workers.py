"""The digest under real concurrency, on PostgreSQL: 50 triggers for one key from 8 threads
within one second, advanced by a `qcluster` with two worker processes, one of which is killed
(SIGKILL) in the middle of closing the batch. Exactly one run carries the batch and exactly one
email reaches the real SMTP server (aiosmtpd on 127.0.0.1), with all 50 events in trigger
order; triggers for another key make their own batch and email.

How the kill lands in the close: once every event has joined, the test holds the row lock of
one run in the batch; the close (at the window's end) locks the batch's runs and waits there,
inside its transaction. That worker is found from its PostgreSQL backend's client port and
killed; its transaction never commits. The sweeper (as each minute in production) wakes the
batch's runs, and one of them closes it.
"""

import contextlib
import os
import re
import signal
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, connections

from notifications.models import DigestBatch, DigestEvent, Message, Run, StepLog, Trigger
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
from notifications.tasks import sweep
from tests.processes import Cluster

from .providers.test_kill_run import wait

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="real worker processes against PostgreSQL")]

EVENTS, THREADS, OTHER_KEY_EVENTS = 50, 8, 3
WINDOW_SECONDS = 15


def _socket_inode(local_port: int) -> str | None:
    """The inode of the established TCP socket whose local port is `local_port`."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == local_port:
                    return fields[9]
    return None


def _owner(pids: list[int], inode: str) -> int | None:
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
    return None


def _closer_waiting_on_a_run_lock(holder_pid: int | None = None) -> int | None:
    """The client port of a backend waiting for a run's row lock while closing a batch (its
    SELECT … FOR UPDATE of the batch's runs; pg_stat_activity shows the query's start only);
    with `holder_pid`, only one that backend blocks: a close that waits on it keeps waiting
    until it lets go, whereas one queued a moment behind another worker's lock on an earlier
    run is waiting at one instant and not at the next."""
    blocked_by = "AND %s = ANY(pg_blocking_pids(pid)) " if holder_pid is not None else ""
    params = [holder_pid] if holder_pid is not None else []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() " + blocked_by + "AND query LIKE %s",
            [*params, 'SELECT "notifications_run"."id" AS "pk", "notifications_run"."cursor"%'])
        row = cursor.fetchone()
    return row[0] if row else None


def test_one_carrier_and_one_email_with_every_event_when_a_worker_dies_closing_the_batch(
        smtp_server, tmp_path):
    _, smtp_port, inbox = smtp_server
    workflow, _ = workflow_put(key="comments", name="Comments", steps=[
        StepSpec(ref="batch", type="digest",
                 config={"window": {"seconds": WINDOW_SECONDS}, "key": "data.thread"}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "{{ steps.batch.count }} new comments on {{ data.thread }}",
            "html": "<p>{% for event in steps.batch.events %}[{{ event.data.n }}]{% endfor %}"
                    "</p>"}}),
    ])
    cluster = Cluster(tmp_path / "qcluster.log", workers=2, extra_env={
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(smtp_port)})
    holder = None
    try:
        wait(lambda: len(cluster.workers()) == 2, "two workers ready", timeout=60)
        # 8 threads, 50 triggers for thread 1 (and 3 for thread 2) within one second.
        numbers = iter(range(EVENTS + OTHER_KEY_EVENTS))
        lock, start, failures = threading.Lock(), threading.Barrier(THREADS), []

        def fire():
            try:
                start.wait(20)
                while True:
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    thread = 2 if n % 17 == 5 else 1  # n = 5, 22, 39: the other key
                    trigger_workflow(TriggerRequest(
                        workflow=workflow, data={"thread": thread, "n": n},
                        recipients=[{"id": "ada", "email": "ada@example.com"}]))
            except Exception as exc:  # reported below
                failures.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=fire) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert failures == []
        assert Trigger.objects.count() == EVENTS + OTHER_KEY_EVENTS
        first, last = (Trigger.objects.order_by(order).values_list("created_at", flat=True)[0]
                       for order in ("created_at", "-created_at"))
        # About half a second on an idle 2-core machine; more when other suites load it.
        assert last - first < timedelta(seconds=3)
        print(f"\n{EVENTS + OTHER_KEY_EVENTS} triggers from {THREADS} threads within "
              f"{(last - first).total_seconds():.2f} s")

        wait(lambda: DigestEvent.objects.count() == EVENTS + OTHER_KEY_EVENTS,
             "every run joins its batch", timeout=WINDOW_SECONDS - 3)
        assert DigestBatch.objects.count() == 2  # one per key, every run in one of them
        batch = DigestBatch.objects.get(key_value=1)
        member = batch.events.order_by("run_id").last().run_id
        wrapper = connections["default"]
        holder = type(wrapper)(wrapper.settings_dict, alias="holder")
        holder.connect()
        holder.set_autocommit(False)
        with holder.cursor() as cursor:
            cursor.execute("SELECT 1 FROM notifications_run WHERE id = %s FOR UPDATE", [member])
            cursor.execute("SELECT pg_backend_pid()")
            holder_pid = cursor.fetchone()[0]

        closer_port = None

        def closer_blocked() -> bool:
            nonlocal closer_port
            closer_port = _closer_waiting_on_a_run_lock(holder_pid)
            return closer_port is not None

        wait(closer_blocked, "the close waits on the held run", timeout=WINDOW_SECONDS + 30)
        inode = _socket_inode(closer_port)
        victim = _owner(cluster.workers(), inode) if inode else None
        assert victim is not None, "no worker process owns the closing connection"
        os.kill(victim, signal.SIGKILL)
        holder.rollback()
        holder.close()
        holder = None
        wait(lambda: _closer_waiting_on_a_run_lock() is None, "the killed close rolls back")
        assert DigestBatch.objects.get(pk=batch.pk).status == DigestBatch.Status.OPEN

        # The sweeper (each minute in production) wakes the batch's runs; one closes it.
        assert sweep()["runs"] >= 1
        messages = inbox.wait_for(2, timeout=60)
        time.sleep(2)  # anything sent twice would arrive now
    finally:
        if holder is not None:
            holder.rollback()
            holder.close()
        cluster.stop()

    assert len(inbox.messages) == 2
    order = list(Trigger.objects.order_by("created_at", "id")
                 .values_list("data__n", "data__thread"))
    by_subject = {m["Subject"]: m for m in messages}
    main = by_subject[f"{EVENTS} new comments on 1"]
    other = by_subject[f"{OTHER_KEY_EVENTS} new comments on 2"]
    body = main.get_body(("html",)).get_content()
    assert [int(n) for n in re.findall(r"\[(\d+)\]", body)] == [
        n for n, thread in order if thread == 1]
    assert [int(n) for n in re.findall(r"\[(\d+)\]", other.get_body(("html",)).get_content())] == [
        n for n, thread in order if thread == 2]
    batch.refresh_from_db()
    assert batch.status == DigestBatch.Status.CLOSED and batch.carrier_id is not None
    runs = Run.objects.filter(digest_events__batch=batch)
    assert runs.filter(status=Run.Status.COMPLETED).count() == EVENTS
    assert StepLog.objects.filter(run__in=runs, event="resumed", step_ref="batch").count() == 1
    assert StepLog.objects.filter(run__in=runs, event="digested").count() == EVENTS - 1
    assert Message.objects.filter(step_ref="mail").count() == 2
    assert set(batch.events.values_list("outcome", flat=True)) == {"included"}

