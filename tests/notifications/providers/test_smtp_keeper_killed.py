"""A worker killed (SIGKILL) during an SMTP exchange, with the SMTP keeper
(notifications/delivery/keeper.py) holding its connections: the keeper ends, aborts or resets
each exchange the worker left, so the message is sent once or recorded of unknown outcome, never
twice. The servers, workers and checks are shared with test_smtp_killed.py (smtp_holding.py).
"""

import logging
import os
import signal
import subprocess
from datetime import timedelta

import pytest
from django.db import connection  # noqa: F401 (the skipif conditions read it)
from django.utils import timezone

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.tasks import sweep
from tests.conftest import free_port

from .smtp_holding import (
    HoldingController,
    HoldingServer,
    assert_sent_again_once,
    email_message,
    kill_worker_in_its_commit,
    kill_worker_when,
    kill_worker_when_it_says,
    start_worker,
    until,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
    kill_worker_in_its_commit(message, server)
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
    kill_worker_when_it_says([message], server, WORKER_HELD_BEFORE_THE_RELEASE,
                             "replied 250\n")
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
    kill_worker_when_it_says(messages, server, WORKER_HELD_BEFORE_ITS_OUTCOMES, "finishing\n")
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
    kill_worker_in_its_commit(message, server)
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
