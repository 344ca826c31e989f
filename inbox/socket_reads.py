"""The database reads of a web process's inbox sockets, made together.

A socket reads its counts after every pushed item, and the items above its watermark at every
push check (2 s after its pushes pause, and when the push probe finds an item it never had). One
`database_sync_to_async` call each costs a thread hop, a connection checkout from the pool (with
its health-check round trip) and Channels' close_old_connections on both sides, and a thousand
of them at once (a burst of items to a thousand sockets; 5,000 sockets' heartbeats, 200 a
second) kept the event loop's thread off the GIL (bench/websockets.py). Here the reads that
sockets ask for close together are made in one call on a thread of the default executor: the
counts in one statement per scope (inbox_counts_many), the push checks one range scan after
another on one connection.

The push probe (`watch`) stands in for a push check on every heartbeat of every socket (5,000
sockets: 200 reads a second, 39 % of a core held idle, and enough objects promoted to make the
garbage collector's full passes, 0.5-1 s each, recur every few seconds). Every
INBOX_HEARTBEAT_SECONDS one read per process (inbox_items_above_many) lists, for every socket
watched, its recipient's items above the socket's watermark; only a socket with an item in its
scope it was never pushed (a push the layer dropped or never carried, an item written between
its connect's read and its group join) is asked for its push check, which decides as before.
An idle socket with nothing missing reads nothing.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from . import selectors
from .selectors import TenantScope

logger = logging.getLogger(__name__)


class BatchedRead:
    """Requests to `read_many` (sync: a list of requests → a list of results, in order) made by
    this process's sockets within `window` seconds of the first (0: in the same turn of the
    event loop), read in one call on a thread of the default executor."""

    def __init__(self, read_many: Callable[[list], list], window: float = 0):
        self.read_many = read_many
        self.window = window
        self.pending: dict[asyncio.AbstractEventLoop, list] = {}  # [(request, future)]
        self.reads: set[asyncio.Task] = set()

    async def __call__(self, request):
        """The result of `request`, read together with the others asked for meanwhile; raises
        what the read raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if loop not in self.pending:
            self.pending[loop] = []
            if self.window:
                loop.call_later(self.window, self._flush, loop)
            else:
                loop.call_soon(self._flush, loop)  # once this turn's other sockets have asked
        self.pending[loop].append((request, future))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        task = loop.create_task(self._read(self.pending.pop(loop)))
        self.reads.add(task)
        task.add_done_callback(self.reads.discard)

    async def _read(self, batch: list) -> None:
        try:
            results = await database_sync_to_async(self.read_many, thread_sensitive=False)(
                [request for request, _ in batch])
        except Exception as error:  # noqa: BLE001 - each socket's read fails as it would alone
            results = [error] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its socket closed meanwhile
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _ids_after_many(requests: list[tuple]) -> list:
    return [selectors.inbox_ids_after(recipient=recipient, tenant=tenant, after=after,
                                      limit=limit)
            for recipient, tenant, after, limit in requests]


_counts = BatchedRead(lambda requests: selectors.inbox_counts_many(requests))
# A push check waits INBOX_RESYNC_CHECK_SECONDS anyway: 50 ms more gathers a heartbeat's worth.
_ids_after = BatchedRead(_ids_after_many, window=0.05)


async def counts(*, recipient_pk: int, tenant: TenantScope) -> dict:
    """inbox_counts of the recipient in `tenant` scope, read with the other sockets' counts."""
    return await _counts((recipient_pk, tenant))


async def ids_after(*, recipient, tenant: TenantScope, after: int,
                    limit: int) -> list[tuple]:
    """inbox_ids_after, read with the other sockets' push checks."""
    return await _ids_after((recipient, tenant, after, limit))


class ProbedSocket(Protocol):
    """What the push probe reads of a socket (inbox.consumers.InboxConsumer)."""

    def probe_watermark(self) -> tuple[int, int] | None:
        """(recipient pk, the id up to which every item in its scope reached it); None: skip."""

    def probe_found(self, items: list[tuple[int, int | None]]) -> None:
        """(id, tenant pk) of its recipient's items above that watermark, oldest first."""


class PushProbe:
    """The sockets of this process (per event loop) probed together every
    INBOX_HEARTBEAT_SECONDS, while any is watched (see the module's docstring)."""

    def __init__(self):
        self.sockets: dict[asyncio.AbstractEventLoop, set] = {}
        self.tasks: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}

    def watch(self, socket: ProbedSocket) -> None:
        """Probe `socket` from the next round on (the first socket starts the rounds)."""
        loop = asyncio.get_running_loop()
        self.sockets.setdefault(loop, set()).add(socket)
        if loop not in self.tasks:
            self.tasks[loop] = loop.create_task(self._rounds(loop))

    def forget(self, socket: ProbedSocket) -> None:
        """Stop probing `socket` (the last one stops the rounds)."""
        loop = asyncio.get_running_loop()
        sockets = self.sockets.get(loop)
        if sockets is not None:
            sockets.discard(socket)
            if not sockets:
                del self.sockets[loop]
                task = self.tasks.pop(loop, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()

    async def _rounds(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(settings.INBOX_HEARTBEAT_SECONDS)
            try:
                await self.probe(loop)
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.warning("inbox: the push probe failed", exc_info=True)

    async def probe(self, loop: asyncio.AbstractEventLoop) -> int:
        """One round: every watched socket of `loop` hears of its items above its watermark.
        Returns how many sockets had any."""
        asked = [(socket, socket.probe_watermark()) for socket in self.sockets.get(loop, ())]
        asked = [(socket, mark) for socket, mark in asked if mark is not None]
        if not asked:
            return 0
        found = await database_sync_to_async(selectors.inbox_items_above_many,
                                             thread_sensitive=False)(
            [mark for _, mark in asked])
        told = 0
        for (socket, _), items in zip(asked, found, strict=True):
            if items and socket in self.sockets.get(loop, ()):  # still open
                socket.probe_found(items)
                told += 1
        return told


push_probe = PushProbe()
