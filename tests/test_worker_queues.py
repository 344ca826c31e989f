"""A worker killed while it waits for a task no longer stalls its cluster
(clarion/worker_queues.py).

The first two tests are about the queue alone, in forked processes; the last one kills the idle
workers of a real `qcluster` and checks that the tasks enqueued afterwards still run.
"""

import contextlib
import multiprocessing
import os
import queue
import signal
import time

import pytest
from django_q.queues import Queue

from clarion.worker_queues import ProcessLock, RobustQueue
from notifications.queue import enqueue
from tests.notifications.providers.test_kill_run import wait
from tests.processes import Cluster

FORK = multiprocessing.get_context("fork")


def _hold(lock, held):
    lock.acquire()
    held.set()
    time.sleep(60)


def test_a_killed_holder_releases_the_lock_and_a_live_one_excludes():
    lock, held = ProcessLock(), FORK.Event()
    holder = FORK.Process(target=_hold, args=(lock, held))
    holder.start()
    try:
        assert held.wait(10)
        assert lock.acquire(timeout=0.2) is False  # held by a live process: excluded
        assert lock.acquire(block=False) is False
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert lock.acquire(timeout=5) is True  # the kernel dropped the dead holder's lock
        lock.release()
    finally:
        if holder.is_alive():
            holder.kill()


def _consume(q, out):
    while True:
        out.put((os.getpid(), q.get()))


def _kill_idle_readers_then_read(queue_class) -> list:
    """Two readers wait on `queue_class`; one holds its reader lock. Both are killed with SIGKILL,
    a new reader starts, and three items are put: what the new reader got within 3 s."""
    q, out = queue_class(), FORK.Queue()
    readers = [FORK.Process(target=_consume, args=(q, out), daemon=True) for _ in range(2)]
    for reader in readers:
        reader.start()
    time.sleep(0.5)  # both waiting: one in recv holding the lock, one on the lock
    for reader in readers:
        os.kill(reader.pid, signal.SIGKILL)
        reader.join(5)
    fresh = FORK.Process(target=_consume, args=(q, out), daemon=True)
    fresh.start()
    try:
        for item in range(3):
            q.put(item)
        got, deadline = [], time.monotonic() + 3
        while len(got) < 3 and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                got.append(out.get(timeout=0.1)[1])
        return got
    finally:
        fresh.kill()


def test_readers_killed_while_waiting_leave_a_robust_queue_working():
    assert sorted(_kill_idle_readers_then_read(RobustQueue)) == [0, 1, 2]


def test_readers_killed_while_waiting_stall_django_qs_own_queue():
    # The flaw RobustQueue removes: the dead holder's semaphore is never released.
    assert _kill_idle_readers_then_read(Queue) == []


@pytest.mark.django_db(transaction=True)
def test_a_cluster_whose_idle_workers_were_killed_still_runs_tasks(tmp_path):
    cluster = Cluster(tmp_path / "qcluster.log", workers=2)
    try:
        wait(lambda: len(cluster.workers()) == 2, "two workers ready")
        time.sleep(1)  # idle: one of them waits holding the task queue's lock
        first = cluster.workers()
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        wait(lambda: len([p for p in cluster.workers() if p not in first]) == 2,
             "two new workers")
        marks = [tmp_path / f"ran-{n}" for n in range(3)]
        for mark in marks:
            enqueue("os.mkdir", str(mark))  # a task whose effect the test can see
        wait(lambda: all(mark.is_dir() for mark in marks),
             "the three tasks enqueued after the kills to run", timeout=60)
    finally:
        cluster.stop()
