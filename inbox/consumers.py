"""`/ws/inbox/?token=…` (or `?recipient=…&hmac=…`, with `&tenant=<key>` when the HMAC was made
with that tenant's inbox secret): one recipient's live inbox.

Frames the server sends (JSON): `counts.changed` {meta} on connect and after every change,
`item.created` {item}, `item.updated` {item}, `items.updated` {action, at, up_to[, tenant]} (a
bulk change of the items with ids up to `up_to`; `tenant` when it covered one tenant's items,
null for the items without a tenant),
`heartbeat` every INBOX_HEARTBEAT_SECONDS, `pong` after a client's `{"type": "ping"}`, and
`resync` {before} when item pushes to this socket were lost: the client fetches the feed's items
newer than `before` again.
Pushes are at-most-once (a channel layer over its per-channel capacity drops them; so does a
layer unreachable when the worker publishes), so each socket reconciles what it pushed with the
database: INBOX_RESYNC_CHECK_SECONDS after pushes pause, and when the process's push probe
(inbox.socket_reads, one read for all its sockets every INBOX_HEARTBEAT_SECONDS) finds an item
in its scope above its watermark that it was never pushed, it asks itself, through its own
channel (behind the events already queued there), to look for items newer than its watermark
that are older than the check and were never pushed. Those are counted
(`clarion_inbox_pushes_dropped_total`), logged, and answered with one `resync` frame and the
counts. An idle socket with nothing missing reads nothing on its heartbeats.

A missing, bad or expired credential closes the socket with code 4401, and so does the moment an
open socket's token expires (or the rotation window of the secret its HMAC was made with ends).
"""

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull, StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from clarion.channel_layer import dispatch_each
from clarion.metrics import INBOX_PUSHES_DROPPED, WEBSOCKET_CONNECTIONS
from notifications.models import Tenant

from . import realtime, socket_reads
from .auth import InboxPrincipal, inbox_principal
from .events import CountsChanged, ItemCreated, Resync, from_message
from .selectors import inbox_newest_id, scope_includes

logger = logging.getLogger(__name__)

UNAUTHORIZED = 4401
# Items one reconciliation reads at most; more are left to the next (asked at once).
RECONCILE_BATCH = 1000


def _concurrent_read(function):
    """`function` (a read that keeps no state between calls) as a coroutine run on the default
    executor's threads, several at once, rather than on the one thread Channels runs sync code
    on by default, where every socket's connect and counts queue behind each other: thousands of
    sockets connecting, or a burst of items reaching as many sockets (bench/websockets.py)."""
    return database_sync_to_async(function, thread_sensitive=False)


def _principal_from_query(query_string: bytes) -> InboxPrincipal | None:
    """The credentials in the URL. With an HMAC, `tenant=<key>` names the tenant whose inbox
    secret made it (none: the global secret); with a token, it narrows an unscoped token to one
    tenant (a tenant token's own tenant cannot be changed)."""
    query = {key: values[-1] for key, values in parse_qs(query_string.decode("latin-1")).items()}
    if not query.get("token"):
        return inbox_principal(recipient_id=query.get("recipient"), signature=query.get("hmac"),
                               tenant_key=query.get("tenant"))
    principal = inbox_principal(token=query["token"])
    if principal is None or not query.get("tenant"):
        return principal
    if principal.tenant is not None:
        return principal if principal.tenant.key == query["tenant"] else None
    tenant = Tenant.objects.filter(key=query["tenant"]).first()
    return replace(principal, tenant=tenant) if tenant is not None else None


def _handshake_dropped(send) -> None:
    """uvicorn's websocket protocol (WebSocketsSansIOProtocol, the one it picks) keeps the
    handshake's request and response, with their headers (~30 objects the garbage collector
    tracks, per socket), for the socket's life, though it reads neither once the handshake is
    complete: let them go. Other servers and protocols: nothing."""
    protocol = getattr(send, "__self__", None)
    if (type(protocol).__name__ == "WebSocketsSansIOProtocol"
            and getattr(protocol, "handshake_complete", False)
            and hasattr(protocol, "request") and hasattr(protocol, "response")):
        protocol.request = protocol.response = None


