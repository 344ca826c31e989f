"""The SMTP keeper: a small process per worker process that also holds each SMTP socket across
the point of no return, so that a worker killed then does not close the connection, and that
decides afterwards, from the database, whether to end the message's data.

Why. An SMTP server takes a message only at the end of its data, "<CRLF>.<CRLF>" (RFC 5321
section 4.1.1.4), and drops a DATA whose connection closes before it (section 3.8). A worker
writes the message's attempt once the data is sent but its end, commits it, then writes the end
(delivery.calls, providers.smtp_data.CommitGatedSMTPBackend). Killed after its COMMIT reached
PostgreSQL and before the end left, it used to leave a committed `started` attempt and a DATA
the server dropped when the kernel closed the dead process's socket: the email lost. A socket
passed to another process with SCM_RIGHTS (unix(7)) is the same open socket, not a copy of the
connection: it closes only when its last descriptor does, so the keeper's copy keeps the
connection, and the unended DATA, alive after the worker's death.

Run by the worker (keeper_client.KeeperClient: `python -c <keeper_client.KEEPER_MAIN> <this
file> <fd> <database name>`), `fd` its end of an AF_UNIX SOCK_SEQPACKET pair; the messages are
described in keeper_client. This file is loaded on its own, not as part of its package (whose
`__init__` imports the models), and imports only the standard library at the top: the keeper
starts in tens of milliseconds, and sets Django up (about a second and a worker's memory) only
when its worker dies holding sockets, to read the database. It exits when its worker's end
closes (the worker exited or was killed) once those sockets are settled. SIGINT and SIGTERM
are ignored: the worker's end closing is what ends it.

Each socket the keeper still holds when its worker is gone (no "release" came):

1. Wait until the worker's PostgreSQL backend (its pid, sent with the sockets) has left
   pg_stat_activity: its transaction, whose COMMIT may have been on its way, has committed or
   rolled back (at most `BACKEND_WAIT_SECONDS`; then it decides on what it sees).
2. No attempt row: the worker died before its COMMIT (or the COMMIT failed). Abort the
   connection (SO_LINGER on with 0 seconds, then close: a reset, socket(7)); the server drops the
   DATA, the message is `sending` with no attempt, and the sweeper sends it again, once.
3. The row is not `started`, or its message is no longer `sending` in the same send: someone
   else (the sweeper) has decided; abort.
4. The row is `started`: with its message's row locked (the sweeper skips locked rows), write
   the 5 bytes and read one reply (`REPLY_SECONDS` at most), then QUIT.

What the reply means depends on where the worker was, which the keeper knows from "end"
(written just before the worker's own 5 bytes, never after them, on an ordered socket):

- no "end": the worker never wrote its end. The server is in the DATA phase; ours ends it.
  2xx: delivered → the attempt succeeded (the Message-ID sent with the socket as its provider
  id, as the worker records it) and the message is sent (recovery.message_mark_sent_from_ledger,
  the sweeper's own path). 4xx/5xx: the server refused the message → the attempt is a transient
  or permanent error, as smtplib's exception would have made it, and the message, `sending`
  with no `started` attempt, is queued again by the sweeper (a permanent error fails it over).
- "end", the reply not yet read by the worker: the server got the worker's end first. Its reply
  to it is the first one on the connection (the worker read nothing after writing the end), so
  it is what the keeper reads first, decided as above; our 5 bytes reach a server in command
  mode, which answers the empty line and the "." line with syntax errors (500; RFC 5321
  section 4.2.4): no second message. When the worker had not yet written its end after
  announcing it (killed between the two), ours ends the data: the same as "no end".
- "end", the worker had read the reply itself: the server is in command mode and answers our
  bytes with 500–504 (a syntax error, never an answer to the end of data: section 4.3.2 lists
  250, 552, 554, 451, 452, 450 and 550 there). The message was delivered or refused, and
  only the dead worker knew which: the attempt stays `started`, and the sweeper marks it of
  unknown outcome (failed, never sent twice), as without a keeper. This is the one window left:
  between the worker reading its reply and telling the keeper ("release", sent as soon as the
  reply is read, before QUIT: the time of one recv and one sendmsg).
- 500–504 with no "end": the server refused our end of data with a syntax code; taken as a
  permanent error.
- No reply in time, or the connection broken: the attempt stays `started` (unknown).

A connection under TLS (STARTTLS or SMTPS) is held too, but its TLS session (keys, sequence
numbers) lives in the dead worker's memory: the keeper cannot write the end into it. It resets
the connection instead. A `started` attempt with no "end" announced was then never handed over
(the worker writes the end only after announcing it): it becomes a transient error, and the
sweeper sends the message again, once. With "end" announced it is left `started` (unknown, as
without a keeper). An attempt without a row is reset as above, and a released accepted one
(below) is recorded, as for any connection.

Several messages per connection (providers/smtp_sessions.py keeps a connection open for the
next email to the same server): each message's attempt has its own hold, "end" and release, each
hold with a new copy of the same socket. A message's release is sent when its reply is read
(`EndOfData.replied`, in gated_data, before smtplib returns), and the connection carries the next
message only after that, from the same thread, so the keeper (which reads its packets in order)
has closed message k's copy before message k+1's MAIL FROM, and holds no copy between messages.
A connection is reused only after a 250 for its last end of data; any error closes it. So:

- the worker dies between two messages, or during message k+1 before its hold (MAIL FROM, RCPT
  TO, DATA, its data): the keeper holds nothing of that connection, which closes with the
  worker; message k was settled (its reply read, its release sent), message k+1 has no attempt
  and the sweeper sends it again, once;
- it dies during message k+1 after its hold: the cases above, unchanged, since every reply
  before message k+1's end of data (message k's 250 included) was read by the worker: the
  first reply the keeper reads is the one to message k+1's end.

A worker that releases its sockets (its calls ended) and dies before writing their outcomes
leaves `started` attempts. Those it said the server accepted (its "release" names them, the last
`ACCEPTED_KEPT` of them are kept) are recorded by the keeper as in the 2xx case above, once the
worker's backend is gone, if they are still `started`; the others the sweeper resolves as without
a keeper (of unknown outcome).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import signal
import socket
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass

logger = logging.getLogger("notifications.delivery.keeper")

BACKEND_WAIT_SECONDS = 30.0
ACCEPTED_KEPT = 10_000
REPLY_SECONDS = 30.0
# The most sockets one "hold" packet carries, all that `serve` reads of a packet's SCM_RIGHTS
# (keeper_client sends a larger hand-over in several packets, HOLD_MAX_SOCKETS there too; the
# kernel's bound is SCM_MAX_FD, 253). Beyond it the kernel would close the rest, and the hold
# could not be read.
HOLD_MAX_SOCKETS = 64
# providers.smtp_data.END_OF_DATA (not imported: no Django before setup)
END_OF_DATA = b"\r\n.\r\n"
KEEPER_ERROR = "The worker stopped; its SMTP keeper ended the message's data: "
TLS_RESET = ("The worker stopped before the end of the message's data; its SMTP keeper reset the "
             "TLS connection, so the server dropped the message.")


@dataclass
class Held:
    """A socket the keeper holds: its attempt, the email's Message-ID, the worker's backend
    pid, and whether the worker announced writing its end."""

    attempt_id: int
    message_id: str
    backend_pid: int
    sock: socket.socket
    end_announced: bool = False
    tls: bool = False


def serve(link: socket.socket, accepted: OrderedDict[int, Held] | None = None
          ) -> dict[int, Held]:
    """Read the worker's packets until its end closes; returns what is still held. The released
    attempts the worker said were accepted go to `accepted` (their sockets closed), the last
    `ACCEPTED_KEPT` of them."""
    held: dict[int, Held] = {}
    accepted = accepted if accepted is not None else OrderedDict()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(link, 65536, HOLD_MAX_SOCKETS)
        except ConnectionResetError:
            data, fds = b"", []
        if not data:
            for fd in fds:
                socket.close(fd)
            return held
        message = json.loads(data)
        op = message["op"]
        if op == "hold":
            for entry, fd in zip(message["attempts"], fds, strict=True):
                held[entry["id"]] = Held(entry["id"], entry["message_id"],
                                         message["backend_pid"], socket.socket(fileno=fd),
                                         tls=bool(entry.get("tls")))
            link.send(b"held")
        elif op == "end":
            for pk in message["ids"]:
                if pk in held:
                    held[pk].end_announced = True
        elif op == "release":
            taken = set(message.get("accepted", ()))
            for pk in message["ids"]:
                entry = held.pop(pk, None)
                if entry is not None:
                    entry.sock.close()
                    if pk in taken:
                        accepted[pk] = entry
                        if len(accepted) > ACCEPTED_KEPT:
                            accepted.popitem(last=False)


def abort(sock: socket.socket) -> None:
    """Close `sock` with a reset (SO_LINGER on, 0 s; socket(7)): the server drops the DATA."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


