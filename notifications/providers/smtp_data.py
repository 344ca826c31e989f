"""SMTP's point of no return: Django's SMTP backend with the end of its DATA gated.

The email kinds that send over SMTP (`SMTP`, and `SettingsEmail` on Django's SMTP backend) send
through `CommitGatedSMTPBackend`, which stops the DATA exchange just short of its end so that
delivery can record the attempt before the server takes the message (delivery/calls.py), and
hands the socket to the SMTP keeper (delivery/keeper.py) through `EndOfData`.
"""

import functools
import math
import re
import select
import smtplib
import socket
from collections.abc import Callable
from email.parser import BytesHeaderParser

from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.core.mail.message import sanitize_address

END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 section 4.1.1.4: <CRLF>.<CRLF> ends the mail data


class CommitGatedSMTPBackend(DjangoSMTPBackend):
    """Django's SMTP backend whose DATA exchange stops just short of the end: after the server's
    354 it sends the message's data but its final "<CRLF>.<CRLF>" (`END_OF_DATA`, 5 bytes), then
    calls `before_end_of_data(send_end)` (if set), which records what it must and then calls
    `send_end()` to write those 5 bytes; then it reads the server's answer.

    A server takes a message only at the end of its data: the "<CRLF>.<CRLF>" line is the end
    of mail data indication, whose receipt makes the server process the transaction (RFC 5321
    section 4.1.1.4; section 3.3: it "confirms the mail transaction"), and a connection that
    closes before it ends the transaction unconfirmed, a failure the client is to treat as a
    451 and send again (section 3.8). So connecting, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO,
    DATA and the message's data may all be redone: a worker killed before `send_end()` leaves
    a message the server never took. Only writing `END_OF_DATA` and waiting for the answer is
    of unknown outcome. An exception from `before_end_of_data` before it calls `send_end`
    closes the connection (the server drops the unfinished DATA) and is raised; so does one
    from `send_end` (smtplib closes a connection it cannot write to: the server has not the
    whole end of data).

    `send_end` may be called from another thread than the one sending (delivery's concurrent
    batch calls it from the thread that wrote the attempt): that thread waits meanwhile, and
    the socket can take the 5 bytes without waiting (the data is sent and the socket writable
    before the hook is called). The socket sends without Nagle's delay (TCP_NODELAY), so the
    5 bytes are not held back until the data is acknowledged.

    The end is not written ahead under TCP_CORK, to be let go once the attempt commits, with
    SO_LINGER (on, 0) so that a dead worker's connection is reset and its queue discarded
    (tcp(7), socket(7)): measured on Linux, corked bytes leave by themselves after ~205 ms
    (tcp(7)'s 200 ms ceiling), so a slow commit would let them out before it; and a worker killed
    while its COMMIT is in PostgreSQL loses the email all the same (PostgreSQL commits, the reset
    drops the DATA), so it would not narrow the window that remains. That window, between the
    COMMIT reaching PostgreSQL and the end leaving, is kept to a round trip by the attempt's
    transaction committing without its WAL flush (delivery.calls.commit_without_flush), and
    closed by delivery's SMTP keeper, which holds a copy of the socket (`EndOfData.sock`) across
    that COMMIT and ends the data itself if the worker dies (delivery/keeper.py)."""

    before_end_of_data: Callable[[Callable[[], None]], None] | None = None

    def open(self) -> bool | None:
        opened = super().open()
        smtp = self.connection
        if opened and smtp is not None:
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.data = functools.partial(self.data, smtp)
        return opened

    def _send(self, email_message) -> bool:
        """Django's `_send`, except that an address the email's `envelope` maps (providers.email.
        Email: its plain sender and recipient addresses) goes into the SMTP envelope as it is,
        without `sanitize_address` parsing its header value again: smtplib keeps only the
        address of either (`quoteaddr`)."""
        if not email_message.recipients():
            return False
        envelope = getattr(email_message, "envelope", None) or {}
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        from_email, *recipients = [
            envelope.get(address) or sanitize_address(address, encoding)
            for address in (email_message.from_email, *email_message.recipients())]
        message = email_message.message()
        try:
            self.connection.sendmail(from_email, recipients, message.as_bytes(linesep="\r\n"))
        except smtplib.SMTPException:
            if not self.fail_silently:
                raise
            return False
        return True

    def data(self, smtp: smtplib.SMTP, msg: str | bytes) -> tuple[int, bytes]:
        """The DATA exchange of `smtp` (this backend's connection) for `msg`: gated with the
        hook set when it starts (`before_end_of_data`, set per message on a connection kept
        for several: smtp_sessions.py), smtplib's own without one."""
        hook = self.before_end_of_data
        if hook is None:
            return smtplib.SMTP.data(smtp, msg)
        return gated_data(smtp, hook, msg)


