"""The worker's side of the SMTP keeper (keeper.py, which has the design and the case analysis).

A worker process starts its keeper lazily, when its first commit-gated SMTP call starts (so the
keeper's start overlaps that SMTP exchange; the first hand-over waits for it), and talks to it
over an AF_UNIX SOCK_SEQPACKET socket pair (unix(7)): one JSON object per packet, sockets passed
as SCM_RIGHTS ancillary data (socket.send_fds; unix(7), cmsg(3)). Messages, worker to
keeper (`op`):

- "hold": {"op": "hold", "backend_pid": int,
  "attempts": [{"id": int, "message_id": str, "tls": bool}, …]} with one SMTP socket per
  attempt, in order (`tls`: the connection is under TLS, STARTTLS or SMTPS, whose session state
  is this process's: the keeper cannot write into it); the keeper answers b"held" once it has
  them. At most keeper.HOLD_MAX_SOCKETS sockets a packet: a larger hand-over is sent as several
  holds, each answered. Sent inside the attempts' transaction, before its COMMIT.
- "end": {"op": "end", "ids": [int]}: the worker is about to write the end of that attempt's
  data ("<CRLF>.<CRLF>"). Sent just before the write, never after it.
- "release": {"op": "release", "ids": [int, …], "accepted": [int, …]}: the calls' replies to
  their ends were read (sent at once, before QUIT or the next message on the same connection:
  `EndOfData.replied`; providers/smtp_sessions.py keeps connections open) or the calls ended
  without one; the keeper closes its copies, and remembers the attempts whose server accepted
  the message (`accepted`) in case the worker dies before it writes their outcome.

Only the hold takes this module's lock (its packets and their acks, and this process's keeper
started or replaced): "end" and "release" are sent from any thread without it. A SOCK_SEQPACKET
packet is sent whole by one sendmsg (unix(7)), so packets from several threads never interleave,
and the keeper answers only holds, so nothing but a hold's ack is ever read here. Each attempt's
packets keep their order without the lock: its "end" is sent by the thread that writes its end of
data, after its hold's ack and before that write, and its "release" after the reply to that end
was read (or after its call ended), each from a thread the one before it let go on; an id is
taken out of `held` by one thread only (`set.remove`), so it is released once. (With the lock
taken per email, 64 sending threads' releases and the loop's announcements queued on it, behind
each hold's wait for the keeper's ack.)

Nothing here ever stops a delivery: a keeper that cannot be started or does not answer is
killed (it is this process's child) and logged, and the hand-over goes on as without a keeper
(the window of delivery.calls.commit_without_flush); another start is tried after
`RETRY_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

ACK = b"held"
ACK_SECONDS = 5.0  # how long a worker waits for the keeper's ack before giving it up
FIRST_ACK_SECONDS = 30.0  # the same for the first, which waits for the keeper's start
RETRY_SECONDS = 60.0  # after a keeper failed, how long before this process starts another
PACKET = 65536  # the largest packet either side reads
# The most sockets one "hold" carries: keeper.HOLD_MAX_SOCKETS, the same (keeper.py imports
# nothing of this package at its top, and this module does not import it: no cycle).
HOLD_MAX_SOCKETS = 64


def keeper_enabled() -> bool:
    """CLARION["SMTP_KEEPER"] (CLARION_SMTP_KEEPER, on by default), on PostgreSQL only: the
    keeper learns that a dead worker's transaction ended from pg_stat_activity."""
    return bool(settings.CLARION.get("SMTP_KEEPER", True)) and connection.vendor == "postgresql"


class KeeperClient:
    """This process's link to its keeper: the Popen, our end of the socket pair, and the
    attempt ids the keeper holds sockets for."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            env = {**os.environ, "CLARION_PROCESS": "keeper",
                   "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE",
                                                            "clarion.settings")}
            self.process = subprocess.Popen(
                [sys.executable, "-c", KEEPER_MAIN, str(KEEPER_FILE), str(theirs.fileno()),
                 str(connection.settings_dict["NAME"])],
                pass_fds=[theirs.fileno()], env=env, cwd=str(settings.BASE_DIR),
                stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.sock.settimeout(FIRST_ACK_SECONDS)
        self.held: set[int] = set()
        self.given_up = False
        # Held for one sendmsg, and by `close`: the link's fd is never closed (and its number
        # reused by another socket) while a thread is about to send on it.
        self.sending = threading.Lock()

    def send(self, message: dict[str, Any], fds: list[int] = ()) -> None:
        """One packet; OSError (the keeper is gone, or the link closed) or TimeoutError."""
        data = json.dumps(message).encode()
        with self.sending:
            if fds:
                socket.send_fds(self.sock, [data], list(fds))
            else:
                self.sock.send(data)

    def close(self) -> None:
        """Close our end of the link, once no thread is sending on it."""
        with self.sending:
            self.sock.close()

    def stop(self) -> None:
        """Kill the keeper (our child) and close the link: the sockets it held close with it,
        so nothing of this process's connections outlives it."""
        try:
            self.process.kill()
            self.process.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            logger.warning("SMTP keeper %s did not stop", self.process.pid)
        self.close()


# The keeper's command: keeper.py loaded on its own (not its package, whose __init__ imports
# the models: Django is set up only if the keeper has something to settle), then its main with
# the link's fd and the database named by the worker's connection (a test database's name is
# not in DATABASE_URL).
KEEPER_FILE = Path(__file__).with_name("keeper.py")
KEEPER_MAIN = ("import importlib.util, sys; "
               "spec = importlib.util.spec_from_file_location('clarion_smtp_keeper', sys.argv[1]); "
               "keeper = sys.modules[spec.name] = importlib.util.module_from_spec(spec); "
               "spec.loader.exec_module(keeper); "
               "sys.exit(keeper.main(sys.argv[2:]))")

