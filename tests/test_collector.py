"""clarion/collector.py: the web process's collector schedule, and that freezing the sockets'
state keeps nothing of closed sockets past the next thaw (memory stays bounded over churn)."""

import asyncio
import gc
import weakref

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from clarion import collector
from clarion.asgi import application
from inbox.auth import inbox_token_create
from inbox.consumers import InboxConsumer
from notifications.models import Recipient


def run(schedule, seconds: range, young: int = 5) -> dict[int, str]:
    """The actions of `schedule` at each of `seconds`, with `young` collections in each."""
    return {second: action for second in seconds
            if (action := schedule.step(float(second), young)) is not None}


def test_the_schedule_freezes_every_freeze_seconds():
    schedule = collector.Schedule(freeze_seconds=60, thaw_seconds=0, now=0.0)

    assert run(schedule, range(1, 200)) == {60: "freeze", 120: "freeze", 180: "freeze"}


def test_a_thaw_waits_for_a_quiet_second_after_thaw_seconds():
    schedule = collector.Schedule(freeze_seconds=0, thaw_seconds=100, now=0.0)
    run(schedule, range(1, 100), young=5)  # a minute of 5 young collections a second

    busy = run(schedule, range(100, 110), young=40)  # a burst: more than the median second
    assert busy == {}
    assert run(schedule, range(110, 112), young=3) == {110: "thaw"}


def test_a_thaw_comes_at_twice_thaw_seconds_however_busy():
    schedule = collector.Schedule(freeze_seconds=0, thaw_seconds=100, now=0.0)
    run(schedule, range(1, 100), young=5)

    # Busier every second than the one before: never a quiet one.
    assert {second: action for second in range(100, 201)
            if (action := schedule.step(float(second), second)) is not None} == {200: "thaw"}


def test_a_thaw_resets_the_freeze_clock():
    schedule = collector.Schedule(freeze_seconds=60, thaw_seconds=90, now=0.0)

    assert run(schedule, range(1, 200)) == {60: "freeze", 90: "thaw", 150: "freeze",
                                           180: "thaw"}


@pytest.fixture
def consumers(monkeypatch):
    """A weak set of every InboxConsumer made from now on; the process unfrozen afterwards."""
    made = weakref.WeakSet()
    init = InboxConsumer.__init__

    def tracked(self, *args, **kwargs):
        init(self, *args, **kwargs)
        made.add(self)

    monkeypatch.setattr(InboxConsumer, "__init__", tracked)
    yield made
    gc.unfreeze()


@pytest.mark.django_db(transaction=True)
async def test_closed_sockets_frozen_with_the_process_are_given_back_by_the_thaw(
        consumers, settings):
    settings.INBOX_REALTIME = "layer"
    tokens = await database_sync_to_async(lambda: [
        inbox_token_create(recipient=Recipient.objects.create(external_id=f"p{i}", name="P"))[0]
        for i in range(20)])()

    async def churn() -> None:
        """20 sockets opened, the process frozen with them held, then all closed."""
        sockets = []
        for token in tokens:
            socket = WebsocketCommunicator(application, f"/ws/inbox/?token={token}")
            assert (await socket.connect(timeout=10))[0]
            await socket.receive_json_from(timeout=10)
            sockets.append(socket)
        collector.freeze()
        for socket in sockets:
            await socket.disconnect()
        await asyncio.sleep(0.2)

    await churn()
    collector.thaw()  # what the test process had in cycles before
    rounds = []
    for _ in range(3):
        await churn()
        rounds.append(collector.thaw())
        assert len(consumers) == 0  # every closed socket's consumer is gone
    # Each thaw found little cyclic garbage of 20 closed sockets, and what stays frozen does not
    # grow round after round with the sockets that came and went.
    assert all(report["garbage"] < 20 * 30 for report in rounds), rounds
    frozen = [report["frozen"] for report in rounds]
    assert max(frozen) - min(frozen) < 20 * 10, rounds
    await database_sync_to_async(connections.close_all)()


