"""How inbox changes reach open websockets.

Every socket of a recipient joins the group `inbox.<recipient pk>`, where the typed events of
inbox/events.py arrive (ItemCreated, ItemUpdated, ItemsUpdated). Each becomes one frame, followed,
per socket, by `counts.changed` with counts computed for that socket's scope. A socket opened
with a tenant's HMAC also joins `inbox.tenant-secrets.<tenant pk>`, which hears when that
tenant's inbox secret is rotated (`inbox.secrets_changed`).

The database is the source of truth and the layer is at-most-once; a client that reconnects
re-syncs from the REST feed with its cursor.

New items are written by the worker process. With INBOX_REALTIME="layer" (Redis) the worker
publishes them after commit. With INBOX_REALTIME="poll" (the embedded mode, where the in-memory
layer does not cross processes) each web process runs one `InboxBridge` while it has sockets
open: every INBOX_POLL_SECONDS it reads the rows with an id above the last it saw (one
primary-key range scan) and publishes them to its own in-memory layer. State changes are made
through the REST API, i.e. in a web process, and always go through the layer.
"""

import asyncio
import logging
import os
import threading

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max

from .events import InboxEvent, ItemCreated
from .models import InboxItem
from .selectors import ITEM_FIELDS, item_json

logger = logging.getLogger(__name__)


def recipient_group(recipient_pk: int) -> str:
    return f"inbox.{recipient_pk}"


class _PublisherLoop:
    """An event loop on a thread of its own, for publishing from sync code outside daphne (the
    worker). channels-redis keeps its connections per event loop, and `async_to_sync` without an
    outer loop runs each call on a new one: a new Redis connection for every publish (10-50 ms
    measured). One long-lived loop per process keeps one connection pool.

    `submit` hands a message over and returns at once: messages go out concurrently, at most
    MAX_IN_FLIGHT sends at a time, each group's messages in the order they were submitted.
    `submit_many` hands over a burst (a batch of runs commits a thousand items) as one send:
    with clarion.channel_layer's `group_send_many`, two Redis round trips for all of it. `run`
    waits for its coroutine's result."""

    MAX_IN_FLIGHT = 64

    def __init__(self):
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = 0
        self.tails: dict[str, asyncio.Task] = {}  # each group's latest send, on the loop
        self.gate: asyncio.Semaphore | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None or self.pid != os.getpid():  # new, or inherited through fork
                self.loop = asyncio.new_event_loop()
                self.pid = os.getpid()
                self.tails, self.gate = {}, asyncio.Semaphore(self.MAX_IN_FLIGHT)
                threading.Thread(target=self.loop.run_forever, name="inbox-publisher",
                                 daemon=True).start()
            return self.loop

    def run(self, coroutine, timeout: float = 5):
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop()).result(timeout)

    def submit(self, group: str, message: dict) -> None:
        """Send `message` to `group` on the layer soon, after the group's earlier messages;
        a failure is logged (the feed is the record)."""
        self._running_loop().call_soon_threadsafe(self._start, group, message)

    def submit_many(self, messages: list[tuple[str, dict]]) -> None:
        """Send each (group, message) soon, all in one layer call, after the earlier messages
        of their groups; a failure is logged (the feed is the record)."""
        self._running_loop().call_soon_threadsafe(self._start_many, messages)

    def _start(self, group: str, message: dict) -> None:  # on the loop
        self._chain([group], self._send(self.tails.get(group), group, message))

    def _start_many(self, messages: list[tuple[str, dict]]) -> None:  # on the loop
        groups = list(dict.fromkeys(group for group, _ in messages))
        previous = list(dict.fromkeys(self.tails[group] for group in groups if group in self.tails))
        self._chain(groups, self._send_many(previous, messages))

    def _chain(self, groups: list[str], coroutine) -> None:
        """Run `coroutine` as the latest send of each of `groups`."""
        task = self.loop.create_task(coroutine)
        for group in groups:
            self.tails[group] = task
        task.add_done_callback(lambda done: [self.tails.pop(group) for group in groups
                                             if self.tails.get(group) is done])

    def wait(self, timeout: float = 10) -> None:
        """Until every message submitted so far was sent (or failed), at most `timeout` s."""
        if self.loop is None or self.pid != os.getpid():
            return

        async def sent() -> None:
            if self.tails:
                await asyncio.wait(list(self.tails.values()))

        self.run(sent(), timeout)

    async def _send(self, previous: asyncio.Task | None, group: str, message: dict) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        async with self.gate:
            try:
                await get_channel_layer().group_send(group, message)
            except Exception:  # noqa: BLE001 - the feed is the record; a lost push is re-synced
                logger.exception("inbox: could not publish %s to %s",
                                 message.get("event") or message["type"], group)

    async def _send_many(self, previous: list[asyncio.Task],
                         messages: list[tuple[str, dict]]) -> None:
        if previous:
            await asyncio.wait(previous)
        layer = get_channel_layer()
        async with self.gate:
            try:
                if hasattr(layer, "group_send_many"):
                    await layer.group_send_many(messages)
                    return
                for group, message in messages:  # another Redis layer: one at a time
                    await layer.group_send(group, message)
            except Exception:  # noqa: BLE001 - the feed is the record; lost pushes are re-synced
                logger.exception("inbox: could not publish %d inbox events", len(messages))


_publisher = _PublisherLoop()


def _group_send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        if isinstance(layer, InMemoryChannelLayer):
            # In-process only: it must run on the loop of this process's sockets (daphne's).
            async_to_sync(layer.group_send)(group, message)
        else:
            _publisher.run(layer.group_send(group, message))
    except Exception:  # noqa: BLE001 - the feed is the record; a lost push is re-synced
        logger.exception("inbox: could not publish %s to %s", message.get("event") or
                         message["type"], group)


