"""A worker killed (SIGKILL) during an SMTP exchange. An SMTP server takes a message only at the
end of its data ("<CRLF>.<CRLF>"), and drops a DATA whose connection closes before, so a worker
killed before it sends that end (connecting, EHLO, MAIL FROM, RCPT TO, the DATA command before
the server's 354, the message's data) leaves the message safely re-sendable, and the sweeper
sends it again; one killed once that end is on its way leaves it of unknown outcome, and it is
never given a second DATA.

A real process runs `deliver_batch` (one call, or a concurrent batch) against a real aiosmtpd
server whose RCPT or DATA handler holds the exchange until the test has killed the worker, or
stops itself just before it writes the attempt of a message whose data it has sent but its end.
"""

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from django.conf import settings
from django.db import connection
from django.utils import timezone

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.tasks import sweep
from tests.conftest import free_port
from tests.e2e_support import served_database_url

pytestmark = pytest.mark.django_db(transaction=True)

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


@pytest.fixture
def holding_smtp(provider_config):
    """holding_smtp(stage, hold, configured=True) -> a HoldingServer behind a saved SMTP
    ProviderConfig (`configured`), else named by the EMAIL_HOST/EMAIL_PORT of the worker's
    environment (Django's EMAIL_BACKEND settings: `server.env`)."""
    controllers, handlers = [], []

    def start(stage: str, hold: int = 1, configured: bool = True) -> HoldingServer:
        handler = HoldingServer(stage, hold)
        port = free_port()
        controller = HoldingController(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        handlers.append(handler)
        handler.env = {} if configured else {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port)}
        if configured:
            provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port,
                                                      "from_email": "alerts@example.com"})
        return handler

    yield start
    for handler in handlers:
        handler.released.set()
    for controller in controllers:
        controller.stop()


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


@pytest.mark.parametrize(("count", "configured"), [(1, True), (3, True), (3, False)],
                         ids=["lone call", "concurrent batch", "EMAIL_BACKEND settings"])
def test_killed_before_data_is_sent_again_once(holding_smtp, queue_message, run_tasks,
                                               settings, count, configured):
    server = holding_smtp("RCPT", hold=count, configured=configured)
    if not configured:  # the re-send, in this process, through the same settings
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", int(server.env["EMAIL_PORT"])
    messages = [email_message(queue_message, n) for n in range(count)]
    kill_worker_when(messages, server, "rcpts")
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENDING
        assert not message.delivery_attempts.exists()  # nothing was on its way to the server
    assert server.datas == []

    sweep(now=timezone.now() + timedelta(minutes=5))
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.QUEUED
    run_tasks()
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
            "succeeded"]
        assert StepLog.objects.filter(run_id=message.run_id,
                                      event=StepLog.Event.RETRYING).count() == 1
    assert len(server.datas) == len(server.messages) == count
    received = sorted(m.decode() for m in server.messages)
    for message in messages:
        assert sum(f"X-Clarion-Message-Id: {message.id}" in m for m in received) == 1
    sweep(now=timezone.now() + timedelta(minutes=10))
    run_tasks()
    assert len(server.datas) == count


def test_killed_at_the_data_command_before_its_354_is_sent_again_once(holding_smtp, queue_message,
                                                                     run_tasks):
    """The attempt is written between the server's 354 and the message's data: a worker killed
    while it waits for the 354 has sent nothing the server would keep."""
    server = holding_smtp("DATA command")
    message = email_message(queue_message, 1)
    kill_worker_when([message], server, "data_commands")
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert not message.delivery_attempts.exists()
    assert server.datas == []

    sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == ["succeeded"]
    assert len(server.datas) == len(server.messages) == 1


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


@pytest.fixture
def server_log():
    logger = logging.getLogger("mail.log")
    handler, level = ServerLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


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


