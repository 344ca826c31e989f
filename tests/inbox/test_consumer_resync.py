"""A socket reconciles its pushes with the database: an item whose push never reached it gets
the client a `resync` frame, and is counted on /metrics; pushed items never do.

(The burst past channels-redis's capacity, with a real daphne and Redis, is
tests/chaos/test_inbox_burst.py.)
"""

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from inbox import socket_reads
from inbox.models import InboxItem
from tests.chaos.support import metric_value

from ..conftest import in_app_step
from .test_consumer import (  # noqa: F401  (close_thread_connections: an autouse fixture)
    close_thread_connections,
    connect,
    frames_until,
    token_for,
    trigger_in_app,
)

pytestmark = pytest.mark.django_db(transaction=True)

DROPPED = "clarion_inbox_pushes_dropped_total"


@pytest.fixture
def layer_mode(settings):
    settings.INBOX_REALTIME = "layer"


@pytest.fixture
def ping(make_workflow):
    return make_workflow("ping", steps=[in_app_step(body="Ping for {{ recipient.name }}")])


@pytest.fixture
def quick_checks(settings):
    """Heartbeats (each asks for a check) every 0.2 s; an item not pushed 0.5 s after it was
    written counts as lost (more than a push takes from commit to socket here)."""
    settings.INBOX_HEARTBEAT_SECONDS = 0.2
    settings.INBOX_RESYNC_CHECK_SECONDS = 0.5


@database_sync_to_async
def dropped_total() -> float:
    return metric_value(Client().get("/metrics").content.decode(), DROPPED)


async def frames_for_heartbeats(communicator, beats: int) -> list[dict]:
    """Every frame received until `beats` heartbeats (each of which asked for a check)."""
    frames = []
    while sum(frame["type"] == "heartbeat" for frame in frames) < beats:
        frames.append(await communicator.receive_json_from(timeout=5))
    return frames


def kinds(frames: list[dict]) -> list[str]:
    return [frame["type"] for frame in frames if frame["type"] != "heartbeat"]


async def test_an_item_whose_push_was_lost_gets_a_resync_frame_and_is_counted(
        layer_mode, quick_checks, ada, make_items):
    before = await dropped_total()
    (old,) = await database_sync_to_async(make_items)(ada, 1)
    communicator, first = await connect(f"/ws/inbox/?token={token_for(ada)}")
    assert first["meta"]["total_count"] == 1
    # Written without a publish: to the socket, a push the layer lost.
    (lost,) = await database_sync_to_async(make_items)(ada, 1)

    resync, counts = (await frames_until(communicator, "counts.changed", timeout=5))[-2:]
    assert resync == {"type": "resync", "before": old.pk}  # the feed after the last it had
    assert counts["meta"]["total_count"] == 2
    assert await dropped_total() == before + 1
    # Counted once: the next checks start above it.
    frames = await frames_for_heartbeats(communicator, 4)
    assert "resync" not in kinds(frames)
    assert lost.pk > old.pk
    await communicator.disconnect()


async def test_pushed_items_never_cause_a_resync(layer_mode, quick_checks, ada, ping,
                                                 run_tasks, api):
    before = await dropped_total()
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    items = [await trigger_in_app(run_tasks, api) for _ in range(3)]
    frames = []
    while sum(frame["type"] == "item.created" for frame in frames) < len(items):
        frames.append(await communicator.receive_json_from(timeout=5))
    assert [f["item"]["id"] for f in frames if f["type"] == "item.created"] == [
        item.pk for item in items]
    frames += await frames_for_heartbeats(communicator, 4)  # checks after the pushes
    assert "resync" not in kinds(frames)
    assert await dropped_total() == before
    assert await database_sync_to_async(InboxItem.objects.count)() == 3
    await communicator.disconnect()


@pytest.fixture
def push_checks(monkeypatch):
    """Every push check's read (socket_reads.ids_after), recorded: (recipient pk, watermark)."""
    checks = []
    ids_after = socket_reads.ids_after

    async def recorded(*, recipient, tenant, after, limit):
        checks.append((recipient.pk, after))
        return await ids_after(recipient=recipient, tenant=tenant, after=after, limit=limit)

    monkeypatch.setattr(socket_reads, "ids_after", recorded)
    return checks


async def test_an_idle_socket_with_nothing_missing_makes_no_push_check_on_heartbeats(
        layer_mode, quick_checks, ada, make_items, push_checks):
    await database_sync_to_async(make_items)(ada, 2)
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")

    frames = await frames_for_heartbeats(communicator, 6)  # about six probes of the process

    assert kinds(frames) == []
    assert push_checks == []
    await communicator.disconnect()


async def test_a_socket_whose_push_was_lost_checks_and_resyncs_beside_an_idle_one(
        layer_mode, quick_checks, ada, bob, make_items, push_checks):
    before = await dropped_total()
    (old,) = await database_sync_to_async(make_items)(ada, 1)
    lossy, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    idle, _ = await connect(f"/ws/inbox/?token={token_for(bob)}")
    (lost,) = await database_sync_to_async(make_items)(ada, 1)  # never published

    resync, counts = (await frames_until(lossy, "counts.changed", timeout=5))[-2:]
    frames = await frames_for_heartbeats(idle, 3)

    assert resync == {"type": "resync", "before": old.pk}
    assert counts["meta"]["total_count"] == 2
    assert kinds(frames) == []
    assert await dropped_total() == before + 1
    assert {recipient for recipient, _ in push_checks} == {ada.pk}  # bob's socket read nothing
    assert lost.pk > old.pk
    await lossy.disconnect()
    await idle.disconnect()
