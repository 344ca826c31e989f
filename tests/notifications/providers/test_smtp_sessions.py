"""SMTP connections kept open across messages (notifications/providers/smtp_sessions.py), against
a real aiosmtpd server on 127.0.0.1 that numbers its connections: emails to one server share a
connection; a connection the server closed, dropped or answered 421 on before the message's end
of data is replaced and the message sent once; after the end of data nothing is resent; an error
closes the connection; the idle and message bounds close connections; credentials never share
one; a worker killed in the middle of a stream of messages on one connection sends each once.
"""

import asyncio
import os
import signal
import threading
import time
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone

from notifications.models import DeliveryAttempt, Message
from notifications.providers.base import OutboundMessage, PermanentError, TransientError
from notifications.providers.email import SMTP
from notifications.providers.smtp_sessions import smtp_sessions_close
from notifications.tasks import sweep
from tests.conftest import free_port


class CountingServer:
    """aiosmtpd handler numbering its connections (1, 2, …) and keeping, per message it took,
    (connection number, data, login). `misbehave(number, transactions, stage)` says what to do
    at `stage` ("MAIL", "RCPT", "DATA": its end of data received) of a connection's
    transaction after `transactions` ended ones: None (go on), "drop" (close the connection
    without a reply), "421" (answer it, then close), or an SMTP reply to send instead."""

    def __init__(self):
        self.connections: list[SMTPServer] = []
        self.closed: list[int] = []  # connection numbers, as they closed
        self.quits: list[int] = []
        self.messages: list[tuple[int, bytes, bytes | None]] = []
        self.datas: list[int] = []  # connection numbers of every end of data received
        self.transactions: dict[int, int] = {}
        self.misbehave = lambda number, transactions, stage: None
        self.lock = threading.Lock()

    def opened(self, server: SMTPServer) -> None:
        with self.lock:
            self.connections.append(server)
            server.number = len(self.connections)

    def lost(self, server: SMTPServer) -> None:
        with self.lock:
            self.closed.append(server.number)

    def _answer(self, server, stage: str) -> str | None:
        number = server.number
        what = self.misbehave(number, self.transactions.get(number, 0), stage)
        if what == "drop":
            server.transport.close()
            return "250 OK"  # never reaches the client: its connection is closed
        if what == "421":
            asyncio.get_running_loop().call_later(0.01, server.transport.close)
            return "421 4.7.0 Too many transactions, closing connection"
        return what

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        envelope.mail_from = address
        return self._answer(server, "MAIL") or "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        answer = self._answer(server, "RCPT")
        if answer is None:
            envelope.rcpt_tos.append(address)
        return answer or "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        answer = self._answer(server, "DATA")
        with self.lock:
            self.datas.append(server.number)
            self.transactions[server.number] = self.transactions.get(server.number, 0) + 1
        if answer is None or server.transport.is_closing():
            login = session.auth_data.login if session.authenticated else None
            with self.lock:
                self.messages.append((server.number, envelope.content, login))
        return answer or "250 OK"

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        self.quits.append(server.number)
        return "221 Bye"

    def of(self, message_id: str) -> list[int]:
        """The connection numbers of the messages taken whose X-Clarion-Message-Id is
        `message_id`."""
        header = f"X-Clarion-Message-Id: {message_id}\r\n".encode()
        return [number for number, content, _ in self.messages if header in content]


class CountingSMTP(SMTPServer):
    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.event_handler.opened(self)

    def connection_lost(self, error) -> None:
        self.event_handler.lost(self)
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)

    def start(self) -> None:
        """Started, its own check connection (Controller's) closed and not counted."""
        super().start()
        until(lambda: self.handler.closed == [1], "the controller's check connection to close")
        self.handler.connections.clear()
        self.handler.closed.clear()


def accept_any_login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    return AuthResult(success=True, auth_data=auth_data)


@pytest.fixture
def smtp_server():
    """(CountingServer, port): a real aiosmtpd server on 127.0.0.1 (AUTH offered without TLS,
    any login accepted), stopped after the test."""
    handler, port = CountingServer(), free_port()
    controller = CountingController(handler, hostname="127.0.0.1", port=port,
                                    authenticator=accept_any_login, auth_require_tls=False)
    controller.start()
    yield handler, port
    smtp_sessions_close()
    controller.stop()


def provider(port: int, **credentials) -> SMTP:
    return SMTP(key="mail", credentials={"host": "127.0.0.1", "port": port,
                                         "from_email": "alerts@example.com", **credentials})


class Sent:
    """A `before_commit` as delivery's: counts its calls per message, then hands over."""

    def __init__(self):
        self.calls: list[str] = []

    def send(self, smtp: SMTP, n: int | str):
        message = OutboundMessage(id=f"m{n}", channel="email", to=f"u{n}@example.com",
                                  content={"subject": f"Code {n}", "text": "Your code is 1234"})

        def before_commit(hand_over) -> None:
            self.calls.append(message.id)
            hand_over()

        return smtp.send(message, before_commit=before_commit)


