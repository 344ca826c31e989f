"""The Redis channel layer of the web and worker processes: channels-redis' RedisChannelLayer
with fewer round trips where a burst of inbox pushes spends its time (bench/websockets.py).

- Receive: every socket of a web process listens on one Redis key (channels-redis' process-
  specific channels), popped one message per loop of BZPOPMIN plus three more commands (restore
  the backup, back the message up, clean the backup): 1,000 items to 1,000 sockets took about
  4,000 round trips one after the other. Here one script pops up to RECEIVE_BATCH messages at
  once and hands each to its socket's buffer; BZPOPMIN is kept only to wait while the key is
  empty.
- Send (a socket asking for its own push check): one script instead of four commands.
- Group send (a worker publishing an item): the group's members are read in one round trip and
  the message queued, after the expired ones are dropped, in a second (four before).
- Many group sends (a worker publishing a batch's items, `group_send_many`): every group's
  members in one script call, every message in one more (a thousand items: two round trips, not
  two thousand, and two commands for redis-py to pack and parse, not two thousand), each
  channel's messages in the order given.
- Receivers: channels-redis has each socket waiting for a message race two tasks (the
  process's receive lock and its own buffer) under asyncio.wait: with thousands of idle sockets,
  thousands of tasks, futures and coroutines per socket that the cyclic garbage collector walks
  on every full pass (~1 s at 5,000 sockets, stopping the event loop). Here a waiting socket holds
  one future: one of the waiting receives (the leader) reads Redis for all, wakes the sockets it
  found messages for, and hands the lead to another waiting receive when it returns, is
  cancelled or fails; a socket's buffer exists only while messages wait in it.
- Listeners (`listen`): a socket's consumer can have its channel's messages handed to it as they
  are read (`dispatch_each` below), instead of calling receive() for each through a task of its
  own; while any listens, one task per process reads Redis for all (the lead, as above). What is
  read for a socket that stopped listening (closed) is dropped, not buffered for nobody. A read
  that finds a burst queued holds off the garbage collector's full passes (clarion.collector).
- Connections: redis-py 6+ caps a pool at 100 connections and fails the 101st command at once
  (`MaxConnectionsError`), which lost the push checks and group removals of a thousand sockets
  acting together; here a command waits up to POOL_TIMEOUT seconds for a free connection.

What a message may meet is unchanged: expiry, per-channel capacity (ChannelFull on send, a
logged drop on group send), at-most-once delivery.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from channels.exceptions import ChannelFull
from channels_redis import core
from redis import asyncio as aioredis

try:
    from redis.driver_info import DriverInfo
except ImportError:  # redis-py < 7 reads its version once, at import
    DriverInfo = None

from clarion import collector

logger = logging.getLogger(__name__)

# One script call: put back in front what a receive popped but never handed over (it was
# cancelled while the reply was on its way), or drop what it did hand over; then move up to
# ARGV[2] messages, oldest first, from the channel (KEYS[1]) to its backup (KEYS[2]) and return
# them as [member, score, …].
RECEIVE_BATCH_LUA = """
if ARGV[1] == 'restore' then
    local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    for i = #backed_up, 1, -2 do
        redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
    end
end
redis.call('DEL', KEYS[2])
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[2]))
for i = 1, #popped, 2 do
    redis.call('ZADD', KEYS[2], popped[i + 1], popped[i])