@pytest.mark.parametrize("count", [1, 3], ids=["lone call", "concurrent batch"])
def test_killed_with_its_data_sent_but_the_end_before_its_attempt_is_sent_again_once(
        holding_smtp, server_log, queue_message, run_tasks, count):
    """The attempt is written once the message's data is on the server but its end: a worker
    killed just before that write leaves a DATA the server drops, and the message is sent again,
    once."""
    server = holding_smtp("none")
    messages = [queue_message("email", {"subject": f"Code {n}", "text": f"Code {n}\nSee you"},
                              recipient={"id": f"u{n}", "email": f"u{n}@example.com"})
                for n in range(count)]
    worker = start_worker(messages, server, WORKER_HELD_AT_THE_END_OF_DATA,
                          stdout=subprocess.PIPE, text=True)
    try:
        until(lambda: all(f"Code {n}\r\n".encode() in server_log.lines for n in range(count)),
              "the messages' data on the server")
        assert worker.stdout.readline() == "handing over\n"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stdout.close()
    until(lambda: server_log.dropped == count, "the server to drop the unfinished DATAs")
    assert b"See you\r\n" not in server_log.lines  # its end never left: the last line unended
    assert len(server.data_commands) == count
    assert server.datas == server.messages == []
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENDING
        assert not message.delivery_attempts.exists()

    assert_sent_again_once(messages, server, run_tasks)
    assert len(server.data_commands) == 2 * count
    assert len(server.messages) == count
    sweep(now=timezone.now() + timedelta(minutes=10))
    run_tasks()
    assert len(server.messages) == count


def test_killed_after_the_end_of_its_data_without_a_keeper_is_of_unknown_outcome_never_resent(
        holding_smtp, queue_message, run_tasks):
    server = holding_smtp("DATA")
    server.env["CLARION_SMTP_KEEPER"] = "0"
    message = email_message(queue_message, 1)
    kill_worker_when([message], server, "datas")
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.STARTED

    assert sweep(now=timezone.now() + timedelta(minutes=5))["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == ("Delivery outcome unknown: the worker stopped during the provider "
                             "call.")
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.UNKNOWN
    deliver(str(message.id))
    sweep(now=timezone.now() + timedelta(minutes=10))
    run_tasks()
    assert len(server.datas) == 1


@pytest.mark.parametrize("others", [0, 2], ids=["lone call", "concurrent batch"])
def test_refused_at_rcpt_is_recorded_with_its_error_never_started(holding_smtp, queue_message,
                                                                  others):
    """A call that ends before DATA still leaves its attempt, written with its result."""
    from notifications.delivery import deliver_batch

    server = holding_smtp("none")
    refused = email_message(queue_message, "-refused")
    accepted = [email_message(queue_message, n) for n in range(others)]
    deliver_batch([str(refused.id), *(str(m.id) for m in accepted)])
    refused.refresh_from_db()
    assert refused.status == Message.Status.FAILED
    attempt = refused.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.PERMANENT_ERROR
    assert "550" in attempt.error
    for message in accepted:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert len(server.datas) == others