REPLY_LINE = re.compile(rb"^(\d{3})([ -])(.*)$")


def read_reply(sock: socket.socket, timeout: float = REPLY_SECONDS) -> tuple[int, str] | None:
    """One SMTP reply (RFC 5321 section 4.2: lines "ddd-text", then "ddd text"): (code, text),
    or None when none came in `timeout` seconds, the connection broke or the bytes are not a
    reply."""
    sock.settimeout(timeout)
    buffer, lines = b"", []
    try:
        while True:
            while b"\r\n" not in buffer and b"\n" not in buffer:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                buffer += chunk
            line, _, buffer = buffer.replace(b"\r\n", b"\n").partition(b"\n")
            match = REPLY_LINE.match(line)
            if match is None:
                return None
            lines.append(match.group(3).decode("utf-8", "replace"))
            if match.group(2) == b" ":
                return int(match.group(1)), "\n".join(lines)
    except OSError:
        return None


def backend_gone(pid: int) -> bool:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() is None


def wait_backends(pids: set[int], timeout: float = BACKEND_WAIT_SECONDS) -> None:
    """Wait until none of `pids` is a live PostgreSQL backend, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while not backend_gone(pid):
            if time.monotonic() > deadline:
                logger.warning("worker backend %s still there after %s s; deciding now", pid,
                               timeout)
                return
            time.sleep(0.05)


def settle(entry: Held) -> str:
    """Decide one held socket once its worker and its worker's transaction are gone (the module
    docstring's cases), or one accepted and released (its socket closed) whose attempt is still
    `started`. Returns "aborted", "sent", "refused", "reset" (TLS), "unknown" or "" (nothing to
    do)."""
    from django.db import transaction

    from notifications.delivery.claim import MESSAGE_RELATIONS
    from notifications.delivery.recovery import message_mark_sent_from_ledger
    from notifications.models import DeliveryAttempt, Message

    with transaction.atomic():
        attempt = DeliveryAttempt.objects.filter(pk=entry.attempt_id).first()
        if attempt is None:
            abort(entry.sock)
            return "aborted"
        message = (Message.objects.select_for_update(of=("self",))
                   .select_related(*MESSAGE_RELATIONS).get(pk=attempt.message_id))
        attempt.refresh_from_db()
        if (attempt.outcome != DeliveryAttempt.Outcome.STARTED
                or message.status != Message.Status.SENDING
                or message.send_number != attempt.send_number):
            if entry.sock.fileno() == -1:  # released, and written by the worker meanwhile
                return ""
            abort(entry.sock)
            return "aborted"
        if entry.sock.fileno() == -1:  # released: the worker read the server's 250
            attempt.outcome = DeliveryAttempt.Outcome.SUCCEEDED
            attempt.response = {**(attempt.response or {}), "message_id": entry.message_id,
                                "resolved_from": "the worker's release to the SMTP keeper"}
            attempt.save(update_fields=["outcome", "response"])
            message_mark_sent_from_ledger(message, attempt)
            return "sent"
        if entry.tls:  # the TLS session is the dead worker's: nothing can be written in it
            abort(entry.sock)
            if entry.end_announced:
                logger.warning("attempt %s: outcome unknown (a TLS connection)", attempt.pk)
                return "unknown"
            attempt.outcome = DeliveryAttempt.Outcome.TRANSIENT_ERROR
            attempt.error = TLS_RESET
            attempt.save(update_fields=["outcome", "error"])
            return "reset"
        try:
            entry.sock.sendall(END_OF_DATA)
        except OSError:
            reply = None
        else:
            reply = read_reply(entry.sock)
        if reply is None or (500 <= reply[0] <= 504 and entry.end_announced):
            abort(entry.sock)  # unknown: left `started` for the sweeper
            logger.warning("attempt %s: outcome unknown (reply %r)", attempt.pk, reply)
            return "unknown"
        code, text = reply
        quit_and_close(entry.sock)
        if 200 <= code < 300:
            attempt.outcome = DeliveryAttempt.Outcome.SUCCEEDED
            attempt.response = {**(attempt.response or {}), "message_id": entry.message_id,
                                "reply": f"{code} {text}", "resolved_from": "the SMTP keeper"}
            attempt.save(update_fields=["outcome", "response"])
            message_mark_sent_from_ledger(message, attempt)
            return "sent"
        attempt.outcome = (DeliveryAttempt.Outcome.TRANSIENT_ERROR if 400 <= code < 500
                           else DeliveryAttempt.Outcome.PERMANENT_ERROR)
        attempt.status_code = code
        attempt.error = f"{KEEPER_ERROR}SMTPDataError: ({code}, {text!r})"[:2000]
        attempt.save(update_fields=["outcome", "status_code", "error"])
        return "refused"


def quit_and_close(sock: socket.socket) -> None:
    try:
        sock.sendall(b"QUIT\r\n")
        sock.settimeout(5)
        sock.recv(4096)
    except OSError:
        pass
    sock.close()


def main(argv: list[str]) -> int:
    """The keeper's life: `argv` is the socket pair's fd and the database's name. Django is set
    up (DJANGO_SETTINGS_MODULE from the environment the worker gave) only once the worker is
    gone and something is left to settle. Returns the exit status: 1 when the database could
    not be read to settle what was held."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    link = socket.socket(fileno=int(argv[0]))
    accepted: OrderedDict[int, Held] = OrderedDict()
    held = serve(link, accepted)
    link.close()
    if not (held or accepted):
        return 0
    import django

    django.setup()
    from django.db import DatabaseError, connection

    connection.settings_dict["NAME"] = argv[1]
    try:
        if accepted:  # only those the worker may not have written yet
            from notifications.models import DeliveryAttempt

            started = set(DeliveryAttempt.objects.filter(
                pk__in=list(accepted), outcome=DeliveryAttempt.Outcome.STARTED)
                .values_list("pk", flat=True))
            held.update((pk, entry) for pk, entry in accepted.items() if pk in started)
        if not held:
            return 0
        wait_backends({entry.backend_pid for entry in held.values()})
    except DatabaseError as exc:  # nothing can be decided: the connections reset, unknown
        logger.error("cannot read the database (%s): %s held and %s released attempts left to "
                     "the sweeper", exc, len(held), len(accepted))
        for entry in held.values():
            abort(entry.sock)
        return 1
    for entry in held.values():
        try:
            outcome = settle(entry)
        except Exception:
            logger.exception("attempt %s: could not settle", entry.attempt_id)
            abort(entry.sock)
            continue
        if outcome:
            logger.info("attempt %s: %s", entry.attempt_id, outcome)
    return 0