end
return popped
"""

# channels-redis' send in one call: drop the expired messages, refuse past the capacity (0),
# queue the message and renew the key's expiry (1). ARGV: message, now, expiry, capacity.
SEND_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, tonumber(ARGV[2]) - tonumber(ARGV[3]))
if redis.call('ZCOUNT', KEYS[1], '-inf', '+inf') >= tonumber(ARGV[4]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# channels-redis' group send script, which also drops each channel's expired messages first (it
# did that in a pipeline of its own), for one group or many: KEYS: a channel key per message
# (repeated for a channel that gets several); ARGV: the messages, their capacities, now, expiry.
# The n-th message is queued at now + n µs, so one channel's messages are received in the order
# given (members with the same score would be popped in byte order). Returns how many were over
# capacity.
GROUP_SEND_LUA = """
local over_capacity = 0
local now = tonumber(ARGV[#ARGV - 1])
local expiry = ARGV[#ARGV]
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, now - tonumber(expiry))
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], string.format('%.6f', now + i / 1000000), ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


# The members of many groups in one call (group_send_many), each group's expired memberships
# dropped first: KEYS: the groups' keys; ARGV[1]: memberships made before it have expired.
# Returns one list of channel names per group. (A pipeline of a ZREMRANGEBYSCORE and a ZRANGE
# per group packed and parsed 2,000 commands in the worker for a burst of 1,000 items.)
GROUP_MEMBERS_LUA = """
local members = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    members[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return members
"""


class Listener(Protocol):
    """Who a listened channel's messages are handed to (RedisChannelLayer.listen)."""

    def deliver(self, message: dict) -> None:
        """The channel's next message (called on the event loop, in order)."""

    def fail(self, error: BaseException) -> None:
        """Reading Redis failed: no more messages come (the listener is forgotten)."""


class RedisChannelLayer(core.RedisChannelLayer):
    """channels-redis' layer with batched receives of process-specific channels, one-round-trip
    sends and group sends, and connection pools that wait instead of failing (see above)."""

    RECEIVE_BATCH = 500  # messages one receive round trip takes at most
    BURST = 16  # messages one receive round trip found queued: a burst (clarion.collector.busy)
    POOL_SIZE = 100  # connections per Redis host and event loop (redis-py's default cap)
    SEND_MANY_CHUNK = 500  # messages per script call of group_send_many
    POOL_TIMEOUT = 10.0  # seconds a command waits for a free connection, then fails

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The process-specific keys whose backup holds only messages already handed over.
        self._handed_over: set[str] = set()
        # Receives of process-specific channels: the one reading Redis for all (its channel),
        # and the others' futures by channel, woken when a message or the lead is theirs.
        self._leader: str | None = None
        self._waiting: dict[str, list[asyncio.Future]] = {}
        # Process-specific channels whose messages go to a listener, and the task reading
        # Redis for all while any listens (it holds the lead: `_leader` is READER).
        self._listeners: dict[str, Listener] = {}
        self._reader: asyncio.Task | None = None
        # Channels listened to no more (their sockets closed), by when: what is read for them
        # later (queued before their groups let them go) is dropped, not buffered for nobody.
        self._gone: dict[str, float] = {}

    READER = "(the listeners' reader)"

    def create_pool(self, index):
        host = dict(self.hosts[index])
        if "address" not in host:  # Sentinel: channels-redis' own pool
            return super().create_pool(index)
        address = host.pop("address")
        host.setdefault("max_connections", self.POOL_SIZE)
        host.setdefault("timeout", self.POOL_TIMEOUT)
        if DriverInfo is not None:
            # redis-py 7+ reads its own version from the installed package's metadata (a file
            # read and an email-header parse: 0.95 ms against 0.012 ms for a Connection() on
            # the development machine) for every connection it opens, unless given one: a burst
            # that grew a pool to its 100 connections paid ~0.1 s of its event loop for it.
            host.setdefault("driver_info", DriverInfo())
        return aioredis.BlockingConnectionPool.from_url(address, **host)

    async def send(self, channel, message):
        """Queue `message` on `channel`, as channels-redis does, in one round trip; ChannelFull
        when the channel holds its capacity already."""
        assert isinstance(message, dict), "message is not a dict"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        assert "__asgi_channel__" not in message
        channel_non_local_name = channel
        if "!" in channel:
            message = {**message, "__asgi_channel__": channel}
            channel_non_local_name = self.non_local_name(channel)
            index = self.consistent_hash(channel)
        else:
            index = next(self._send_index_generator)
        queued = await self.connection(index).eval(
            SEND_LUA, 1, self.prefix + channel_non_local_name, self.serialize(message),
            time.time(), int(self.expiry), self.get_capacity(channel))
        if not queued:
            raise ChannelFull()

    async def group_send(self, group, message):
        """Send `message` to every channel of `group`, as channels-redis does, in two round
        trips: the group's members, then one script that queues the message on each."""
        assert self.require_valid_group_name(group), "Group name not valid"
        key = self._group_key(group)
        connection = self.connection(self.consistent_hash(group))
        pipe = connection.pipeline(transaction=False)
        pipe.zremrangebyscore(key, min=0, max=int(time.time()) - self.group_expiry)
        pipe.zrange(key, 0, -1)
        _, members = await pipe.execute()
        channel_names = [member.decode("utf8") for member in members]
        connection_to_keys, key_to_message, key_to_capacity = \
            self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in connection_to_keys.items():
            over_capacity = await self.connection(index).eval(
                GROUP_SEND_LUA, len(keys), *keys, *[key_to_message[k] for k in keys],
                *[key_to_capacity[k] for k in keys], time.time(), int(self.expiry))
            if over_capacity > 0:
                core.logger.info("%s of %s channels over capacity in group %s",
                                 over_capacity, len(channel_names), group)

    async def group_send_many(self, messages: list[tuple[str, dict]]) -> int:
        """Send each (group, message) of `messages` to every channel of its group, in two round
        trips per Redis host (the groups' members, then the messages); a channel receives its
        messages in the order of `messages`. Returns how many deliveries were dropped because
        their channel was full (logged, as group_send does)."""
        for group, _ in messages:
            assert self.require_valid_group_name(group), "Group name not valid"
        by_host: dict[int, list[str]] = {}
        for group in dict.fromkeys(group for group, _ in messages):
            by_host.setdefault(self.consistent_hash(group), []).append(group)
        members: dict[str, list[str]] = {}
        expired = int(time.time()) - self.group_expiry
        for index, groups in by_host.items():
            for start in range(0, len(groups), self.SEND_MANY_CHUNK):
                chunk = groups[start:start + self.SEND_MANY_CHUNK]
                replies = await self.connection(index).eval(
                    GROUP_MEMBERS_LUA, len(chunk), *[self._group_key(g) for g in chunk], expired)
                for group, names in zip(chunk, replies, strict=True):
                    members[group] = [name.decode("utf8") for name in names]
        deliveries: dict[int, list[tuple[bytes, bytes, int]]] = {}  # host: (key, message, cap)
        for group, message in messages:
            hosts, key_to_message, key_to_capacity = \
                self._map_channel_keys_to_connection(members[group], message)
            for index, keys in hosts.items():
                deliveries.setdefault(index, []).extend(
                    (key, key_to_message[key], key_to_capacity[key]) for key in keys)
        dropped, now = 0, time.time()
        for index, queued in deliveries.items():
            for start in range(0, len(queued), self.SEND_MANY_CHUNK):
                chunk = queued[start:start + self.SEND_MANY_CHUNK]
                dropped += await self.connection(index).eval(
                    GROUP_SEND_LUA, len(chunk), *[key for key, _, _ in chunk],
                    *[message for _, message, _ in chunk], *[cap for _, _, cap in chunk],
                    f"{now + start / 1_000_000:.6f}", int(self.expiry))
        if dropped:
            core.logger.info("%s of %s group deliveries over capacity", dropped,
                             sum(len(queued) for queued in deliveries.values()))
        return dropped

    async def receive(self, channel):
        """The next message of `channel`. A process-specific channel (`…!…`) waits on a future
        of its own while another receive reads Redis for every channel (see above); other
        channels are channels-redis' receive."""
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        real_channel = self.non_local_name(channel)
        assert real_channel.endswith(self.client_prefix + "!"), "Wrong client prefix"
        loop = asyncio.get_running_loop()
        if self.receive_count == 0:
            self.receive_event_loop = loop
        elif self.receive_event_loop is not loop:
            raise RuntimeError(
                "Two event loops are trying to receive() on one channel layer at once!")
        self.receive_count += 1
        try:
            while (buffer := self.receive_buffer.get(channel)) is None or buffer.empty():
                if self._leader is None:
                    self._leader = channel
                    try:
                        names, message = await self.receive_single(real_channel)
                    finally:
                        self._leader = None
                    self._buffer(names, message)
                    continue
                waiter = loop.create_future()
                self._waiting.setdefault(channel, []).append(waiter)
                try:
                    await waiter
                finally:
                    self._forget_waiter(channel, waiter)
            message = buffer.get_nowait()
            if buffer.empty():
                del self.receive_buffer[channel]
            return message
        except asyncio.CancelledError:
            self.receive_buffer.pop(channel, None)  # its socket is gone (as channels-redis)
            raise
        finally:
            self.receive_count -= 1
            if self.receive_count == 0:
                self.receive_event_loop = None
            if self._leader is None:
                self._lead()  # the lead passes on

    def listen(self, channel: str, listener: Listener) -> None:
        """Hand each message of the process-specific `channel` (from new_channel) to
        `listener` as soon as it is read, until `unlisten(channel)`: no receive() waits for it.
        What was buffered for the channel before is handed over first."""
        assert "!" in channel, "only process-specific channels can be listened to"
        self._gone.pop(channel, None)
        self._listeners[channel] = listener
        buffered = self.receive_buffer.pop(channel, None)
        while buffered is not None and not buffered.empty():
            listener.deliver(buffered.get_nowait())
        self._lead()

    def unlisten(self, channel: str) -> None:
        """Stop handing `channel`'s messages to its listener; its socket is gone (a channel of
        new_channel is never used again): what is read for it later is dropped."""
        if self._listeners.pop(channel, None) is not None:
            self._forget([channel])

    # Seconds a gone channel's later messages are looked out for, in `expiry`s: a message
    # queued for it expires in Redis `expiry` seconds after the last send to the channel.
    GONE_EXPIRIES = 2

    def _forget(self, channels: list[str]) -> None:
        """`channels` are listened to no more: drop what comes for them (`_buffer`), for
        GONE_EXPIRIES × expiry seconds; then forget them, with any buffer left for them."""
        now = time.monotonic()
        for channel in channels:
            self._gone[channel] = now
        horizon = now - self.GONE_EXPIRIES * self.expiry
        while self._gone:
            channel, since = next(iter(self._gone.items()))
            if since > horizon:
                break
            del self._gone[channel]
            self.receive_buffer.pop(channel, None)

    def _lead(self) -> None:
        """Someone reads Redis for the process-specific channels if anyone waits on them: the
        longest-waiting receive, else (while any channel is listened to) the reader task."""
        if self._leader is not None:
            if self._leader != self.READER or self._reader_alive():
                return
            self._leader = None  # its event loop is gone (a test's): take the lead again
        if self._waiting:
            self._wake(next(iter(self._waiting)))
        elif self._listeners:
            self._leader = self.READER
            self._reader = asyncio.get_running_loop().create_task(self._read_for_listeners())

    def _reader_alive(self) -> bool:
        reader = self._reader
        return reader is not None and not reader.done() and not reader.get_loop().is_closed()

    async def _read_for_listeners(self) -> None:
        """The reader task: while any channel is listened to, read the process's messages for
        all (waiting receives' too). A failure is every listener's (their sockets close)."""
        real_channel = ""
        try:
            while self._listeners:
                # Every channel of new_channel() in this process: "specific.<client prefix>!".
                real_channel = self.non_local_name(next(iter(self._listeners)))
                received = await self._receive_batch(real_channel, idle_returns=True)
                if received is not None:
                    self._buffer(*received)
        except asyncio.CancelledError:  # the event loop is closing: wake a waiting receive only
            self._reader = None
            if self._leader == self.READER:
                self._leader = None
                self._wake(next(iter(self._waiting), None))
            raise
        except Exception as error:  # noqa: BLE001 - handed to the listeners, whose sockets close
            failed, self._listeners = self._listeners, {}
            self._forget(list(failed))
            listeners = list(failed.values())
            logger.warning("channel layer: reading %s failed; %d listening sockets close",
                           real_channel, len(listeners), exc_info=True)
            for listener in listeners:
                listener.fail(error)
        self._reader = None
        if self._leader == self.READER:
            self._leader = None
            self._lead()

    def _buffer(self, names: str | list[str], message: dict) -> None:
        """Hand `message` (from receive_single) to the listeners of `names`, or to their
        buffers, waking their receives."""
        for name in names if isinstance(names, list) else [names]:
            listener = self._listeners.get(name)
            if listener is not None:
                listener.deliver(message)
                continue
            if name in self._gone:
                continue  # its socket closed: nobody will receive it
            self.receive_buffer[name].put_nowait(message)
            self._wake(name)

    def _wake(self, channel: str | None) -> None:
        """Wake the longest-waiting receive of `channel` (None: none)."""
        waiters = self._waiting.get(channel)
        if waiters:
            waiter = waiters.pop(0)
            if not waiters:
                del self._waiting[channel]
            if not waiter.done():
                waiter.set_result(None)

    def _forget_waiter(self, channel: str, waiter: asyncio.Future) -> None:
        waiters = self._waiting.get(channel)
        if waiters and waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self._waiting[channel]

    async def receive_single(self, channel):
        """The next message of `channel`, as (channel name or names, message). For the
        process-specific channel (`…!`, every socket of this process) one round trip takes up
        to RECEIVE_BATCH messages: all but the last go straight to their sockets' buffers (in
        order, before the one returned, which `receive` buffers next)."""
        if "!" not in channel:
            return await super().receive_single(channel)
        return await self._receive_batch(channel, idle_returns=False)

    async def _receive_batch(self, channel: str, *, idle_returns: bool) -> tuple | None:
        """receive_single of a process-specific channel; with `idle_returns`, None after
        brpop_timeout seconds with nothing queued (the reader task then checks whether anyone
        still listens)."""
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        index = self.consistent_hash(channel)
        key = self.prefix + channel
        connection = self.connection(index)
        while True:
            mode = "drop" if key in self._handed_over else "restore"
            self._handed_over.discard(key)
            popped = await connection.eval(RECEIVE_BATCH_LUA, 2, key,
                                           self._backup_channel_name(key), mode,
                                           self.RECEIVE_BATCH)
            # No await from here to the return: the batch is handed over whole, or (cancelled
            # above) left in the backup for the next receive to put back.
            self._handed_over.add(key)
            if popped:
                if len(popped) >= 2 * self.BURST:
                    collector.busy()  # many at once: a burst, whose frames a full pass would stall
                messages = [self._unpack(member, channel) for member in popped[::2]]
                for names, message in messages[:-1]:
                    self._buffer(names, message)
                return messages[-1]
            # Nothing queued: wait for the next message (it stays in Redis until then).
            result = await connection.bzpopmin(key, timeout=self.brpop_timeout)
            if result is not None:
                return self._unpack(result[1], channel)
            if idle_returns:
                return None

    def _unpack(self, member: bytes, channel: str) -> tuple:
        message = self.deserialize(member)
        return message.pop("__asgi_channel__", channel), message


# What a socket's mailbox holds: a websocket event, a channel-layer message, or a failure.
_WEBSOCKET, _LAYER, _FAILED = range(3)


class _Mailbox:
    """What one consumer handles next, in the order it came: its websocket's events (one
    `receive()` task at a time, the next asked once the last is handled, as Channels does) and
    its channel's messages (handed over by the layer's listener API; other layers: one
    `receive()` task at a time too); its loop waits on one future."""

    __slots__ = ("loop", "receive", "layer", "channel", "capacity", "ready", "layer_ready",
                 "waiter", "websocket_task", "layer_task", "listening", "layer_tasks")

    def __init__(self, receive, layer, channel: str | None):
        self.loop = asyncio.get_running_loop()
        self.receive, self.layer, self.channel = receive, layer, channel
        self.capacity = layer.get_capacity(channel) if layer is not None else 0
        self.ready: deque = deque()  # (source, value)
        self.layer_ready = 0  # layer messages in `ready`
        self.waiter: asyncio.Future | None = None
        self.websocket_task: asyncio.Task | None = None
        self.layer_task: asyncio.Task | None = None
        self.listening = False
        self.layer_tasks = layer is not None and not hasattr(layer, "listen")

    def open(self) -> None:
        self._ask_websocket()
        if self.layer_tasks:
            self._ask_layer()
        elif self.layer is not None:
            self.layer.listen(self.channel, self)
            self.listening = True

    async def close(self) -> None:
        if self.listening:
            self.layer.unlisten(self.channel)
            self.listening = False
        for task in (self.websocket_task, self.layer_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def next(self) -> tuple[int, object]:
        """The next (source, event or message); raises what a source failed with."""
        while not self.ready:
            self.waiter = self.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        source, value = self.ready.popleft()
        if source == _LAYER:
            self.layer_ready -= 1
        elif source == _FAILED:
            raise value
        return source, value

    def handled(self, source: int) -> None:
        """The event or message from `source` was handled: ask that source for the next."""
        if source == _WEBSOCKET:
            self._ask_websocket()
        elif self.layer_tasks:
            self._ask_layer()

    def _put(self, source: int, value) -> None:
        self.ready.append((source, value))
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    # The listener API (RedisChannelLayer.listen).

    def deliver(self, message: dict) -> None:
        if self.layer_ready >= self.capacity:
            # Its consumer stopped handling messages: drop the oldest rather than grow without
            # end (channels-redis' receive buffers do the same).
            for index, (source, _) in enumerate(self.ready):
                if source == _LAYER:
                    del self.ready[index]
                    self.layer_ready -= 1
                    break
            logger.warning("channel layer: %s holds %d messages unhandled; the oldest dropped",
                           self.channel, self.capacity)
        self.layer_ready += 1
        self._put(_LAYER, message)

    def fail(self, error: BaseException) -> None:
        self.listening = False
        self._put(_FAILED, error)

    # One receive() task at a time (the websocket; a layer without the listener API).

    def _ask_websocket(self) -> None:
        self.websocket_task = self.loop.create_task(self.receive())
        self.websocket_task.add_done_callback(self._websocket_received)

    def _ask_layer(self) -> None:
        self.layer_task = self.loop.create_task(self.layer.receive(self.channel))
        self.layer_task.add_done_callback(self._layer_received)

    def _websocket_received(self, task: asyncio.Task) -> None:
        self.websocket_task = None
        self._received(_WEBSOCKET, task)

    def _layer_received(self, task: asyncio.Task) -> None:
        self.layer_task = None
        self._received(_LAYER, task)

    def _received(self, source: int, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            self._put(_FAILED, task.exception())
        else:
            if source == _LAYER:
                self.layer_ready += 1
            self._put(source, task.result())


async def dispatch_each(receive: Callable[[], Awaitable[dict]], layer, channel: str | None,
                        dispatch: Callable[[dict], Awaitable[None]]) -> None:
    """Channels' `await_many_dispatch([receive, channel_receive], dispatch)` for one socket:
    each websocket event and channel message, in the order they came, handed to `dispatch` one
    at a time, until it raises (StopConsumer ends a consumer). Channels waits on two receive
    tasks under asyncio.wait, made anew for every message; here a socket's loop waits on one
    future, its websocket's receive is one task at a time, and the layer's messages (with
    `listen`: this module's layer) are handed to it without a task (bench/websockets.py: fewer
    objects per held socket, and less work per pushed message)."""
    mailbox = _Mailbox(receive, layer, channel)
    mailbox.open()
    try:
        while True:
            source, message = await mailbox.next()
            await dispatch(message)
            mailbox.handled(source)
    finally:
        await mailbox.close()
