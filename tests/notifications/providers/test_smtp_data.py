"""What CommitGatedSMTPBackend puts on the wire is what Django's own SMTP backend puts there, byte
for byte: smtplib's line endings and dot-stuffing, only written in two parts, the message's data
and then, from `before_end_of_data`, its end "<CRLF>.<CRLF>".

A recording TCP relay between the client and a real aiosmtpd server on 127.0.0.1 keeps every byte
each client sent.
"""

import contextlib
import socket
import threading
import time

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import EmailMessage
from django.core.mail.backends.smtp import EmailBackend

from notifications.providers.smtp_data import END_OF_DATA, CommitGatedSMTPBackend
from tests.conftest import free_port

SENDER, TO = "alerts@example.com", "u1@example.com"
HEADERS = {"Date": "Wed, 02 Dec 2026 03:00:00 -0000", "Message-ID": "<m1@example.com>"}
# Lines beginning with ".", a line that is only ".", bare LF and CR, no line ending at the end.
BODY = ".first\n..two dots\n.\nbare LF above, a bare CR\rhere\r\n. space\nno line ending"
RAW = [
    BODY,  # str: smtplib makes every line ending CRLF
    BODY.encode(),  # bytes: sent as they are, only dot-stuffed (after a bare LF too)
    b"Subject: x\r\n\r\nends with its CRLF\r\n",
    b"Subject: x\r\n\r\nends with a dot line\r\n.",
]


class Relay:
    """A TCP relay from 127.0.0.1:`port` to 127.0.0.1:`upstream`; `sent`: per connection, the
    bytes its client sent."""

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent: list[bytearray] = []
        self._pumps: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            record = bytearray()
            self.sent.append(record)
            for source, sink, kept in ((client, server, record), (server, client, None)):
                pump = threading.Thread(target=self._pump, args=(source, sink, kept),
                                        daemon=True)
                pump.start()
                self._pumps.append(pump)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, kept: bytearray | None) -> None:
        try:
            while chunk := source.recv(65536):
                if kept is not None:
                    kept += chunk
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def transcripts(self, count: int) -> list[bytes]:
        """The bytes sent by each of the first `count` clients, once every one has closed."""
        deadline = time.monotonic() + 20
        while len(self.sent) < count or any(pump.is_alive() for pump in self._pumps):
            assert time.monotonic() < deadline, "the SMTP sessions did not end"
            time.sleep(0.01)
        return [bytes(record) for record in self.sent]

    def close(self) -> None:
        self.listener.close()


class Contents:
    """aiosmtpd handler keeping each message's data as received (dot-stuffing undone)."""

    def __init__(self):
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append(envelope.original_content)
        return "250 OK"


@pytest.fixture
def relayed_smtp():
    """(relay, contents): a real aiosmtpd server on 127.0.0.1 behind a recording relay."""
    contents, port = Contents(), free_port()
    controller = Controller(contents, hostname="127.0.0.1", port=port)
    controller.start()
    relay = Relay(port)
    yield relay, contents
    relay.close()
    controller.stop()


def data_of(transcript: bytes) -> bytes:
    """What a client sent after its DATA command, up to its QUIT (smtplib writes them in lower
    case)."""
    return transcript[transcript.index(b"data\r\n") + 6:transcript.rindex(b"quit\r\n")]


def gated_backend(relay: Relay, ends: list[bytes]) -> CommitGatedSMTPBackend:
    """The backend, with a `before_end_of_data` that checks the relay has the whole data but its
    end (`ends`: the data expected, given later) before sending that end."""
    backend = CommitGatedSMTPBackend(host="127.0.0.1", port=relay.port, timeout=10)

    def before_end_of_data(send_end) -> None:
        expected, record = ends.pop(0), relay.sent[-1]
        deadline = time.monotonic() + 10
        while not bytes(record).endswith(expected[:-len(END_OF_DATA)]):
            assert time.monotonic() < deadline, (bytes(record)[-80:], expected[-80:])
            time.sleep(0.01)
        send_end()

    backend.before_end_of_data = before_end_of_data
    return backend