class InboxConsumer(AsyncJsonWebsocketConsumer):
    principal: InboxPrincipal | None = None
    group: str | None = None
    # One timer per socket, for its next heartbeat or its credential's end, whichever is first
    # (the event loop's times): a held socket keeps a timer, not a sleeping task each (objects
    # the garbage collector walks on every full pass, bench/websockets.py).
    timer: asyncio.TimerHandle | None = None
    beat_at: float = 0.0
    close_at: float | None = None
    chore: asyncio.Task | None = None  # a heartbeat or the close the timer started, running
    rejoin_at: float = 0.0  # the event loop's time to join the groups again (_join_groups)
    secrets_group: str | None = None
    bridged = False
    counted = False
    probed = False
    # Reconciliation: every item in scope up to `synced_up_to` reached the client (the feed it
    # read on connect, a push, or a re-sync); `pushed` are the ids above it pushed since.
    synced_up_to = 0
    pushed: set[int]
    # The timer of the next check, while one is planned (a timer, not a sleeping task: a burst
    # plans one on each socket it reaches), and the check's request while it is being sent.
    reconcile: asyncio.TimerHandle | None = None
    asking: asyncio.Task | None = None
    last_push_at = 0.0  # time.time() of the last item.created sent
    deferred_since: float | None = None  # a check waits while pushes keep coming, this long

    async def __call__(self, scope, receive, send):
        """Channels' AsyncConsumer.__call__, with one waiting coroutine per socket instead of
        Channels' two receive tasks under asyncio.wait, made anew for every message
        (clarion.channel_layer.dispatch_each)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        try:
            await dispatch_each(receive, self.channel_layer,
                                getattr(self, "channel_name", None), self.dispatch)
        except StopConsumer:
            return  # the socket is closed (a `with suppress` would be held for its life)

    async def dispatch(self, message):
        """Channels' dispatch, without the close_old_connections it makes before every handler:
        a hop to the one thread Channels runs sync code on, for every frame and layer message of
        every socket, one after another (a burst of 1,000 items queued 1,000 hops there, and so
        did 1,000 pings: bench/websockets.py). This consumer reads the database only through
        database_sync_to_async, which closes old connections on its own thread around each
        read."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        principal = await _concurrent_read(_principal_from_query)(
            self.scope.get("query_string", b""))
        await self.accept()
        if principal is None:
            # Accept first: a close before accept cannot carry an application code.
            await self.close(code=UNAUTHORIZED)
            return
        _handshake_dropped(self.base_send)
        self.principal = principal
        self.pushed = set()
        # The client reads the feed (re-syncs) once it has the first frame: up to here at least.
        self.synced_up_to = await database_sync_to_async(inbox_newest_id)(
            recipient=principal.recipient, tenant=principal.tenant)
        WEBSOCKET_CONNECTIONS.inc()
        self.counted = True
        self.group = realtime.recipient_group(principal.recipient.pk)
        if principal.secret_fingerprint is not None:  # a tenant's HMAC: hear its rotations
            self.secrets_group = realtime.tenant_secrets_group(principal.tenant.pk)
        await self._join_groups()
        socket_reads.push_probe.watch(self)
        self.probed = True
        if settings.INBOX_REALTIME == "poll":
            await realtime.bridge().subscribe()
            self.bridged = True
        await self._send_counts()
        self.beat_at = asyncio.get_running_loop().time() + self._beat_interval()
        self._expire_at(principal.expires_at)

    async def disconnect(self, code):
        if self.counted:  # /metrics' clarion_websocket_connections
            WEBSOCKET_CONNECTIONS.dec()
            self.counted = False
        if self.probed:
            socket_reads.push_probe.forget(self)
            self.probed = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.reconcile is not None:
            self.reconcile.cancel()
            self.reconcile = None
        for task in (self.chore, self.asking):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.bridged:
            realtime.bridge().unsubscribe()
            self.bridged = False
        for group in (self.group, self.secrets_group):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)

    async def send_json(self, content, close=False):
        """Channels' send_json in one coroutine (it went through four for every frame:
        send_json, encode_json, AsyncWebsocketConsumer.send, AsyncConsumer.send)."""
        await self.base_send({"type": "websocket.send", "text": json.dumps(content)})
        if close:
            await self.close(close)

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or self.principal is None:
            return
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _join_groups(self) -> None:
        """(Re-)join the socket's groups. A channel layer forgets a membership `group_expiry`
        seconds after it was made (channels' and channels-redis' default: 86,400), and a socket
        on an HMAC, which never expires, lives longer than that: it joins again halfway."""
        for group in (self.group, self.secrets_group):
            if group is not None:
                await self.channel_layer.group_add(group, self.channel_name)
        expiry = getattr(self.channel_layer, "group_expiry", 86400)
        self.rejoin_at = asyncio.get_running_loop().time() + expiry / 2

    @staticmethod
    def _beat_interval() -> float:
        """INBOX_HEARTBEAT_SECONDS, 0-10 % less (sockets opened together, as after a deploy,
        drift apart instead of beating in step)."""
        return settings.INBOX_HEARTBEAT_SECONDS * random.uniform(0.9, 1.0)

    def _expire_at(self, moment: datetime | None) -> None:
        """Close the socket at `moment` (None: never), instead of any earlier plan."""
        loop = asyncio.get_running_loop()
        self.close_at = (None if moment is None else
                         loop.time() + max((moment - timezone.now()).total_seconds(), 0))
        self._set_timer()

    def _set_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        when = self.beat_at if self.close_at is None else min(self.beat_at, self.close_at)
        self.timer = asyncio.get_running_loop().call_at(when, self._tick)

    def _tick(self) -> None:
        """The timer: close the socket if its credential has ended, else send the heartbeat
        that is due (in a task of its own while it runs), and set the next."""
        self.timer = None
        loop = asyncio.get_running_loop()
        if self.close_at is not None and loop.time() >= self.close_at:
            if self.chore is not None:
                self.chore.cancel()
            self.chore = loop.create_task(self._close_expired())
            return
        if loop.time() >= self.beat_at:
            self.beat_at = loop.time() + self._beat_interval()
            if self.chore is None or self.chore.done():  # else the last beat is still going
                self.chore = loop.create_task(self._beat())
        self._set_timer()

    async def _beat(self) -> None:
        await self.send_json({"type": "heartbeat"})
        if asyncio.get_running_loop().time() >= self.rejoin_at:
            await self._join_groups()

    async def _close_expired(self) -> None:
        """Close with 4401 when the credential stops working: the token expires, or the
        rotation window of the previous secret its HMAC was made with ends."""
        self.principal = None  # nothing more reaches this socket
        await self.close(code=UNAUTHORIZED)

    async def _send_counts(self):
        meta = await socket_reads.counts(recipient_pk=self.principal.recipient.pk,
                                         tenant=self.principal.tenant)
        await self.send_json(CountsChanged(meta=meta).frame())

    # --- channel layer events (inbox.events) ------------------------------------------------

    async def inbox_event(self, message):
        """One InboxEvent for this recipient: its frame if this socket's scope sees it, then
        this socket's counts."""
        if self.principal is None:
            return
        event = from_message(message)
        if not event.visible_to(self.principal.tenant):
            return
        await self.send_json(event.frame())
        if isinstance(event, ItemCreated):
            if event.item["id"] > self.synced_up_to:
                self.pushed.add(event.item["id"])
            self.last_push_at = time.time()
            self._plan_reconcile(settings.INBOX_RESYNC_CHECK_SECONDS)
        await self._send_counts()

    # --- reconciliation of pushes with the database ------------------------------------------

    def probe_watermark(self) -> tuple[int, int] | None:
        """(recipient pk, watermark) for the push probe (inbox.socket_reads)."""
        if self.principal is None:
            return None
        return self.principal.recipient.pk, self.synced_up_to

    def probe_found(self, items: list[tuple[int, int | None]]) -> None:
        """The push probe's (id, tenant pk) of the recipient's items above the watermark: one
        in scope that was never pushed here (a lone lost push has no later push to reveal it)
        asks for a push check now, unless one is planned."""
        if self.principal is None or self.reconcile is not None:
            return
        if any(item_id > self.synced_up_to and item_id not in self.pushed
               and scope_includes(self.principal.tenant, tenant_pk)
               for item_id, tenant_pk in items):
            self._plan_reconcile(0)

    def _plan_reconcile(self, delay: float) -> None:
        """Ask for a check in `delay` seconds, unless one is planned already."""
        if self.reconcile is None:
            self.reconcile = asyncio.get_running_loop().call_later(delay, self._reconcile_due)

    def _reconcile_due(self) -> None:
        self.reconcile = None
        if self.principal is not None:
            self.asking = asyncio.get_running_loop().create_task(self._ask_reconcile())

    async def _ask_reconcile(self) -> None:
        """Queue the check on this socket's own channel, behind the events queued there: when
        it runs, every push published before it was asked has been handled, or was lost."""
        try:
            await self.channel_layer.send(self.channel_name, {
                "type": "inbox.reconcile", "asked_at": time.time()})
        except ChannelFull:  # the very case: try again once the queue has drained a little
            self._plan_reconcile(settings.INBOX_RESYNC_CHECK_SECONDS)
        except Exception:  # noqa: BLE001 - a layer down closes the socket; the client re-syncs
            logger.warning("inbox: could not queue the push check of %s", self.channel_name,
                           exc_info=True)

    async def inbox_reconcile(self, message):
        """The items in scope above the watermark, committed before the check was asked (less
        INBOX_RESYNC_CHECK_SECONDS, for pushes still on their way) and never pushed here: count
        them, and tell the client to re-sync from the watermark."""
        if self.principal is None:
            return
        asked_at, wait = message["asked_at"], settings.INBOX_RESYNC_CHECK_SECONDS
        if asked_at - self.last_push_at < wait:
            # Pushes are still coming (a burst being published): what is not here yet may be
            # on its way. Look once they pause, or after a heartbeat's time at the latest.
            self.deferred_since = self.deferred_since or asked_at
            if asked_at - self.deferred_since < settings.INBOX_HEARTBEAT_SECONDS:
                self._plan_reconcile(wait)
                return
        self.deferred_since = None
        cutoff = datetime.fromtimestamp(asked_at, UTC) - timedelta(seconds=wait)
        rows = await socket_reads.ids_after(
            recipient=self.principal.recipient, tenant=self.principal.tenant,
            after=self.synced_up_to, limit=RECONCILE_BATCH)
        settled = []  # the ids, oldest first, up to the first item younger than the cutoff
        for item_id, created_at in rows:
            if created_at > cutoff:
                break
            settled.append(item_id)
        missed = [item_id for item_id in settled if item_id not in self.pushed]
        if missed:
            INBOX_PUSHES_DROPPED.inc(len(missed))
            logger.warning("inbox: %d item push(es) to recipient %s never reached socket %s "
                           "(ids %d..%d); it re-syncs", len(missed), self.principal.recipient.pk,
                           self.channel_name, missed[0], missed[-1])
            await self.send_json(Resync(before=self.synced_up_to).frame())
        if settled:
            self.synced_up_to = settled[-1]
            self.pushed = {item_id for item_id in self.pushed if item_id > self.synced_up_to}
        if missed:
            await self._send_counts()
        if len(settled) < len(rows) or len(rows) == RECONCILE_BATCH:
            self._plan_reconcile(0 if len(rows) == RECONCILE_BATCH
                                 else settings.INBOX_RESYNC_CHECK_SECONDS)

    async def inbox_secrets_changed(self, message):
        """The tenant's inbox secret was rotated (inbox.realtime): close now if the secret this
        socket's HMAC was made with is no longer accepted, else when it stops being."""
        if self.principal is None or self.principal.secret_fingerprint is None:
            return
        accepted = message["accepted"]
        if self.principal.secret_fingerprint not in accepted:
            self.principal = None
            await self.close(code=UNAUTHORIZED)
            return
        until = accepted[self.principal.secret_fingerprint]
        self._expire_at(datetime.fromisoformat(until) if until else None)
