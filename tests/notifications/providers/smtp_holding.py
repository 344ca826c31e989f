"""What the SMTP kill tests share (test_smtp_killed.py, test_smtp_keeper_killed.py): a real
aiosmtpd server whose handler holds an exchange at a stage until released, the worker processes
that deliver against it (and are killed), and the checks. Their fixtures are in conftest.py."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from django.conf import settings
from django.db import connection
from django.utils import timezone

from notifications.models import Message
from notifications.tasks import sweep
from tests.e2e_support import served_database_url

WORKER = ("import sys, django; django.setup(); "
          "from notifications.delivery import deliver_batch; deliver_batch(sys.argv[1:])")
# The same, stopped (to be killed) when it is about to write the attempt of a message whose data
# is sent but its end: delivery's own `_start(..., handing_over=True)`, reached from the SMTP
# backend's `before_end_of_data`, waits forever.
WORKER_HELD_AT_THE_END_OF_DATA = """
import sys, threading, django
django.setup()
from notifications.delivery import batch, calls

start = calls._start

def held(calls, unwritten, *, handing_over=False):
    if handing_over:
        print("handing over", flush=True)
        threading.Event().wait()
    return start(calls, unwritten, handing_over=handing_over)

calls._start = held
batch.deliver_batch(sys.argv[1:])
"""


class HoldingServer:
    """An aiosmtpd handler that holds the first `hold` sessions at `stage` ("RCPT" or "DATA")
    until released, and counts every RCPT TO and DATA it was given."""

    refused = frozenset({"u-refused@example.com"})  # answered 550 at RCPT TO

    def __init__(self, stage: str, hold: int):
        self.stage, self.hold = stage, hold
        self.rcpts, self.data_commands, self.datas, self.messages = [], [], [], []
        self.released = threading.Event()
        self._lock = threading.Condition()

    async def _maybe_hold(self, stage: str, seen: list, item) -> None:
        with self._lock:
            seen.append(item)
            held = stage == self.stage and len(seen) <= self.hold
            self._lock.notify_all()
        while held and not self.released.is_set():
            await asyncio.sleep(0.05)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await self._maybe_hold("RCPT", self.rcpts, address)
        if address in self.refused:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await self._maybe_hold("DATA", self.datas, envelope.content)
        with self._lock:
            self.messages.append(envelope.content)
        return "250 OK"

    async def hold_data_command(self, session) -> None:
        """At a DATA command, before the server answers 354 (stage "DATA command")."""
        await self._maybe_hold("DATA command", self.data_commands, session.peer)

    def wait_for(self, seen: str, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(getattr(self, seen)) < count:
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"the server got {getattr(self, seen)} {seen}"
                self._lock.wait(remaining)


class HoldingSMTP(SMTP):
    """aiosmtpd's server, which lets its handler hold a DATA command before its 354."""

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
        await self.event_handler.hold_data_command(self.session)
        await super().smtp_DATA(arg)


class HoldingController(Controller):
    def factory(self):
        return HoldingSMTP(self.handler, **self.SMTP_kwargs)


def email_message(queue_message, n: int | str) -> Message:
    return queue_message("email", {"subject": f"Code {n}", "text": "Your code is 1234"},
                         recipient={"id": f"u{n}", "email": f"u{n}@example.com"})


def start_worker(messages: list[Message], server: HoldingServer, code: str = WORKER,
                 **popen) -> subprocess.Popen:
    """A worker process running `code` for `messages` (one batch) against `server`."""
    env = {**os.environ, "DATABASE_URL": served_database_url(), "SECRET_KEY": settings.SECRET_KEY,
           "DJANGO_SETTINGS_MODULE": "clarion.settings", **server.env}
    return subprocess.Popen([sys.executable, "-c", code, *(str(m.id) for m in messages)],
                            env=env, cwd=settings.BASE_DIR, **popen)


def kill_worker_when(messages: list[Message], server: HoldingServer, seen: str) -> None:
    """Run one worker delivering `messages` (one batch) and SIGKILL it once the server holds
    each of them at its stage (`seen`: "rcpts", "data_commands" or "datas")."""
    worker = start_worker(messages, server)
    try:
        server.wait_for(seen, len(messages))
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    server.released.set()


class ServerLog(logging.Handler):
    """aiosmtpd's own log (logger "mail.log"): each line of data it read, and each DATA it
    dropped because its connection closed before the end of the data."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines: list[bytes] = []
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "DATA readline: %s":
            self.lines.append(bytes(record.args[0]))
        elif record.msg == "Connection lost during DATA":
            self.dropped += 1


def assert_sent_again_once(messages: list[Message], server, run_tasks) -> None:
    """The sweeper's next pass queues `messages` (sending, no attempt) again, and each is then
    sent with one succeeded attempt and reaches `server` once."""
    sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks()
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
            "succeeded"]
        assert sum(f"X-Clarion-Message-Id: {message.id}".encode() in m
                   for m in server.messages) == 1


def until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.02)


SLOW_COMMIT = 3


def sleeping_commits() -> int:
    """Backends of this database inside slow_attempt_commit's sleep."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event = 'PgSleep'")
        return cursor.fetchone()[0]


def kill_worker_when_it_says(messages: list[Message], server: HoldingServer, held: str,
                             line: str) -> None:
    """Run one worker delivering `messages` to `server` with `held` (one of the WORKER_HELD_…
    snippets, which print a line where they hold it) and SIGKILL it once it has printed `line`
    (asserted)."""
    worker = start_worker(messages, server, held, stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == line
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stdout.close()


def kill_worker_in_its_commit(message: Message, server: HoldingServer) -> None:
    """Run one worker delivering `message` to `server` and SIGKILL it while its attempt's COMMIT
    is in PostgreSQL (held there by the slow_attempt_commit fixture)."""
    worker = start_worker([message], server)
    try:
        until(lambda: sleeping_commits() == 1, "the attempt's COMMIT in PostgreSQL")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