@pytest.fixture
def slow_attempt_commit():
    """A deferred constraint trigger on the attempts' table that sleeps `SLOW_COMMIT` seconds at
    the COMMIT of a transaction that inserted one (a constraint trigger DEFERRABLE INITIALLY
    DEFERRED runs at COMMIT, before the commit record is written): the worker's COMMIT is then
    on its way for that long, and PostgreSQL completes it whether or not the worker lives."""
    table = DeliveryAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE FUNCTION slow_attempt_commit() RETURNS trigger LANGUAGE plpgsql "
                       f"AS $$ BEGIN PERFORM pg_sleep({SLOW_COMMIT}); RETURN NULL; END $$")
        cursor.execute(f'CREATE CONSTRAINT TRIGGER slow_attempt_commit AFTER INSERT ON "{table}" '
                       "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                       "EXECUTE FUNCTION slow_attempt_commit()")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER slow_attempt_commit ON "{table}"')
        cursor.execute("DROP FUNCTION slow_attempt_commit()")


SLOW_COMMIT = 3


def sleeping_commits() -> int:
    """Backends of this database inside slow_attempt_commit's sleep."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND wait_event = 'PgSleep'")
        return cursor.fetchone()[0]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="a PostgreSQL trigger")
def test_killed_while_its_attempt_commits_without_a_keeper_loses_the_email_never_sent_twice(
        holding_smtp, server_log, slow_attempt_commit, queue_message, run_tasks):
    """The window the SMTP keeper closes, here with the keeper off (CLARION_SMTP_KEEPER=0): a
    worker killed after its attempt's COMMIT reached PostgreSQL and before the end of its data
    left. PostgreSQL completes the commit without the worker, the server drops the unended
    DATA: the email is lost, and the sweeper fails it as of unknown outcome, never sends it
    twice. delivery.calls.commit_without_flush makes this window a round trip instead of a WAL
    flush; here a trigger stretches it."""
    server = holding_smtp("none")
    server.env["CLARION_SMTP_KEEPER"] = "0"
    message = email_message(queue_message, 1)
    worker = start_worker([message], server)
    try:
        until(lambda: sleeping_commits() == 1, "the attempt's COMMIT in PostgreSQL")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    until(lambda: server_log.dropped == 1, "the server to drop the unended DATA")
    until(lambda: sleeping_commits() == 0, "PostgreSQL to complete the commit")
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.STARTED
    assert len(server.data_commands) == 1
    assert server.messages == []

    assert sweep(now=timezone.now() + timedelta(minutes=5))["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    run_tasks()
    sweep(now=timezone.now() + timedelta(minutes=10))
    run_tasks()
    assert len(server.data_commands) == 1
    assert server.messages == []


@pytest.fixture
def refused_attempt_commit():
    """A deferred constraint trigger on the attempts' table that makes the COMMIT of the first
    transaction inserting one fail (its sequence is not rolled back with it); later ones pass."""
    table = DeliveryAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE refused_attempt_commit")
        cursor.execute("CREATE FUNCTION refused_attempt_commit() RETURNS trigger LANGUAGE plpgsql "
                       "AS $$ BEGIN IF nextval('refused_attempt_commit') = 1 THEN "
                       "RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$")
        cursor.execute(f'CREATE CONSTRAINT TRIGGER refused_attempt_commit AFTER INSERT ON '
                       f'"{table}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                       "EXECUTE FUNCTION refused_attempt_commit()")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER refused_attempt_commit ON "{table}"')
        cursor.execute("DROP FUNCTION refused_attempt_commit()")
        cursor.execute("DROP SEQUENCE refused_attempt_commit")


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="a PostgreSQL trigger")
def test_attempt_whose_commit_fails_sends_no_end_and_the_email_is_retried_once(
        holding_smtp, server_log, refused_attempt_commit, queue_message):
    """The attempt's COMMIT fails (an error, not a death): the end of the data never leaves,
    the connection closes and the server drops the DATA; the call is a transient error (as a
    concurrent batch's CommitGate.refuse makes it), and the retry sends the email once."""
    from notifications.delivery.gate import NOT_HANDED_OVER

    server = holding_smtp("none")
    message = email_message(queue_message, 1)
    deliver(str(message.id))
    until(lambda: server_log.dropped == 1, "the server to drop the unended DATA")
    assert server.messages == []
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at is not None
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.error) == (DeliveryAttempt.Outcome.TRANSIENT_ERROR,
                                                NOT_HANDED_OVER)

    deliver(str(message.id), now=message.next_attempt_at + timedelta(seconds=1))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert list(message.delivery_attempts.order_by("started_at", "id")
                .values_list("outcome", flat=True)) == ["transient_error", "succeeded"]
    assert len(server.data_commands) == 2
    assert len(server.messages) == 1


# --- The SMTP keeper (notifications/delivery/keeper.py) -----------------------------------------

# A worker stopped (to be killed) once its keeper holds its connections, before the attempts'
# COMMIT: delivery's own keeper_hold, reached inside the attempts' transaction, then waits.
WORKER_HELD_BEFORE_THE_COMMIT = """
import sys, threading, django
django.setup()
from notifications.delivery import batch, calls

hold = calls.keeper_hold

def held(ends):
    ids = hold(ends)
    print(f"held {len(ids)}", flush=True)
    threading.Event().wait()

calls.keeper_hold = held
batch.deliver_batch(sys.argv[1:])
"""
# A worker stopped (to be killed) once it read the server's reply to its end, before it tells
# its keeper: what keeper_client hands the SMTP backend to call then (EndOfData.replied) waits.
WORKER_HELD_BEFORE_THE_RELEASE = """
import sys, threading, django
django.setup()
from notifications.delivery import batch, keeper_client

def replier(pk):
    def replied(code):
        print("replied", code, flush=True)
        threading.Event().wait()
    return replied

keeper_client._replier = replier
batch.deliver_batch(sys.argv[1:])
"""

postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'",
                                     reason="the keeper reads pg_stat_activity")


def refreshed_status(message: Message) -> str:
    message.refresh_from_db()
    return message.status


def assert_sent_once_by_the_keeper(server: HoldingServer, message: Message, run_tasks) -> None:
    """`message` is sent, its one attempt succeeded as the keeper recorded it, the server got
    it once, and the sweeper and the queue do not send it again."""
    until(lambda: refreshed_status(message) == Message.Status.SENT, "the keeper to send it")
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert attempt.response["resolved_from"] == "the SMTP keeper"
    assert attempt.response["reply"].startswith("250 ")
    assert attempt.response["message_id"] == message.provider_message_id
    assert message.provider_message_id.startswith(f"<{message.id}@")
    assert StepLog.objects.filter(run_id=message.run_id, event=StepLog.Event.SENT).count() == 1
    sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks()
    assert len(server.messages) == 1
    assert f"X-Clarion-Message-Id: {message.id}".encode() in server.messages[0]
    assert len(server.data_commands) == 1


