"""bench/common.py's lean SMTP sink (bench/pipeline.py's loopback server): Clarion's SMTP client
and smtplib complete their sessions against it, every step answered 250 (220, 354, 221 where SMTP
says so), each message taken whole, and it advertises what aiosmtpd does."""

import asyncio
import smtplib
import socket
import threading
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import EmailMultiAlternatives

from bench.common import free_port, smtp_sink_protocol
from notifications.providers.smtp_data import CommitGatedSMTPBackend


@pytest.fixture
def sink():
    """The sink served on a free port in a thread of its own: (port, the messages it took as
    (mail_from, rcpt_tos, data))."""
    taken: list[tuple[str, list[str], bytes]] = []
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        smtp_sink_protocol(lambda *message: taken.append(message)), "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1], taken
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_smtplib_session_gets_250_at_each_step(sink):
    port, taken = sink
    data = "Subject: hi\r\n\r\nfirst\r\n.leading dot\r\n..two dots\r\n.\r\nlast\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        assert smtp.ehlo()[0] == 250
        assert smtp.helo()[0] == 250
        assert smtp.noop()[0] == 250
        assert smtp.mail("a@example.com", ["size=100"])[0] == 250
        assert smtp.rcpt("b@example.com")[0] == 250
        assert smtp.rcpt("c@example.com")[0] == 250
        assert smtp.data(data)[0] == 250
        assert smtp.rset()[0] == 250
        assert smtp.sendmail("d@example.com", ["e@example.com"], b"Subject: 2\r\n\r\n") == {}
        assert smtp.docmd("VRFY", "x")[0] == 500
    # smtplib's quit() was answered 221 (it raises otherwise); the data came back unstuffed.
    assert taken == [("<a@example.com> size=100", ["<b@example.com>", "<c@example.com>"],
                      data.encode()),
                     ("<d@example.com> size=14", ["<e@example.com>"], b"Subject: 2\r\n\r\n")]


def test_clarion_smtp_client_delivers_through_it(sink):
    """The email kinds' SMTP backend, its DATA gated before the end as delivery sends it (the
    data first, the final CRLF "." CRLF later), on one connection for two emails."""
    port, taken = sink
    backend = CommitGatedSMTPBackend(host="127.0.0.1", port=port, timeout=5)
    ends = []

    def before_end_of_data(send_end):
        ends.append(True)
        send_end()

    backend.before_end_of_data = before_end_of_data
    emails = [EmailMultiAlternatives(f"Welcome {i}", f"Hello\n.a line with a dot\n{i}",
                                     "from@example.com", [f"to{i}@example.com"])
              for i in range(2)]
    for i, email in enumerate(emails):
        email.attach_alternative(f"<p>Hello {i}</p>", "text/html")
    assert backend.open()
    assert backend.send_messages(emails) == 2
    backend.close()
    assert ends == [True, True]
    assert [(mail_from.split()[0], rcpts) for mail_from, rcpts, _ in taken] == [
        ("<from@example.com>", ["<to0@example.com>"]),
        ("<from@example.com>", ["<to1@example.com>"])]
    for i, (_, _, data) in enumerate(taken):
        message = message_from_bytes(data, policy=policy.default)
        assert message["Subject"] == f"Welcome {i}"
        assert message.get_body(("plain",)).get_content().splitlines() == [
            "Hello", ".a line with a dot", str(i)]
        assert message.get_body(("html",)).get_content().splitlines() == [f"<p>Hello {i}</p>"]


def test_pipelined_commands_and_data_in_pieces(sink):
    port, taken = sink
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        reader = conn.makefile("rb")
        assert reader.readline().startswith(b"220 ")
        conn.sendall(b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n")
        lines = [reader.readline() for _ in range(8)]
        assert [line[:4] for line in lines] == [b"250-"] * 4 + [b"250 ", b"250 ", b"250 ",
                                                                 b"354 "]
        for piece in (b"..x\r\n", b"y\r", b"\n.", b"\r", b"\n"):  # ".x", "y", then the end
            conn.sendall(piece)
        assert reader.readline() == b"250 OK\r\n"
        conn.sendall(b"QUIT\r\n")
        assert reader.readline().startswith(b"221 ")
    assert taken == [("<a@x>", ["<b@x>"], b".x\r\ny\r\n")]


def test_it_advertises_what_aiosmtpd_does(sink):
    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            return "250 OK"

    port, _ = sink
    controller = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        features = []
        for server_port in (port, controller.port):
            with smtplib.SMTP("127.0.0.1", server_port, timeout=5) as smtp:
                smtp.ehlo()
                features.append(smtp.esmtp_features)
    finally:
        controller.stop()
    assert features[0] == features[1]
