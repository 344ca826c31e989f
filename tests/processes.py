"""Clarion processes a test starts against its own test database: the environment they get,
one subprocess in its own process group (`Service`), and a `qcluster` whose worker processes a
test can find and kill (`Cluster`).

The worker, fault and deploy tests share these: tests/notifications/providers/test_kill_run.py,
tests/chaos/, tests/deploy/support.py (production processes), tests/test_worker_queues.py.
`manage.py serve` has its own launcher (tests/e2e_support.py): it checks that serve stops its
own children, which a process-group kill would hide.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from tests.e2e_support import _STRIPPED_PREFIXES, _STRIPPED_VARIABLES, served_database_url

ROOT = Path(__file__).resolve().parent.parent


def inherited_env() -> dict[str, str]:
    """This process's environment without anything that configures Clarion (DATABASE_URL,
    REDIS_URL, SECRET_KEY, CLARION_*, EMAIL_*, …): what a started process keeps of ours."""
    return {name: value for name, value in os.environ.items()
            if name not in _STRIPPED_VARIABLES and not name.startswith(_STRIPPED_PREFIXES)}


def process_env(**extra: str) -> dict[str, str]:
    """The environment of a Clarion process started by a test: the test database, the test's
    SECRET_KEY (so inbox HMACs and tokens made here verify there), none of the caller's
    Clarion settings, plus `extra`. Call it inside a `transaction=True` test."""
    env = inherited_env()
    env.update(DATABASE_URL=served_database_url(), SECRET_KEY=settings.SECRET_KEY,
               CLARION_ALLOW_PRIVATE_URLS="1", PYTHONUNBUFFERED="1", **extra)
    return env


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Service:
    """One long-running subprocess (and its children, in its own process group) with its
    output in `log_path`."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], log_path: Path,
                 cwd: Path = ROOT):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self._stopped = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """`sig` to the process alone (SIGTERM: a qcluster then stops its own workers, daphne
        closes its sockets), SIGKILL to its whole group after `timeout` seconds or once it
        exited. Returns its exit code (None if it had to be killed). Idempotent."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        code = None
        try:
            if self.process.poll() is None:
                self.process.send_signal(sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = self.process.wait(timeout=timeout)
            else:
                code = self.process.returncode
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Cluster(Service):
    """`manage.py qcluster` with `workers` worker processes against the test database
    (process_env), delivering `concurrency` calls at a time in batches of `batch` messages
    (CLARION_DELIVERY_CONCURRENCY, CLARION_DELIVERY_BATCH_SIZE), with `extra_env`.

    Its `workers()` are the pids to SIGKILL; django-q reincarnates a killed worker. `stop()`
    kills the whole group at once: what a test asserts was done before it, and a graceful
    shutdown would only wait for tasks the test no longer cares about."""

    def __init__(self, log_path: Path, workers: int, extra_env: dict | None = None, *,
                 concurrency: int = 8, batch: int = 16):
        env = process_env(QUEUE_WORKERS=str(workers),
                          CLARION_DELIVERY_CONCURRENCY=str(concurrency),
                          CLARION_DELIVERY_BATCH_SIZE=str(batch),
                          CLARION_VAR_DIR=str(log_path.parent), **(extra_env or {}))
        super().__init__("qcluster", [sys.executable, "manage.py", "qcluster"], env=env,
                         log_path=log_path, cwd=settings.BASE_DIR)

    def workers(self) -> list[int]:
        """The pids of the worker processes alive now (django-q logs "… ready for work at")."""
        pids = re.findall(r"ready for work at (\d+)", self.log())
        return [int(pid) for pid in pids if alive(int(pid))]

    def stop(self, timeout: float = 30, sig: signal.Signals = signal.SIGKILL) -> int | None:
        return super().stop(timeout, sig)
