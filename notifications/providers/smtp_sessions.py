"""SMTP connections kept open across messages: each email a worker sends through a
commit-gated SMTP backend (smtp_data.CommitGatedSMTPBackend) goes over an open connection to
the same server if one is idle, rather than connecting, greeting, EHLO (STARTTLS, AUTH) and
QUIT for each message. RFC 5321 section 3.3: a session may carry several mail transactions.

What a connection is kept for (`session_key`): the backend's class and its exact connection
parameters (host, port, username, password, STARTTLS/SMTPS, timeout, client certificate), so
two credentials never share one. A connection is in use by one sending thread at a time: it is
taken out of this process's pool for a message and put back after it (so a batch's
`CLARION_DELIVERY_CONCURRENCY` threads use at most that many connections per server).

Bounds (CLARION settings, read at each send):

- `SMTP_MESSAGES_PER_CONNECTION` (100; 1 turns reuse off): a connection is closed (QUIT) after
  that many messages; a server may limit the transactions of a session.
- `SMTP_IDLE_SECONDS` (10): a connection idle that long is closed, by a daemon thread of the
  process that wakes when the oldest idle one is due and exits once none is left (so a worker
  that sits idle closes its connections within that time), and is never taken for a message.

Safety. A connection is put back only after the server's 250 for the end of a message's data;
any exception or refusal closes it (QUIT, as Django's backend does after each message). A
connection about to be reused that has bytes waiting or was closed by the server (polled, not
waited for) is closed instead. When a reused connection fails before the message's point of no
return (`before_end_of_data` not yet called: the server closed it while idle, or answered 421),
the message is sent once more on a new connection: nothing of it reached the server's queue
(RFC 5321 section 3.8: a transaction without its end of data is not confirmed), and no attempt
was written (delivery writes it in that hook). Once the hook was called, an error is raised as
it is for a new connection, never resent here. The SMTP keeper (delivery/keeper.py) is released
from each message's socket when its reply is read (`EndOfData.replied`), before the next
message's MAIL FROM on the same connection.

A process forked with idle connections does not use its parent's (they are dropped unclosed in
the child: the parent's stay open). Connections still idle at the interpreter's exit close with
the process (no QUIT).
"""

from __future__ import annotations

import logging
import os
import select
import smtplib
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .smtp_data import CommitGatedSMTPBackend

logger = logging.getLogger(__name__)

Hook = Callable[[Callable[[], None]], None]


@dataclass(eq=False)
class Session:
    """An open connection of `backend` (its `connection`, an smtplib.SMTP) kept for `key`:
    `messages` sent over it, `idle_since` (time.monotonic()) when it was last put back."""

    backend: CommitGatedSMTPBackend
    key: tuple
    messages: int = 0
    idle_since: float = 0.0


_idle: dict[tuple, list[Session]] = {}  # the pool: idle sessions per key, newest last
_lock = threading.Lock()
_pid = os.getpid()
_reaper: threading.Thread | None = None
_wake = threading.Event()  # set to make the reaper look again (smtp_sessions_close)


def session_key(backend: CommitGatedSMTPBackend) -> tuple:
    """What a connection of `backend` may be reused for: its class and exact parameters."""
    kind = type(backend)
    return (kind.__module__, kind.__qualname__, backend.host, backend.port, backend.username,
            backend.password, bool(backend.use_tls), bool(backend.use_ssl), backend.timeout,
            backend.ssl_keyfile, backend.ssl_certfile)


def session_send(backend: CommitGatedSMTPBackend, email: Any,
                 before_end_of_data: Hook) -> None:
    """Send the Django email `email` through `backend`'s server with `before_end_of_data` as
    the backend's hook (smtp_data.CommitGatedSMTPBackend), over an idle connection kept for
    `backend`'s parameters if there is one, else over `backend`'s own, kept afterwards (the
    module docstring's bounds and safety). Raises what Django's backend raises (smtplib's
    exceptions, OSError), after closing the connection."""
    conf = settings.CLARION
    limit = int(conf.get("SMTP_MESSAGES_PER_CONNECTION", 100))
    idle = float(conf.get("SMTP_IDLE_SECONDS", 10))
    if limit <= 1 or idle <= 0:  # reuse off: a connection per message
        _send_on(backend, email, before_end_of_data)
        _close(backend)
        return
    key = session_key(backend)
    session = _take(key, idle)
    if session is not None:
        reached = False

        def hook(send_end: Callable[[], None]) -> None:
            nonlocal reached
            reached = True
            before_end_of_data(send_end)

        try:
            _send_on(session.backend, email, hook)
        except Exception as exc:
            _close(session.backend)
            if reached or not stale(exc):
                raise
            logger.info("SMTP connection to %s:%s closed while idle (%s: %s); sending on a new "
                        "one", backend.host, backend.port, type(exc).__name__, exc)
        except BaseException:
            _close(session.backend)
            raise
        else:
            _put_back(session, limit)
            return
    _send_on(backend, email, before_end_of_data)
    _put_back(Session(backend, key), limit)


