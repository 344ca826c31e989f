"""django-q2's in-cluster queues, with locks that a killed process lets go of.

A qcluster's workers wait for tasks on one `multiprocessing.Queue`: the waiting worker that got
there first holds the queue's reader lock (a POSIX semaphore) while it blocks for the next task,
and the others wait on that lock. A semaphore has no owner, so when the holder is killed with
SIGKILL (the OOM killer, `kill -9`, a container's hard stop) it is never released: the cluster's
sentinel starts a new worker, and no worker takes a task again, silently, until the whole
cluster is restarted (seen with a worker killed between tasks; tests/test_worker_queues.py shows
it). The writer lock of the result queue, shared by every worker, has the same flaw.

Here each queue's reader and writer locks are `ProcessLock`s: flock(2) on a file, which the
kernel drops when the holding process dies, plus a thread lock for the threads of one process
(flock is per open file, not per thread). `install()` makes django-q's cluster build its queues
this way; `ClarionConfig.ready` calls it in every process, and it only matters in `qcluster`.

What remains: a worker killed in the microseconds it holds the queue's size counter or between
reading a task and releasing its slot costs the queue one slot of QUEUE_LIMIT (not a stall).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
import threading
import time

import django_q.cluster
from django_q.queues import Queue

try:
    import fcntl
except ImportError:  # Windows: django-q's own locks stay
    fcntl = None


class ProcessLock:
    """A lock between the processes forked from the one that made it, released by the kernel
    when its holder dies. The `multiprocessing.Lock` interface that `multiprocessing.Queue`
    uses: `acquire(block=True, timeout=None) -> bool`, `release()`, and a context manager.

    Each process opens the lock file itself (an inherited descriptor would share the lock with
    the parent). Linux and macOS (fcntl); the file lives in the temporary directory and is
    removed when the process that made the lock exits."""

    def __init__(self):
        handle, self._path = tempfile.mkstemp(prefix="clarion-queue-", suffix=".lock")
        os.close(handle)
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and _unlink(self._path))
        self._pid: int | None = None
        self._fd = -1
        self._threads = threading.Lock()

    def _open(self) -> int:
        if self._pid != os.getpid():  # first use in this process (after a fork)
            self._fd = os.open(self._path, os.O_RDWR)
            self._threads = threading.Lock()  # a fork copies a held lock as held
            self._pid = os.getpid()
        return self._fd

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        fd = self._open()
        deadline = None if not block or timeout is None else time.monotonic() + max(timeout, 0)
        if not self._threads.acquire(block, -1 if deadline is None else max(timeout, 0)):
            return False
        locked = False
        try:
            if block and deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                locked = True
            while not locked:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    locked = True
                except BlockingIOError:
                    if deadline is None or time.monotonic() >= deadline:
                        break
                    time.sleep(0.005)
        finally:
            if not locked:
                self._threads.release()
        return locked

    def release(self) -> None:
        fcntl.flock(self._open(), fcntl.LOCK_UN)
        self._threads.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __getstate__(self):  # a spawned process opens the file itself
        return {"_path": self._path}

    def __setstate__(self, state):
        self._path, self._pid, self._fd = state["_path"], None, -1
        self._threads = threading.Lock()


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class RobustQueue(Queue):
    """django-q's Queue with `ProcessLock`s for its reader and writer locks."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rlock = ProcessLock()
        if self._wlock is not None:  # None on Windows, where writes need no lock
            self._wlock = ProcessLock()


def install() -> None:
    """Make django-q's cluster (the sentinel that owns the task and result queues) build
    `RobustQueue`s. Idempotent; nothing where there is no flock(2) (Windows)."""
    if fcntl is not None:
        django_q.cluster.Queue = RobustQueue
