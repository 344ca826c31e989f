"""bench/common.py's lean SMTP sink (bench/pipeline.py's loopback server): Clarion's SMTP client
and smtplib complete their sessions against it, every step answered 250 (220, 354, 221 where SMTP
says so), each message taken whole, and it advertises what aiosmtpd does; it refuses what
aiosmtpd refuses (commands out of sequence, a SIZE too large) with the same codes, a forward-path
that is not <local@domain> too, and counts its refusals."""

import asyncio
import smtplib
import socket
import threading
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import EmailMultiAlternatives

from bench.common import SmtpSinkProcess, free_port, smtp_sink_protocol
from notifications.providers.smtp_data import CommitGatedSMTPBackend


@pytest.fixture
def sink():
    """The sink served on a free port in a thread of its own: (port, the messages it took as
    (mail_from, rcpt_tos, data), the replies it gave that were not 2xx or 3xx)."""
    taken: list[tuple[str, list[str], bytes]] = []
    refused: list[bytes] = []
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        smtp_sink_protocol(lambda *message: taken.append(message), refused.append),
        "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.sockets[0].getsockname()[1], taken, refused
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_smtplib_session_gets_250_at_each_step(sink):
    port, taken, refused = sink
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
    assert refused == [b"500 Error: command not recognized\r\n"]  # the VRFY


def test_clarion_smtp_client_delivers_through_it(sink):
    """The email kinds' SMTP backend, its DATA gated before the end as delivery sends it (the
    data first, the final CRLF "." CRLF later), on one connection for two emails."""
    port, taken, refused = sink
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
    assert refused == []


def test_pipelined_commands_and_data_in_pieces(sink):
    port, taken, refused = sink
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
    assert refused == []


def test_it_advertises_what_aiosmtpd_does(sink):
    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            return "250 OK"

    port, _, _ = sink
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


class Accept:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        return "250 OK"


# Each a session of its own: the commands sent, one at a time, and the codes the sink answers:
# aiosmtpd's, but for a forward-path that is not <local@domain>, which aiosmtpd 1.4 takes (250)
# and RFC 5321 section 4.1.2 does not allow.
REFUSED = [
    ([b"MAIL FROM:<a@x>"], [503]),  # before HELO/EHLO
    ([b"EHLO x", b"DATA"], [250, 503]),  # no MAIL
    ([b"EHLO x", b"RCPT TO:<b@x>"], [250, 503]),  # no MAIL
    ([b"EHLO x", b"MAIL FROM:<a@x>", b"DATA"], [250, 250, 503]),  # no RCPT
    ([b"EHLO x", b"MAIL FROM:<a@x>", b"MAIL FROM:<a@x>"], [250, 250, 503]),  # nested
    ([b"EHLO x", b"MAIL FROM:<>", b"RCPT TO:<>"], [250, 250, 501]),  # null path: MAIL only
    ([b"EHLO x", b"MAIL FROM:<a@x>", b"RCPT TO:<bad address>"], [250, 250, 501]),  # a space
    ([b"EHLO x", b"MAIL FROM:<a@x>", b"RCPT TO:b@x"], [250, 250, 501]),  # no <>
    ([b"EHLO x", b"MAIL FROM:<a@x>", b"RCPT TO:<b>"], [250, 250, 553]),  # no domain
    ([b"EHLO x", b"MAIL FROM:<a@x> SIZE=99999999999"], [250, 552]),
    ([b"EHLO x", b"MAIL FROM:<a@x> SIZE=33554432", b"RCPT TO:<b@x>", b"DATA"],
     [250, 250, 250, 354]),
]


def session(port: int, commands: list[bytes]) -> list[int]:
    """The reply codes to `commands`, sent one at a time on a connection of their own."""
    codes = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        reader = conn.makefile("rb")
        assert reader.readline().startswith(b"220")
        for command in commands:
            conn.sendall(command + b"\r\n")
            while (line := reader.readline())[3:4] == b"-":
                pass
            codes.append(int(line[:3]))
    return codes


@pytest.mark.parametrize(("commands", "codes"), REFUSED)
def test_it_refuses_what_aiosmtpd_refuses(sink, commands, codes):
    port, taken, refused = sink
    controller = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        theirs = session(controller.port, commands)
    finally:
        controller.stop()
    stricter = commands[-1].startswith(b"RCPT") and codes[-1] != 503
    assert theirs == (codes[:-1] + [250] if stricter else codes)  # aiosmtpd's answers
    assert session(port, commands) == codes
    assert [int(reply[:3]) for reply in refused] == [code for code in codes if code >= 400]
    assert taken == []


def test_the_sink_process_says_how_many_replies_it_refused():
    """bench/pipeline.py fails a run whose sink refused anything: it reads the count here."""
    sink = SmtpSinkProcess()
    try:
        assert session(sink.port, [b"EHLO x", b"DATA", b"RCPT TO:<b@x>", b"NOOP"]) == [
            250, 503, 503, 250]
    finally:
        refused = sink.stop()
    assert refused == 2


def test_the_sink_process_counts_the_messages_it_took():
    """bench/pipeline.py polls this count, not the database, until the drain's emails are all
    taken: a message refused or cut short is not counted, each one taken is, at its 250."""
    sink = SmtpSinkProcess()
    try:
        assert sink.accepted() == 0
        with smtplib.SMTP("127.0.0.1", sink.port) as client:
            client.sendmail("a@example.com", ["b@example.com"], b"Subject: 1\r\n\r\none\r\n")
            client.sendmail("a@example.com", ["c@example.com"], b"Subject: 2\r\n\r\ntwo\r\n")
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.sendmail("a@example.com", ["not an address"], b"Subject: 3\r\n\r\n3\r\n")
        # A message whose data never ends is not taken.
        with socket.create_connection(("127.0.0.1", sink.port)) as raw:
            raw.sendall(b"EHLO x\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\npart of it\r\n")
            while b"354" not in raw.recv(4096):
                pass
        assert sink.accepted() == 2
    finally:
        sink.stop()


def test_an_aiosmtpd_sink_process_has_no_count():
    sink = SmtpSinkProcess("aiosmtpd")
    try:
        assert sink.accepted() is None
    finally:
        sink.stop()