def _send(event: InboxEvent) -> None:
    """Publish `event` to its recipient's sockets: through the publisher loop without waiting
    (a Redis layer), or at once (the in-memory layer of this process)."""
    layer = get_channel_layer()
    if layer is not None and not isinstance(layer, InMemoryChannelLayer):
        _publisher.submit(recipient_group(event.recipient_id), event.message())
        return
    _group_send(recipient_group(event.recipient_id), event.message())


def published_wait(timeout: float = 10) -> None:
    """Wait (at most `timeout` seconds) until the events this process published are on the
    layer: for a short-lived process (a script, a command) before it exits."""
    _publisher.wait(timeout)


def publish_on_commit(event: InboxEvent) -> None:
    """Publish `event` to its recipient's sockets once the current transaction commits.

    A new item (ItemCreated) goes through the layer only in "layer" mode; in "poll" mode the
    web process's InboxBridge finds it in the database.
    """
    if isinstance(event, ItemCreated) and settings.INBOX_REALTIME != "layer":
        return
    transaction.on_commit(lambda: _send(event))


def publish_many_on_commit(events: list[InboxEvent]) -> None:
    """Publish `events` (e.g. a batch's new items, each to its recipient's sockets) once the
    current transaction commits: one callback for all, each event handed to the publisher
    loop without waiting (see `_send`). New items are left out in "poll" mode, as in
    publish_on_commit."""
    if settings.INBOX_REALTIME != "layer":
        events = [event for event in events if not isinstance(event, ItemCreated)]
    if events:
        transaction.on_commit(lambda: _send_all(events))


def _send_all(events: list[InboxEvent]) -> None:
    """Publish `events`: through the publisher loop as one send (a Redis layer), or each at
    once (the in-memory layer of this process)."""
    layer = get_channel_layer()
    if layer is not None and not isinstance(layer, InMemoryChannelLayer):
        _publisher.submit_many([(recipient_group(event.recipient_id), event.message())
                                for event in events])
        return
    for event in events:
        _send(event)


def tenant_secrets_group(tenant_pk: int) -> str:
    """The group of the sockets opened with an HMAC made with a secret of this tenant."""
    return f"inbox.tenant-secrets.{tenant_pk}"


def publish_secrets_changed_on_commit(tenant) -> None:
    """After a rotation of `tenant`'s inbox secret commits, tell its HMAC sockets which secrets
    are accepted now, as {fingerprint: accepted until (ISO) or None}: a socket whose secret is
    not among them closes (4401), one whose secret became the previous one closes when its
    window ends. (Rotations are made through the admin or the API, in a web process: in "poll"
    mode too, its own in-memory layer reaches its sockets.)"""
    from .auth import secret_fingerprint, tenant_inbox_secrets

    accepted = {secret_fingerprint(secret): until.isoformat() if until else None
                for secret, until in tenant_inbox_secrets(tenant)}
    message = {"type": "inbox.secrets_changed", "accepted": accepted}
    transaction.on_commit(lambda: _group_send(tenant_secrets_group(tenant.pk), message))


class InboxBridge:
    """Polls the database for new InboxItems and publishes them to this process's layer."""

    BATCH = 500

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.subscribers = 0
        self.task: asyncio.Task | None = None
        self.ready = asyncio.Event()
        self.last_id: int | None = None

    async def subscribe(self) -> None:
        """Count one more socket; start polling (from the newest row now) if idle."""
        self.subscribers += 1
        if self.task is None:
            self.task = self.loop.create_task(self._run())
        await self.ready.wait()

    def unsubscribe(self) -> None:
        self.subscribers = max(self.subscribers - 1, 0)
        if self.subscribers == 0 and self.task is not None:
            # Idle: the next subscriber starts from the newest row then, not from here.
            self.task.cancel()
            self.task = None
            self.ready = asyncio.Event()
            self.last_id = None

    async def _run(self) -> None:
        try:
            self.last_id = await database_sync_to_async(_max_item_id)()
        finally:
            self.ready.set()  # never leave a socket waiting, even if the database failed
        while True:
            await asyncio.sleep(settings.INBOX_POLL_SECONDS)
            try:
                await self.poll()
            except Exception:  # noqa: BLE001 - keep polling; clients re-sync from the feed
                logger.exception("inbox bridge: poll failed")

    async def poll(self) -> int:
        rows = await database_sync_to_async(_items_after)(self.last_id or 0, self.BATCH)
        layer = get_channel_layer()
        for event in rows:
            self.last_id = max(self.last_id or 0, event.item["id"])
            await layer.group_send(recipient_group(event.recipient_id), event.message())
        return len(rows)


def _max_item_id() -> int:
    return InboxItem.objects.aggregate(top=Max("id"))["top"] or 0


def _items_after(last_id: int, limit: int) -> list[ItemCreated]:
    rows = (InboxItem.objects.filter(id__gt=last_id).order_by("id")
            .values(*ITEM_FIELDS, "recipient_id", tenant_key=F("tenant__key"))[:limit])
    return [ItemCreated(recipient_id=row["recipient_id"], tenant_id=row["tenant_id"],
                        item=item_json(row)) for row in rows]


_bridges: dict[asyncio.AbstractEventLoop, InboxBridge] = {}


def bridge() -> InboxBridge:
    """This event loop's bridge (one per web process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    for old in [old for old in _bridges if old.is_closed()]:
        del _bridges[old]
    if loop not in _bridges:
        _bridges[loop] = InboxBridge(loop)
    return _bridges[loop]
