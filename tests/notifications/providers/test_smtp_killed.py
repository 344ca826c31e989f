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

import os
import signal
import subprocess
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.tasks import sweep

from .smtp_holding import (
    WORKER_HELD_AT_THE_END_OF_DATA,
    assert_sent_again_once,
    email_message,
    kill_worker_in_its_commit,
    kill_worker_when,
    sleeping_commits,
    start_worker,
    until,
)

pytestmark = pytest.mark.django_db(transaction=True)


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
    kill_worker_in_its_commit(message, server)
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