def stale(exc: BaseException) -> bool:
    """Whether `exc`, raised before a message's point of no return on a reused connection,
    says that the connection was no longer usable: the server closed it (smtplib's
    SMTPServerDisconnected, a reset or broken pipe) or is closing it (421, RFC 5321 section
    3.8), so that the message may go on a new connection."""
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionError):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(code == 421 for code, _ in exc.recipients.values())
    return False


def _send_on(backend: CommitGatedSMTPBackend, email: Any, hook: Hook) -> None:
    """Send `email` on `backend`'s connection (opened if closed) with `hook` for this message
    only; any exception closes the connection."""
    backend.before_end_of_data = hook
    try:
        backend.open()
        backend.send_messages([email])  # already open: Django's backend leaves it open
    except BaseException:
        _close(backend)
        raise
    finally:
        backend.before_end_of_data = None


def _close(backend: CommitGatedSMTPBackend) -> None:
    """Close `backend`'s connection (QUIT, as Django's backend does), whatever happens."""
    smtp = backend.connection  # Django's close() forgets it before a failed QUIT's exception
    try:
        backend.close()
    except Exception:  # QUIT failed: close the socket without it
        backend.connection = None
        if smtp is not None:
            smtp.close()


def usable(backend: CommitGatedSMTPBackend) -> bool:
    """Whether `backend`'s idle connection can carry a message: open, nothing waiting to be
    read on it (a server that closed it, or wrote unasked, makes it readable), nothing left
    in its TLS buffer. Polled, never waited for."""
    smtp = backend.connection
    sock = getattr(smtp, "sock", None)
    if sock is None or sock.fileno() == -1:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return False
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _take(key: tuple, idle: float) -> Session | None:
    """An idle session for `key` that can carry a message, taken out of the pool (the most
    recently used first), or None. Those found unusable or idle longer than `idle` seconds
    are closed."""
    now = time.monotonic()
    dropped, found = [], None
    with _lock:
        _forget_forked()
        sessions = _idle.get(key, [])
        while sessions and found is None:
            session = sessions.pop()
            if now - session.idle_since < idle:
                found = session
            else:
                dropped.append(session)
        if not sessions:
            _idle.pop(key, None)
    for session in dropped:
        _close(session.backend)
    if found is not None and not usable(found.backend):
        _close(found.backend)
        return _take(key, idle)
    return found


def _put_back(session: Session, limit: int) -> None:
    """After a message the server took: keep `session` idle in the pool, or close it once it
    carried `limit` messages."""
    global _reaper
    session.messages += 1
    if session.messages >= limit or getattr(session.backend.connection, "sock", None) is None:
        _close(session.backend)
        return
    session.idle_since = time.monotonic()
    with _lock:
        _forget_forked()
        _idle.setdefault(session.key, []).append(session)
        if _reaper is None:
            _reaper = threading.Thread(target=_reap, name="clarion-smtp-idle", daemon=True)
            _reaper.start()


def _reap() -> None:
    """The daemon thread closing the connections idle longer than SMTP_IDLE_SECONDS; it exits
    once none is left (the next one put back starts another)."""
    global _reaper
    me = threading.current_thread()
    while True:
        idle = float(settings.CLARION.get("SMTP_IDLE_SECONDS", 10))
        now = time.monotonic()
        expired, due = [], None
        with _lock:
            if _reaper is not me:  # forked, or replaced
                return
            for key, sessions in list(_idle.items()):
                expired += [s for s in sessions if now - s.idle_since >= idle]
                sessions[:] = [s for s in sessions if now - s.idle_since < idle]
                if not sessions:
                    del _idle[key]
                else:
                    oldest = sessions[0].idle_since + idle
                    due = oldest if due is None else min(due, oldest)
            if due is None and not expired:
                _reaper = None
                return
        for session in expired:
            _close(session.backend)
        if due is not None:
            _wake.wait(max(due - time.monotonic(), 0.05))
            _wake.clear()


def _forget_forked() -> None:
    """In a forked child (under `_lock`): drop the parent's idle connections unclosed (closing
    them would QUIT the parent's sessions) and its reaper, which did not survive the fork."""
    global _pid, _reaper
    if os.getpid() != _pid:
        _idle.clear()
        _pid, _reaper = os.getpid(), None


def _after_fork_in_child() -> None:
    """A lock another thread held at the fork (the reaper's scan, another thread's take) stays
    held in the child, where only the forking thread goes on: the child's first email would
    wait on it forever. So the child makes the pool's lock and wake-up anew, then forgets the
    parent's connections (_forget_forked)."""
    global _lock, _wake
    _lock, _wake = threading.Lock(), threading.Event()
    with _lock:
        _forget_forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def smtp_sessions_close() -> int:
    """Close every idle connection of this process now (QUIT); returns how many."""
    with _lock:
        _forget_forked()
        sessions = [session for group in _idle.values() for session in group]
        _idle.clear()
        _wake.set()
    for session in sessions:
        _close(session.backend)
    return len(sessions)
