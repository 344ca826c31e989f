"""clarion.channel_layer against a real Redis: batched receives hand every message over once, in
order; batched group sends keep each channel's order; capacities still hold; a pool of a few
connections serves many commands at once."""

import asyncio
import uuid

import pytest
from channels.exceptions import ChannelFull
from django.conf import settings

from clarion.channel_layer import RECEIVE_BATCH_LUA, RedisChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")


@pytest.fixture
async def make_layer():
    """make_layer(**config) → a layer on REDIS_URL with a prefix of this test's own; each is
    a process of its own (its own specific channels). Flushed and closed afterwards."""
    prefix = f"test-layer-{uuid.uuid4().hex[:8]}"
    layers = []

    def make(**config):
        layer = RedisChannelLayer(hosts=[{"address": settings.REDIS_URL,
                                          "socket_timeout": None}], prefix=prefix, **config)
        layers.append(layer)
        return layer

    yield make
    for layer in layers:
        await layer.flush()
        await layer.close_pools()


async def receive_all(layer, channel: str, n: int) -> list[int]:
    return [(await asyncio.wait_for(layer.receive(channel), 10))["n"] for _ in range(n)]


async def test_a_burst_to_many_sockets_arrives_whole_and_in_order_through_batched_receives(
        make_layer):
    web, worker = make_layer(), make_layer()
    web.RECEIVE_BATCH = 7  # several batches, each spanning several channels
    channels = [await web.new_channel() for _ in range(3)]
    for i, channel in enumerate(channels):
        await web.group_add(f"inbox.{i}", channel)
    burst = [(f"inbox.{n % 3}", {"type": "inbox.event", "n": n}) for n in range(100)]

    assert await worker.group_send_many(burst) == 0
    received = await asyncio.gather(*[receive_all(web, channel, len(range(i, 100, 3)))
                                      for i, channel in enumerate(channels)])

    assert received == [list(range(i, 100, 3)) for i in range(3)]
    # Nothing is handed over twice: the next message is the next one sent.
    await worker.group_send("inbox.0", {"type": "inbox.event", "n": 100})
    assert await receive_all(web, channels[0], 1) == [100]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(web.receive(channels[1]), 0.5)


async def test_a_batch_popped_by_a_cancelled_receive_is_received_again(make_layer):
    web = make_layer()
    channel = await web.new_channel()
    for n in range(3):
        await web.send(channel, {"type": "inbox.event", "n": n})
    key = web.prefix + web.non_local_name(channel)
    # What a receive whose reply never came back (cancelled) left: the batch in the backup.
    popped = await web.connection(0).eval(RECEIVE_BATCH_LUA, 2, key,
                                          web._backup_channel_name(key), "restore", 2)
    assert len(popped) == 4  # two messages, each with its score

    assert await receive_all(web, channel, 3) == [0, 1, 2]


async def test_send_past_a_channels_capacity_raises_channel_full(make_layer):
    layer = make_layer(capacity=2)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "x"})
    await layer.send(channel, {"type": "x"})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "x"})


async def test_group_send_many_drops_and_counts_what_a_full_channel_cannot_hold(make_layer):
    web, worker = make_layer(capacity=5), make_layer(capacity=5)
    channel = await web.new_channel()
    await web.group_add("inbox.1", channel)

    dropped = await worker.group_send_many([("inbox.1", {"type": "x", "n": n})
                                            for n in range(8)])

    assert dropped == 3
    assert await receive_all(web, channel, 5) == [0, 1, 2, 3, 4]


async def test_more_commands_at_once_than_the_pool_has_connections_wait_for_one(make_layer):
    layer = make_layer()
    layer.POOL_SIZE = 2  # redis-py's plain pool would fail the third: "Too many connections"
    channels = [await layer.new_channel() for _ in range(50)]

    await asyncio.gather(*[layer.group_add(f"inbox.{i}", channel)
                           for i, channel in enumerate(channels)])
    await asyncio.gather(*[layer.send(channel, {"type": "x", "n": i})
                           for i, channel in enumerate(channels)])

    assert [await receive_all(layer, channel, 1) for channel in channels] == \
        [[i] for i in range(50)]


async def test_connections_opened_by_a_burst_read_the_redis_version_once(make_layer,
                                                                          monkeypatch):
    """redis-py 7+ reads its version from the package's metadata files for each connection it
    opens unless it is given: ~1 ms of the event loop each, up to 100 per pool in a burst."""
    redis_utils = pytest.importorskip("redis.utils")
    pytest.importorskip("redis.driver_info")
    reads = []
    version = redis_utils.get_lib_version
    monkeypatch.setattr(redis_utils, "get_lib_version", lambda: reads.append(1) or version())
    layer = make_layer()
    layer.POOL_SIZE = 10
    channels = [await layer.new_channel() for _ in range(50)]

    await asyncio.gather(*[layer.send(channel, {"type": "x", "n": i})
                           for i, channel in enumerate(channels)])

    pool = layer.connection(0).connection_pool
    opened = len(pool._available_connections) + len(pool._in_use_connections)
    assert opened > 1  # the burst opened several connections
    assert len(reads) <= 1