def test_a_django_email_goes_out_byte_for_byte_as_through_djangos_smtp_backend(relayed_smtp):
    relay, contents = relayed_smtp
    email = EmailMessage("Dots", BODY, SENDER, [TO], headers=HEADERS)
    assert EmailBackend(host="127.0.0.1", port=relay.port, timeout=10).send_messages([email]) == 1
    (django_sent,) = relay.transcripts(1)
    expected = data_of(django_sent)
    assert expected.endswith(b"\r\nno line ending" + END_OF_DATA)
    assert b"\r\n\r\n..first\r\n...two dots\r\n..\r\nbare LF above" in expected

    assert gated_backend(relay, [expected]).send_messages([email]) == 1
    assert relay.transcripts(2) == [django_sent, django_sent]
    assert contents.received[0] == contents.received[1]
    assert contents.received[0].endswith(b"\r\n\r\n.first\r\n..two dots\r\n.\r\n"
                                         b"bare LF above, a bare CR\r\nhere\r\n. space\r\n"
                                         b"no line ending\r\n")


@pytest.mark.parametrize("raw", RAW, ids=["str", "bytes", "ending with CRLF", "ending with ."])
def test_raw_data_goes_out_byte_for_byte_as_smtplib_sends_it(relayed_smtp, raw):
    """smtplib's own DATA (through Django's backend's connection) and the gated one, given the
    same message by `sendmail`, as Django does (bytes) or as other callers may (str)."""
    relay, contents = relayed_smtp
    plain = EmailBackend(host="127.0.0.1", port=relay.port, timeout=10)
    with plain:
        plain.connection.sendmail(SENDER, [TO], raw)
    (smtplib_sent,) = relay.transcripts(1)
    expected = data_of(smtplib_sent)
    assert expected.endswith(END_OF_DATA)

    gated = gated_backend(relay, [expected])
    with gated:
        gated.connection.sendmail(SENDER, [TO], raw)
    assert relay.transcripts(2) == [smtplib_sent, smtplib_sent]
    assert len(contents.received) == 2
    assert contents.received[0] == contents.received[1]


# --- The SMTP kind's own email: the same session as Django's backend gives it ----------------

ADDRESSED = [  # (sender name, sender address, recipient name, recipient address, subject)
    ("Acme", "alerts@example.com", "User 85", "u85@example.com", "Welcome User 85"),
    ('Acme, Inc. (EU)', "a.b+c@Example.COM", 'The "Quoted" Team', "x_y@localhost",
     "A subject long enough that the standard library folds it over two lines or more"),
    ("Équipe Support", "support@acme.test", "李小龍 支援", "ada@example.com", "Ünïcode ✓"),
    ("", "alerts@example.com", "", "ada@bücher.example", "trailing space "),
    ("Ops", "ops@xn--bcher-kva.example", "", "u@" + "a" * 64 + ".example", "  lead  "),
]


