"""`/ws/inbox/?token=…` (or `?recipient=…&hmac=…`, with `&tenant=<key>` when the HMAC was made
with that tenant's inbox secret): one recipient's live inbox.

Frames the server sends (JSON): `counts.changed` {meta} on connect and after every change,
`item.created` {item}, `item.updated` {item}, `items.updated` {action, at, up_to[, tenant]} (a
bulk change of the items with ids up to `up_to`; `tenant` when it covered one tenant's items,
null for the items without a tenant),
`heartbeat` every INBOX_HEARTBEAT_SECONDS, `pong` after a client's `{"type": "ping"}`.
A missing, bad or expired credential closes the socket with code 4401, and so does the moment an
open socket's token expires (or the rotation window of the secret its HMAC was made with ends).
"""

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from clarion.metrics import WEBSOCKET_CONNECTIONS
from notifications.models import Tenant

from . import realtime
from .auth import InboxPrincipal, inbox_principal
from .events import CountsChanged, from_message
from .selectors import inbox_counts

UNAUTHORIZED = 4401


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


class InboxConsumer(AsyncJsonWebsocketConsumer):
    principal: InboxPrincipal | None = None
    group: str | None = None
    heartbeat: asyncio.Task | None = None
    expiry: asyncio.Task | None = None
    secrets_group: str | None = None
    bridged = False
    counted = False

    async def connect(self):
        principal = await _concurrent_read(_principal_from_query)(
            self.scope.get("query_string", b""))
        await self.accept()
        if principal is None:
            # Accept first: a close before accept cannot carry an application code.
            await self.close(code=UNAUTHORIZED)
            return
        self.principal = principal
        WEBSOCKET_CONNECTIONS.inc()
        self.counted = True
        self.group = realtime.recipient_group(principal.recipient.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        if principal.secret_fingerprint is not None:  # a tenant's HMAC: hear its rotations
            self.secrets_group = realtime.tenant_secrets_group(principal.tenant.pk)
            await self.channel_layer.group_add(self.secrets_group, self.channel_name)
        if settings.INBOX_REALTIME == "poll":
            await realtime.bridge().subscribe()
            self.bridged = True
        await self._send_counts()
        self.heartbeat = asyncio.get_running_loop().create_task(self._beat())
        self._expire_at(principal.expires_at)

    async def disconnect(self, code):
        if self.counted:  # /metrics' clarion_websocket_connections
            WEBSOCKET_CONNECTIONS.dec()
            self.counted = False
        for task in (self.heartbeat, self.expiry):
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

    async def receive_json(self, content, **kwargs):
        if not isinstance(content, dict) or self.principal is None:
            return
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def _beat(self):
        while True:
            await asyncio.sleep(settings.INBOX_HEARTBEAT_SECONDS)
            await self.send_json({"type": "heartbeat"})

    def _expire_at(self, moment: datetime | None) -> None:
        """Close the socket at `moment` (None: never), instead of any earlier plan."""
        if self.expiry is not None and self.expiry is not asyncio.current_task():
            self.expiry.cancel()
        self.expiry = (asyncio.get_running_loop().create_task(self._close_at(moment))
                       if moment is not None else None)

    async def _close_at(self, moment):
        """Close with 4401 when the credential stops working: the token expires, or the
        rotation window of the previous secret its HMAC was made with ends."""
        await asyncio.sleep(max((moment - timezone.now()).total_seconds(), 0))
        self.principal = None  # nothing more reaches this socket
        await self.close(code=UNAUTHORIZED)

    async def _send_counts(self):
        meta = await _concurrent_read(inbox_counts)(
            recipient=self.principal.recipient, tenant=self.principal.tenant)
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
        await self._send_counts()

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