@postgresql_only
def test_killed_while_its_attempt_commits_the_keeper_ends_its_data_once_and_it_is_sent(
        holding_smtp, server_log, slow_attempt_commit, queue_message, run_tasks):
    """The window commit_without_flush only narrows: a worker killed while its attempt's
    COMMIT is in PostgreSQL (a trigger stretches it). The keeper holds the connection, waits
    for the worker's backend to finish the commit, reads the attempt `started`, ends the data:
    the email arrives once and the message is sent."""
    server = holding_smtp("none")
    message = email_message(queue_message, 1)
    worker = start_worker([message], server)
    try:
        until(lambda: sleeping_commits() == 1, "the attempt's COMMIT in PostgreSQL")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    assert_sent_once_by_the_keeper(server, message, run_tasks)
    assert server_log.dropped == 0


@postgresql_only
@pytest.mark.parametrize("count", [1, 3], ids=["lone call", "concurrent batch"])
def test_killed_with_the_keeper_holding_before_the_commit_is_aborted_and_sent_again_once(
        holding_smtp, server_log, queue_message, run_tasks, count):
    """Killed once the keeper holds the connections but before the attempts' COMMIT:
    PostgreSQL rolls the attempts back, the keeper finds none and resets the connections, the
    server drops the DATAs, and the sweeper sends each message again, once."""
    server = holding_smtp("none")
    messages = [email_message(queue_message, n) for n in range(count)]
    worker = start_worker(messages, server, WORKER_HELD_BEFORE_THE_COMMIT,
                          stdout=subprocess.PIPE, text=True)
    try:
        line = worker.stdout.readline()
        assert line.startswith("held ") and int(line.split()[1]) >= 1, line
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stdout.close()
    until(lambda: server_log.dropped == count, "the server to drop the unended DATAs")
    assert server.messages == []
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENDING
        assert not message.delivery_attempts.exists()

    assert_sent_again_once(messages, server, run_tasks)
    assert len(server.messages) == count


@postgresql_only
def test_killed_after_the_end_of_its_data_the_keeper_reads_the_reply_and_sends_nothing_twice(
        holding_smtp, queue_message, run_tasks):
    """Killed with its end written, waiting for the server's reply: the keeper's 5 bytes reach a
    server that has the end already (they are answered 500, as two empty commands), and the
    first reply on the connection, the server's 250 for the message, is the keeper's to read:
    the email arrives once and the message is sent."""
    server = holding_smtp("DATA")
    message = email_message(queue_message, 1)
    kill_worker_when([message], server, "datas")
    assert_sent_once_by_the_keeper(server, message, run_tasks)


