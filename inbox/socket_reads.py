"""The database reads of a web process's inbox sockets, made together.

A socket reads its counts after every pushed item, and the items above its watermark at every
push check (2 s after its pushes pause, and every heartbeat). One `database_sync_to_async` call
each costs a thread hop, a connection checkout from the pool (with its health-check round trip)
and Channels' close_old_connections on both sides, and a thousand of them at once (a burst of
items to a thousand sockets; 5,000 sockets' heartbeats, 200 a second) kept the event loop's
thread off the GIL (bench/websockets.py). Here the reads that sockets ask for close together
are made in one call on a thread of the default executor: the counts in one statement per scope
(inbox_counts_many), the push checks one range scan after another on one connection.
"""

import asyncio
from collections.abc import Callable

from channels.db import database_sync_to_async

from . import selectors
from .selectors import TenantScope


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