def until(condition, what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize(("limit", "connections"), [(100, [1, 1, 1, 1, 1]),
                                                     (2, [1, 1, 2, 2, 3]),
                                                     (1, [1, 2, 3, 4, 5])],
                         ids=["kept", "two messages a connection", "reuse off"])
def test_emails_to_one_server_share_a_connection_up_to_the_message_bound(
        smtp_server, settings, limit, connections):
    server, port = smtp_server
    settings.CLARION = {**settings.CLARION, "SMTP_MESSAGES_PER_CONNECTION": limit}
    sent, smtp = Sent(), provider(port)
    for n in range(5):
        result = sent.send(smtp, n)
        assert result.provider_message_id == f"<m{n}@example.com>"
    assert [server.of(f"m{n}") for n in range(5)] == [[c] for c in connections]
    assert sent.calls == [f"m{n}" for n in range(5)]
    closed = sorted(set(connections) - {connections[-1]}) if limit > 1 else connections
    until(lambda: sorted(server.quits) == closed, "the bounded connections to QUIT")


def test_a_connection_the_server_closed_while_idle_is_replaced_the_message_sent_once(
        smtp_server):
    server, port = smtp_server
    sent, smtp = Sent(), provider(port)
    sent.send(smtp, 1)
    kept = server.connections[0]  # closed as by the server's idle timeout (RFC 5321 4.5.3.2.7)
    kept.loop.call_soon_threadsafe(kept.transport.close)
    until(lambda: server.closed == [1], "the server to close it")
    sent.send(smtp, 2)
    sent.send(smtp, 3)
    assert [server.of(f"m{n}") for n in (1, 2, 3)] == [[1], [2], [2]]
    assert sent.calls == ["m1", "m2", "m3"]


@pytest.mark.parametrize("how", ["drop", "421"])
@pytest.mark.parametrize("stage", ["MAIL", "RCPT"])
def test_a_server_closing_a_connection_after_two_transactions_gets_the_next_on_a_new_one(
        smtp_server, how, stage):
    """Before the end of data the connection fails (the server dropped it, or answered 421,
    when the poll before reuse could not tell): the message goes on a new connection, once,
    and its `before_commit` (where delivery writes the attempt) is called once."""
    server, port = smtp_server
    server.misbehave = lambda number, transactions, at: (
        how if at == stage and transactions >= 2 else None)
    sent, smtp = Sent(), provider(port)
    for n in range(5):
        sent.send(smtp, n)
    assert [server.of(f"m{n}") for n in range(5)] == [[1], [1], [2], [2], [3]]
    assert server.datas == [1, 1, 2, 2, 3]
    assert sent.calls == [f"m{n}" for n in range(5)]


@pytest.mark.parametrize("how", ["drop", "421"])
def test_a_connection_lost_after_the_end_of_data_is_never_resent(smtp_server, how):
    """After the point of no return (the end of the data written) a failure is the call's,
    as on a new connection: the message is not sent again on another one."""
    server, port = smtp_server
    server.misbehave = lambda number, transactions, at: (
        how if at == "DATA" and transactions == 1 else None)
    sent, smtp = Sent(), provider(port)
    sent.send(smtp, 1)
    with pytest.raises(TransientError):
        sent.send(smtp, 2)
    sent.send(smtp, 3)
    assert server.datas == [1, 1, 2]  # message 2's data reached the server once
    assert sent.calls == ["m1", "m2", "m3"]
    assert server.of("m3") == [2]


@pytest.mark.parametrize(("stage", "reply"), [("RCPT", "550 5.1.1 No such user"),
                                              ("DATA", "554 5.7.1 Rejected")])
def test_an_error_closes_its_connection_and_the_next_message_gets_a_new_one(
        smtp_server, stage, reply):
    server, port = smtp_server
    server.misbehave = lambda number, transactions, at: (
        reply if at == stage and number == 1 and transactions == 1 else None)
    sent, smtp = Sent(), provider(port)
    sent.send(smtp, 1)
    with pytest.raises(PermanentError) as refused:
        sent.send(smtp, 2)
    assert reply.split()[0] in str(refused.value)
    sent.send(smtp, 3)
    assert server.of("m1") == [1] and server.of("m2") == [] and server.of("m3") == [2]
    until(lambda: 1 in server.closed, "the refused connection to close")
    assert sent.calls == (["m1", "m2", "m3"] if stage == "DATA" else ["m1", "m3"])


def test_the_idle_bound_closes_connections(smtp_server, settings):
    server, port = smtp_server
    settings.CLARION = {**settings.CLARION, "SMTP_IDLE_SECONDS": 0.3}
    sent, smtp = Sent(), provider(port)
    sent.send(smtp, 1)
    started = time.monotonic()
    until(lambda: server.quits == [1], "the idle connection to QUIT")
    assert 0.25 <= time.monotonic() - started < 5
    sent.send(smtp, 2)
    assert server.of("m2") == [2]


def test_different_credentials_never_share_a_connection(smtp_server):
    server, port = smtp_server
    alice = provider(port, username="alice", password="a-secret")
    bob = provider(port, username="bob", password="b-secret")
    alice_again = provider(port, username="alice", password="another-secret")
    sent = Sent()
    for n in range(3):
        sent.send(alice, f"a{n}")
        sent.send(bob, f"b{n}")
        sent.send(alice_again, f"c{n}")
    logins = {number: login for number, _, login in server.messages}
    assert sorted(logins.values()) == [b"alice", b"alice", b"bob"]
    for prefix, login in (("a", b"alice"), ("b", b"bob"), ("c", b"alice")):
        numbers = {number for n in range(3) for number in server.of(f"m{prefix}{n}")}
        assert len(numbers) == 1 and logins[numbers.pop()] == login
    assert len(server.connections) == 3


def test_a_broken_kept_connection_is_closed_not_reused(smtp_server):
    """An smtplib exception after the end of data closes the connection even when the server
    keeps it open: the next message goes on a new connection."""
    server, port = smtp_server
    server.misbehave = lambda number, transactions, at: (
        "451 4.3.0 Try again later" if at == "DATA" and number == 1 else None)
    sent, smtp = Sent(), provider(port)
    with pytest.raises(TransientError):
        sent.send(smtp, 1)
    sent.send(smtp, 2)
    assert server.of("m1") == [] and server.of("m2") == [2]
    until(lambda: 1 in server.closed, "the refused connection to close")


# --- A worker killed in the middle of a stream of messages on one connection ---------------------

class HoldingNth(CountingServer):
    """Holds the `nth` transaction it sees at `stage` ("RCPT" or "DATA") until `released`."""

    def __init__(self, stage: str, nth: int):
        super().__init__()
        self.stage, self.nth, self.seen = stage, nth, 0
        self.released, self.holding = threading.Event(), threading.Event()

    async def _maybe_hold(self, at: str) -> None:
        if at != self.stage:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.holding.set()
            while not self.released.is_set():
                await asyncio.sleep(0.05)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await self._maybe_hold("RCPT")
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await self._maybe_hold("DATA")
        return await super().handle_DATA(server, session, envelope)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the keeper reads "
                                                                "pg_stat_activity")