@postgresql_only
def test_killed_after_reading_its_reply_before_telling_the_keeper_is_of_unknown_outcome(
        holding_smtp, queue_message, run_tasks):
    """The window left: the worker read the server's 250 and died before releasing the
    connection. The keeper, told the end was written, gets a syntax error for its 5 bytes (the
    server is back in command mode): it cannot know what the worker read, records nothing,
    and the sweeper marks the message of unknown outcome, never sent twice."""
    server = holding_smtp("none")
    message = email_message(queue_message, 1)
    worker = start_worker([message], server, WORKER_HELD_BEFORE_THE_RELEASE,
                          stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == "replied 250\n"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stdout.close()
    assert len(server.messages) == 1
    until(lambda: sweep(now=timezone.now() + timedelta(minutes=5)).get("unknown") == 1,
          "the keeper to leave the attempt to the sweeper")
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.UNKNOWN
    run_tasks()
    assert len(server.messages) == 1


@postgresql_only
def test_a_keeper_that_cannot_start_leaves_delivery_as_without_it(
        holding_smtp, queue_message, monkeypatch, caplog):
    """A keeper that exits at once (it cannot hold anything): the worker gives it up, logs it,
    and sends the email itself, once."""
    from notifications.delivery import keeper_client

    monkeypatch.setattr(keeper_client, "_client", None)
    monkeypatch.setattr(keeper_client, "_failed_at", -keeper_client.RETRY_SECONDS)
    monkeypatch.setattr(keeper_client, "KEEPER_MAIN", "import sys; sys.exit(3)")
    server = holding_smtp("none")
    message = email_message(queue_message, 1)
    with caplog.at_level(logging.ERROR, logger="notifications.delivery.keeper_client"):
        deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert len(server.messages) == 1
    assert "given up" in caplog.text
    assert keeper_client._client is None


# A worker stopped (to be killed) once its calls ended and were released to its keeper, before
# it writes their outcomes: delivery's own _finish waits.
WORKER_HELD_BEFORE_ITS_OUTCOMES = """
import sys, threading, django
django.setup()
from notifications.delivery import batch

def held(*args, **kwargs):
    print("finishing", flush=True)
    threading.Event().wait()

batch._finish = held
batch.deliver_batch(sys.argv[1:])
"""


@postgresql_only
@pytest.mark.parametrize("count", [1, 3], ids=["lone call", "concurrent batch"])
def test_killed_after_releasing_accepted_calls_before_their_outcomes_the_keeper_records_them(
        holding_smtp, queue_message, run_tasks, count):
    """The worker read each server's 250 and told its keeper, then died before writing the
    outcomes: the keeper records each attempt still `started` succeeded and its message sent,
    once the worker's backend is gone (a concurrent batch writes the attempts of ended calls
    while others run: those the sweeper finds succeeded and marks sent); nothing is sent
    twice."""
    server = holding_smtp("none")
    messages = [email_message(queue_message, n) for n in range(count)]
    worker = start_worker(messages, server, WORKER_HELD_BEFORE_ITS_OUTCOMES,
                          stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout.readline() == "finishing\n"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        worker.stdout.close()
    until(lambda: not DeliveryAttempt.objects.filter(
        message__in=messages, outcome=DeliveryAttempt.Outcome.STARTED).exists(),
          "the keeper to record the attempts left started")
    by_keeper = DeliveryAttempt.objects.filter(
        message__in=messages,
        response__resolved_from="the worker's release to the SMTP keeper").count()
    if count == 1:  # a lone call's attempt is written with its message's outcome
        assert by_keeper == 1
    sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks()
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        attempt = message.delivery_attempts.get()
        assert attempt.outcome == DeliveryAttempt.Outcome.SUCCEEDED
        assert attempt.response["message_id"] == message.provider_message_id
    assert len(server.messages) == count
    for message in messages:
        assert sum(f"X-Clarion-Message-Id: {message.id}".encode() in m
                   for m in server.messages) == 1


@pytest.fixture
def tls_smtp(provider_config, tmp_path, monkeypatch):
    """A HoldingServer (holding nothing) that offers STARTTLS with a self-signed certificate for
    127.0.0.1, behind a saved SMTP ProviderConfig with `use_tls`; the certificate is trusted
    through SSL_CERT_FILE (OpenSSL's default verify paths) here and in the worker."""
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    handler = HoldingServer("none", 0)
    port = free_port()
    controller = HoldingController(handler, hostname="127.0.0.1", port=port,
                                   tls_context=context)
    controller.start()
    handler.env = {"SSL_CERT_FILE": str(cert)}
    provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port, "use_tls": True,
                                              "from_email": "alerts@example.com"})
    yield handler
    controller.stop()


@postgresql_only
def test_killed_while_its_attempt_commits_over_tls_is_reset_by_the_keeper_and_sent_again_once(
        tls_smtp, server_log, slow_attempt_commit, queue_message, run_tasks):
    """Under STARTTLS the keeper cannot write the end into the dead worker's TLS session: it
    resets the connection (the server drops the DATA) and, since the worker had not announced
    its end, records the attempt a transient error; the sweeper sends the message again, once."""
    from notifications.delivery.keeper import TLS_RESET

    server = tls_smtp
    message = email_message(queue_message, 1)
    worker = start_worker([message], server)
    try:
        until(lambda: sleeping_commits() == 1, "the attempt's COMMIT in PostgreSQL")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    until(lambda: message.delivery_attempts.filter(
        outcome=DeliveryAttempt.Outcome.TRANSIENT_ERROR).exists(), "the keeper's reset")
    assert message.delivery_attempts.get().error == TLS_RESET
    until(lambda: server_log.dropped == 1, "the server to drop the unended DATA")
    assert server.messages == []

    sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert list(message.delivery_attempts.order_by("started_at", "id")
                .values_list("outcome", flat=True)) == ["transient_error", "succeeded"]
    assert len(server.messages) == 1