def test_a_qcluster_worker_freezes_what_is_loaded_as_it_starts():
    """django-q2 sends post_spawn in each worker process it starts; Clarion freezes then."""
    from django_q.signals import post_spawn

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        post_spawn.send(sender="django_q", proc_name="Process-1")
        # Django and the apps are loaded: far more than a handful of objects.
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_a_thaw_waits_while_a_burst_is_delivered_but_not_past_twice_thaw_seconds():
    schedule = collector.Schedule(freeze_seconds=0, thaw_seconds=100, now=0.0)
    run(schedule, range(1, 100), young=5)

    assert {second: action for second in range(100, 201)
            if (action := schedule.step(float(second), 0, busy=True)) is not None} == \
        {200: "thaw"}


def test_a_freeze_waits_while_a_burst_is_delivered():
    schedule = collector.Schedule(freeze_seconds=30, thaw_seconds=0, now=0.0)

    assert {second: action for second in range(1, 40)
            if (action := schedule.step(float(second), 5, busy=25 <= second < 35)) is not None} \
        == {35: "freeze"}
    assert run(schedule, range(40, 70)) == {65: "freeze"}


@pytest.fixture
def thresholds():
    saved = gc.get_threshold()
    yield saved
    gc.set_threshold(*saved)


def test_a_burst_holds_off_full_passes_until_a_grace_after_its_last_read(thresholds):
    hold = collector.FullPassHold(grace=1.0, longest=10.0)
    hold.busy(0.0)
    assert gc.get_threshold() == (*thresholds[:2], collector.HELD_THRESHOLD)
    hold.busy(0.5)  # the burst goes on

    assert hold.tick(1.2) is True  # 0.7 s after its last read
    assert hold.tick(1.6) is False
    assert gc.get_threshold() == thresholds


def test_full_passes_are_held_off_for_longest_seconds_at_most_then_let_run(thresholds):
    hold = collector.FullPassHold(grace=1.0, longest=10.0)
    for second in range(10):
        hold.busy(float(second))
        assert hold.tick(second + 0.5) is True
    hold.busy(10.0)
    assert hold.tick(10.5) is False  # ten seconds: a full pass may come now
    assert gc.get_threshold() == thresholds
    hold.busy(15.0)  # the same endless burst: not held again for as long
    assert gc.get_threshold() == thresholds
    hold.busy(21.0)
    assert gc.get_threshold()[2] == collector.HELD_THRESHOLD


def test_a_hold_whose_ticks_stopped_lets_the_full_passes_run_and_holds_them_no_more(thresholds):
    hold = collector.FullPassHold(grace=1.0, longest=10.0)
    hold.busy(0.0)
    hold.stop()  # the collector's thread ended mid-burst
    assert gc.get_threshold() == thresholds
    hold.busy(100.0)
    assert gc.get_threshold() == thresholds


def test_a_process_forked_from_one_that_installed_the_schedule_never_holds_full_passes(
        thresholds, monkeypatch):
    """A server that imports the app, then forks its workers (gunicorn --preload): the child
    has the hold but not the thread whose tick would let go, so a burst there must not hold
    the full passes (they would be held for the process's life)."""
    import os
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    monkeypatch.setattr(collector, "_hold", collector.FullPassHold(grace=1.0, longest=10.0))
    monkeypatch.setattr(collector, "_thread", thread, raising=False)
    try:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a burst, then what its third threshold is
            try:
                collector.busy()
                os.write(write, str(gc.get_threshold()[2]).encode())
            finally:
                os._exit(0)
        os.close(write)
        child_threshold = int(os.read(read, 64))
        os.waitpid(pid, 0)
        os.close(read)
        assert child_threshold == thresholds[2]
        collector.busy()  # in the process whose thread runs, a burst does hold them
        assert gc.get_threshold()[2] == collector.HELD_THRESHOLD
    finally:
        stop.set()
        thread.join()