async def test_receives_waiting_on_many_channels_hold_no_tasks_of_their_own(make_layer):
    """channels-redis races two tasks per waiting receive (the receive lock, its buffer): at
    5,000 sockets the garbage collector walked them all on every full pass."""
    web, worker = make_layer(), make_layer()
    channels = [await web.new_channel() for _ in range(50)]
    before = len(asyncio.all_tasks())
    waiting = [asyncio.ensure_future(web.receive(channel)) for channel in channels]
    await asyncio.sleep(0.2)

    assert len(asyncio.all_tasks()) - before == 50  # the receives themselves, nothing more
    await worker.send(channels[7], {"type": "x", "n": 7})
    assert (await asyncio.wait_for(waiting[7], 5))["n"] == 7
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_when_the_receive_reading_for_all_is_cancelled_another_takes_the_lead(make_layer):
    web, worker = make_layer(), make_layer()
    first, second = await web.new_channel(), await web.new_channel()
    reading = asyncio.ensure_future(web.receive(first))
    await asyncio.sleep(0.1)  # it leads: blocked on Redis for both
    waiting = asyncio.ensure_future(web.receive(second))
    await asyncio.sleep(0.1)

    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    await worker.send(second, {"type": "x", "n": 2})

    assert (await asyncio.wait_for(waiting, 2))["n"] == 2  # not brpop_timeout (5 s) later
    await worker.send(first, {"type": "x", "n": 1})
    assert await receive_all(web, first, 1) == [1]  # nothing the cancelled read took is lost


class Listener:
    """What RedisChannelLayer.listen hands over, as it came."""

    def __init__(self):
        self.messages: list[dict] = []
        self.errors: list[BaseException] = []
        self.arrived = asyncio.Event()

    def deliver(self, message: dict) -> None:
        self.messages.append(message)
        self.arrived.set()

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)
        self.arrived.set()


async def until(condition, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_listened_channels_get_their_messages_in_order_from_one_reader_task(make_layer):
    web, worker = make_layer(), make_layer()
    web.RECEIVE_BATCH = 7
    channels = [await web.new_channel() for _ in range(3)]
    listeners = [Listener() for _ in channels]
    before = len(asyncio.all_tasks())
    for i, (channel, listener) in enumerate(zip(channels, listeners, strict=True)):
        await web.group_add(f"inbox.{i}", channel)
        web.listen(channel, listener)

    assert len(asyncio.all_tasks()) - before == 1  # one task reads for every socket
    await worker.group_send_many([(f"inbox.{n % 3}", {"type": "x", "n": n})
                                  for n in range(100)])
    await until(lambda: sum(len(listener.messages) for listener in listeners) == 100)

    assert [[m["n"] for m in listener.messages] for listener in listeners] == \
        [list(range(i, 100, 3)) for i in range(3)]
    for channel in channels:
        web.unlisten(channel)


async def test_a_receive_waiting_when_the_last_listener_goes_takes_the_lead(make_layer):
    web, worker = make_layer(), make_layer()
    web.brpop_timeout = 1  # the reader notices within a second that nobody listens any more
    listened, received = await web.new_channel(), await web.new_channel()
    web.listen(listened, Listener())
    waiting = asyncio.ensure_future(web.receive(received))
    await worker.send(received, {"type": "x", "n": 1})
    assert (await asyncio.wait_for(waiting, 5))["n"] == 1  # read for it by the reader

    waiting = asyncio.ensure_future(web.receive(received))
    web.unlisten(listened)
    await until(lambda: web._reader is None)
    await worker.send(received, {"type": "x", "n": 2})
    assert (await asyncio.wait_for(waiting, 5))["n"] == 2  # it reads for itself now


async def test_when_reading_fails_every_listener_hears_of_it(make_layer):
    web = RedisChannelLayer(hosts=[{"address": "redis://127.0.0.1:1/0"}],  # nothing listens
                            prefix="test-layer-down")
    web.POOL_TIMEOUT = 1
    listeners = [Listener() for _ in range(2)]
    for listener in listeners:
        web.listen(await web.new_channel(), listener)

    await until(lambda: all(listener.errors for listener in listeners), timeout=10)
    assert all(listener.messages == [] for listener in listeners)
    assert web._listeners == {} and web._reader is None  # no reader retrying in a loop


async def test_what_comes_for_a_channel_after_its_listener_went_is_not_kept(make_layer):
    """A socket that closed: its group's pushes already queued in Redis (sent before its
    group_discard) are read after it stopped listening. Nobody will receive them; kept in a
    buffer, each closed socket would leave one behind for the process's life."""
    web, worker = make_layer(), make_layer()
    closed, open_ = await web.new_channel(), await web.new_channel()
    still = Listener()
    web.listen(closed, Listener())
    web.listen(open_, still)
    web.unlisten(closed)
    await worker.send(closed, {"type": "x", "n": 1})
    await worker.send(open_, {"type": "x", "n": 2})  # read after the one above
    await until(lambda: still.messages)

    assert closed not in web.receive_buffer
    web.unlisten(open_)