@pytest.mark.parametrize("stage", ["RCPT", "DATA"],
                         ids=["before its end of data", "its end of data written"])
def test_a_worker_killed_in_the_middle_of_a_connections_messages_sends_each_once(
        provider_config, queue_message, run_tasks, stage):
    """One worker, one sending thread (CLARION_DELIVERY_CONCURRENCY=1), five emails on one
    connection, killed while the server holds the third (at RCPT TO: its attempt not written;
    at its end of data: the keeper reads the reply): the first two were sent on that
    connection (a batch's order is its own), and in the end each email reaches the server
    exactly once."""
    from .smtp_holding import email_message, start_worker
    from .smtp_holding import until as until_db

    server, port = HoldingNth(stage, 3), free_port()
    controller = CountingController(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port,
                                                  "from_email": "alerts@example.com"})
        messages = [email_message(queue_message, n) for n in range(5)]
        server.env = {"CLARION_DELIVERY_CONCURRENCY": "1"}
        worker = start_worker(messages, server)
        try:
            assert server.holding.wait(60), "the server never held the third message"
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
        # Two emails went on the worker's one connection before the third was held.
        assert [number for number, _, _ in server.messages] == [1, 1]
        assert sorted(len(server.of(str(m.id))) for m in messages) == [0, 0, 0, 1, 1]
        server.released.set()
        if stage == "DATA":  # the keeper ends it: the server's 250 is the keeper's to read
            until_db(lambda: DeliveryAttempt.objects.filter(
                outcome=DeliveryAttempt.Outcome.SUCCEEDED,
                response__resolved_from="the SMTP keeper").count() == 1, "the keeper's reply")
        sweep(now=timezone.now() + timedelta(minutes=5))
        run_tasks()
        sweep(now=timezone.now() + timedelta(minutes=10))
        run_tasks()
        for message in messages:
            message.refresh_from_db()
            assert message.status == Message.Status.SENT, message.status
            assert len(server.of(str(message.id))) == 1
        assert len(server.messages) == 5
    finally:
        server.released.set()
        smtp_sessions_close()
        controller.stop()