@pytest.mark.parametrize("sender_name, sender, name, to, subject", ADDRESSED)
def test_the_smtp_kinds_email_goes_out_byte_for_byte_as_djangos_would_send_it(
        relayed_smtp, monkeypatch, sender_name, sender, name, to, subject):
    """Its message written with OneLineHeaders, its envelope from its plain addresses: the
    whole session (MAIL FROM, RCPT TO, the data) is what Django's backend sends for the same
    email written by compat32 with every address parsed again."""
    import uuid as uuid_module

    from django.core.mail import EmailMultiAlternatives

    from notifications.providers import email as email_module
    from notifications.providers.base import OutboundMessage

    relay, _ = relayed_smtp
    monkeypatch.setattr(email_module.uuid, "uuid4", lambda: uuid_module.UUID(int=7))
    outbound = OutboundMessage(
        id="0b9b2c1e-0000-4000-8000-000000000001", channel="email", to=to,
        content={"subject": subject, "text": "Hello\n.dot", "html": "<p>Hello</p>"},
        sender_name=sender_name, sender_email=sender, recipient_name=name, workflow_key="w",
        headers={**HEADERS, "List-Unsubscribe": "<https://example.com/u/" + "t" * 90 + ">",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    built = email_module.SMTP(key="smtp", credentials={"host": "127.0.0.1"}).build_email(
        outbound)
    assert set(built.envelope.values()) <= {sender, to}
    with monkeypatch.context() as plain:
        plain.setattr(email_module.Email, "message", EmailMultiAlternatives.message)
        try:
            assert EmailBackend(host="127.0.0.1", port=relay.port, timeout=10).send_messages(
                [built]) == 1
        except ValueError as exc:  # Django refuses the address (the IDNA codec: a long label)
            with pytest.raises(type(exc), match="idna"):
                gated_backend(relay, []).send_messages([built])
            return
    (django_sent,) = relay.transcripts(1)
    assert gated_backend(relay, [data_of(django_sent)]).send_messages([built]) == 1
    assert relay.transcripts(2) == [django_sent, django_sent]


def test_one_line_headers_writes_every_header_as_compat32_folds_it():
    """Values on one line, at and over the line's length, with spaces and tabs at either end,
    runs of spaces, non-ASCII, encoded words and line breaks: the same text as compat32's."""
    import random
    from email._policybase import compat32

    from notifications.providers.email import ONE_LINE_HEADERS

    fast, slow = ONE_LINE_HEADERS.clone(linesep="\r\n"), compat32.clone(linesep="\r\n")
    rng = random.Random(15)
    alphabet = "ab =?:;,\"()<>@.-\t\r\né"
    names = ["Subject", "To", "List-Unsubscribe", "X-" + "h" * 70]
    compared = 0
    for _ in range(20000):
        name = rng.choice(names)
        value = "".join(rng.choice(alphabet if rng.random() < 0.3 else "ab  =?")
                        for _ in range(rng.choice([0, 1, 2, 5, 40, 60, 66, 67, 68, 69, 80])))
        try:
            expected = slow.fold_binary(name, value)
        except Exception as exc:  # noqa: BLE001  (compat32 refuses some: so must the fast one)
            with pytest.raises(type(exc)):
                fast.fold_binary(name, value)
            continue
        assert fast.fold_binary(name, value) == expected, (name, value)
        compared += 1
    assert compared > 15000


@pytest.mark.parametrize("address, envelope", [
    ("u85@example.com", "u85@example.com"),
    ("a.b+c_d-e@Example.COM", "a.b+c_d-e@Example.COM"),
    ("u@" + "a" * 63 + ".example", "u@" + "a" * 63 + ".example"),
    ("u@" + "a" * 64 + ".example", ""),  # the IDNA codec refuses the label: Django raises
    ("bücher@example.com", ""),
    ("u@bücher.example", ""),
    ('"a b"@example.com', ""),
    ("a..b@example.com", ""),
])
def test_only_a_plain_address_is_its_own_envelope(address, envelope):
    from notifications.addresses import envelope_address

    assert envelope_address(address) == envelope


def test_the_message_id_is_read_as_the_email_parser_reads_it():
    """Header blocks of plain, folded, unfolded-bare-LF, non-ASCII and malformed lines, the
    Message-ID first, folded, empty, repeated, missing or only in the body: the fast reading
    gives what BytesHeaderParser gives."""
    import random
    from email.parser import BytesHeaderParser

    from notifications.providers.smtp_data import message_id_of

    lines = [b"Subject: x", b"Message-ID: <a@b>", b"message-id:  <c@d> ", b"Message-Id:\t<e@f>",
             b"MESSAGE-ID:", b" folded", b"\tfolded", b"X-Y: z", b"From x", b"From: a <b@c>",
             b"Message-ID: <\xc3\xa9@x>", b"Message-ID : <sp@x>", b"bad line", b"",
             b"Message-ID: <g@h>  ", b"To: \x01"]
    rng = random.Random(15)
    for _ in range(20000):
        head = rng.choice([b"\r\n", b"\n"]).join(rng.choice(lines)
                                                 for _ in range(rng.randint(0, 6)))
        raw = head + rng.choice([b"\r\n\r\nbody\r\nMessage-ID: <body@x>\r\n", b"\r\n", b"",
                                 b"\r\n\r\n"])
        expected = str(BytesHeaderParser().parsebytes(raw).get("Message-ID", "") or "")
        assert message_id_of(raw) == expected, raw