def smtp_data_bytes(msg: str | bytes) -> bytes:
    """What smtplib.SMTP.data sends after the server's 354 for `msg` (Python 3.11 to 3.13, step
    for step): a str's line endings made CRLF (smtplib's _fix_eols; bytes are sent as they are),
    each line's leading period doubled (_quote_periods; RFC 5321 section 4.5.2, transparency),
    a CRLF added unless the data ends with one, then the "." line. Ends with `END_OF_DATA`.
    UnicodeEncodeError for a str that is not ASCII, as smtplib."""
    if isinstance(msg, str):
        msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
    data = re.sub(rb"(?m)^\.", b"..", msg)
    if data[-2:] != b"\r\n":
        data += b"\r\n"
    return data + b".\r\n"


def gated_data(smtp: smtplib.SMTP, hook: Callable[[Callable[[], None]], None],
               msg: str | bytes) -> tuple[int, bytes]:
    """smtplib.SMTP.data (the DATA command, its 354, `smtp_data_bytes(msg)`, the final reply)
    with its data sent in two parts: all but `END_OF_DATA`, then `hook(send_end)`, where
    `send_end()` sends `END_OF_DATA`. The hook must call it once (from any thread) unless it
    raises; an exception before that closes the connection, nothing of the message taken.
    SMTPDataError for an answer to DATA other than 354."""
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    data = smtp_data_bytes(msg)
    send_end = EndOfData(smtp, data[-len(END_OF_DATA):], message_id_of(msg))
    try:
        smtp.send(data[:-len(END_OF_DATA)])
        _wait_writable(smtp.sock)
        hook(send_end)
    except BaseException:
        if not send_end.sent:
            smtp.close()  # the server drops the transaction: nothing of it was taken
        raise
    if not send_end.sent:
        smtp.close()
        raise RuntimeError("before_end_of_data returned without sending the end of the data.")
    reply = smtp.getreply()
    if send_end.replied is not None:
        send_end.replied(reply[0])
    return reply


class EndOfData:
    """The `send_end` of `gated_data`: called, it writes the end of the data (an OSError closes
    the connection, as smtplib does). Also tells who holds it what it ends: `sock` (the SMTP
    connection's socket) and `message_id` (the email's Message-ID header, its provider id), read
    by delivery's SMTP keeper (delivery/keeper.py), which may set `announce`, called just
    before the write, and `replied`, called with the code of the server's reply to it as soon
    as it is read."""

    def __init__(self, smtp: smtplib.SMTP, end: bytes, message_id: str):
        self.smtp, self.end, self.message_id = smtp, end, message_id
        self.sock = smtp.sock
        self.sent = False
        self.announce: Callable[[], None] | None = None
        self.replied: Callable[[int], None] | None = None

    def __call__(self) -> None:
        if self.announce is not None:
            self.announce()
        self.smtp.send(self.end)
        self.sent = True


# A header block of plain lines (a field name, its colon, printable ASCII; or a continuation),
# each ending in CRLF, and its first Message-ID field on one line.
_PLAIN_HEADERS = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[\x20-\x7e]*\r\n"
                            rb"|[ \t][\x20-\x7e]*\r\n)+")
_MESSAGE_ID_LINE = re.compile(rb"^message-id:[ \t]*([\x20-\x7e]*)\r\n",
                              re.IGNORECASE | re.MULTILINE)


def message_id_of(msg: str | bytes) -> str:
    """The Message-ID header of the email `msg` (RFC 5322 section 3.6.4), "" when it has none.
    A message whose header block is plain lines, its Message-ID on one (as Django writes them),
    is read without the email parser (~60 µs a message); any other is parsed."""
    raw = msg.encode("ascii", "replace") if isinstance(msg, str) else msg
    end = raw.find(b"\r\n\r\n") + 2
    if end > 2 and _PLAIN_HEADERS.fullmatch(raw, 0, end) and not raw.startswith(b"From "):
        found = _MESSAGE_ID_LINE.search(raw, 0, end)
        if found is None:
            return ""
        if found.group(1).rstrip(b" \t") and raw[found.end():found.end() + 1] not in b" \t":
            return found.group(1).decode("ascii")
    return str(BytesHeaderParser().parsebytes(raw).get("Message-ID", "") or "")


def _wait_writable(sock: socket.socket) -> None:
    """Wait (at most the socket's timeout) until `sock` can take a few bytes at once: the
    message's data may still fill its send buffer. TimeoutError if it cannot. One poll(2), no
    selector (an epoll instance made and closed per email: ~20 µs of the sending thread)."""
    timeout = sock.gettimeout()
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if not poller.poll(None if timeout is None else math.ceil(timeout * 1000)):
        raise TimeoutError("The SMTP server did not read the message's data in time.")


GATED_SMTP_BACKEND = "notifications.providers.smtp_data.CommitGatedSMTPBackend"