_client: KeeperClient | None = None
_failed_at: float = -RETRY_SECONDS
_lock = threading.Lock()


def _current() -> KeeperClient | None:
    """This process's keeper, started if need be; None when it is off or cannot be had."""
    global _client, _failed_at
    if _client is not None and _client.pid != os.getpid():  # inherited across a fork
        _client.sock.close()  # our copy only: the parent's link stays open
        _client = None
    if _client is not None and _client.process.poll() is not None:
        logger.warning("SMTP keeper %s exited (%s); starting another", _client.process.pid,
                       _client.process.returncode)
        _client.close()
        _client = None
    if _client is None:
        if time.monotonic() - _failed_at < RETRY_SECONDS:
            return None
        try:
            _client = KeeperClient()
        except OSError:
            logger.exception("Could not start the SMTP keeper: delivering without it")
            _failed_at = time.monotonic()
    return _client


def keeper_start() -> None:
    """Start this process's keeper if it has none (without waiting for it), so that its
    start overlaps the SMTP exchange before the first hand-over."""
    if keeper_enabled():
        with _lock:
            _current()


def _give_up(client: KeeperClient, why: str) -> None:
    """Stop `client` (once: several threads may find it failed) and deliver without a keeper
    until RETRY_SECONDS have passed. Called with `_lock` held."""
    global _client, _failed_at
    if client.given_up:
        return
    client.given_up = True
    logger.error("SMTP keeper %s given up (%s): delivering without it", client.process.pid, why)
    client.stop()
    if _client is client:
        _client, _failed_at = None, time.monotonic()


def _send_or_give_up(client: KeeperClient, message: dict[str, Any]) -> None:
    """An "end" or "release" packet, sent without `_lock`; an OSError gives the keeper up
    (unless another is this process's keeper by then: the one it replaced)."""
    try:
        client.send(message)
    except OSError as exc:
        with _lock:
            if client is _client:
                _give_up(client, f"{type(exc).__name__}: {exc}")


def _taken(client: KeeperClient, ids: list[int]) -> list[int]:
    """Those of `ids` that `client` holds, taken out of its `held` (set.remove is one step under
    the GIL: an id is taken by one thread only)."""
    mine = []
    for pk in ids:
        try:
            client.held.remove(pk)
        except KeyError:
            continue
        mine.append(pk)
    return mine


def keeper_hold(ends: list[tuple[int, Callable[[], None]]]) -> list[int]:
    """Before the COMMIT of the attempts `ends` names ((attempt id, the call's hand-over), in
    its transaction): hand the keeper a copy of each SMTP socket (an `EndOfData` hand-over has
    `sock`; others are skipped) with the attempt ids and this connection's PostgreSQL backend
    pid, and wait for its ack. Returns the attempt ids held ([] when there is no keeper or it
    failed: delivery goes on without). Each held hand-over announces its end to the keeper
    (`announce`) before writing it."""
    gated = [(pk, end) for pk, end in ends if getattr(end, "sock", None) is not None]
    if not gated or not keeper_enabled():
        return []
    with _lock:
        client = _current()
        if client is None:
            return []
        ids = [pk for pk, _ in gated]
        try:
            for start in range(0, len(gated), HOLD_MAX_SOCKETS):
                part = gated[start:start + HOLD_MAX_SOCKETS]
                client.send({"op": "hold", "backend_pid": connection.connection.info.backend_pid,
                             "attempts": [{"id": pk, "message_id": end.message_id,
                                           "tls": isinstance(end.sock, ssl.SSLSocket)}
                                          for pk, end in part]},
                            [end.sock.fileno() for _, end in part])
                if client.sock.recv(PACKET) != ACK:
                    raise OSError("no ack")
                client.sock.settimeout(ACK_SECONDS)
        except (OSError, ValueError) as exc:
            _give_up(client, f"{type(exc).__name__}: {exc}")
            return []
        client.held.update(ids)
    for pk, end in gated:
        end.announce = _announcer(client, pk)
        end.replied = _replier(pk)
    return ids


def _announcer(client: KeeperClient, pk: int) -> Callable[[], None]:
    def announce() -> None:
        if pk not in client.held or client is not _client:
            return
        _send_or_give_up(client, {"op": "end", "ids": [pk]})
    return announce


def _replier(pk: int) -> Callable[[int], None]:
    """Release `pk` as soon as the server's reply to its end is read (before QUIT, and before
    the connection's next message): the window in which the keeper cannot tell what the
    worker read is then that of one sendmsg."""
    def replied(code: int) -> None:
        keeper_release([pk], accepted=[pk] if 200 <= code < 300 else [])
    return replied


def keeper_release(ids: list[int], accepted: list[int] = ()) -> None:
    """The calls of these attempts ended (their replies read, or their connections given up):
    the keeper closes its copies of their sockets; `accepted`: those whose server took the
    message (a 250 to the end of the data). Ids it does not hold are ignored. Sent from the
    calling thread without `_lock` (the module docstring)."""
    client = _client
    if client is None or client.pid != os.getpid():
        return
    mine = _taken(client, ids)
    if not mine:
        return
    taken = set(mine)
    _send_or_give_up(client, {"op": "release", "ids": mine,
                              "accepted": [pk for pk in accepted if pk in taken]})
