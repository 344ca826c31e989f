"""Redis, the channel layer, dies and comes back (empty) while 50 inbox sockets are open.

A private `redis-server` (never the shared one), a daphne web process and a qcluster on it,
PostgreSQL as the record. Items are created before the outage, during it (the worker's pushes
fail: the item is in the database only) and after Redis is back. Each client behaves as the
widget: it re-opens a closed socket and re-syncs from the REST feed, and re-syncs on a
`resync` frame. Afterwards every client's feed holds exactly its recipient's items in the
database, with the database's unread count.
"""

import contextlib
import time

import pytest
from django.db import connection  # noqa: F401  (the skipif condition reads it)

from inbox.auth import inbox_hmac
from inbox.models import InboxItem
from inbox.selectors import inbox_counts
from notifications.models import Recipient
from notifications.services import TriggerRequest, trigger_workflow
from tests.conftest import in_app_step
from tests.processes import Cluster

from .support import ClientFleet, InboxClient, RedisServer, WebProcess, process_env, wait

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="web and worker processes against PostgreSQL")]


def items_by_recipient(recipients) -> dict[str, set[int]]:
    ids = {recipient.external_id: set() for recipient in recipients}
    for item_id, external_id in InboxItem.objects.values_list("id", "recipient__external_id"):
        ids[external_id].add(item_id)
    return ids


def outage(tmp_path, make_workflow, *, sockets: int, rounds: int, down_seconds: float):
    workflow = make_workflow("ping", steps=[in_app_step(body="Ping {{ data.n }}")])
    recipients = [Recipient.objects.create(external_id=f"r{i:02}", name=f"R{i}")
                  for i in range(sockets)]

    def trigger(n: int) -> None:
        trigger_workflow(TriggerRequest(workflow=workflow, data={"n": n}, recipients=[
            recipient.external_id for recipient in recipients]))

    def created(count: int) -> bool:
        return InboxItem.objects.count() >= count

    with contextlib.ExitStack() as stack:  # stops whatever started, even on errors
        redis = RedisServer(tmp_path / "redis.log")
        stack.callback(redis.stop)
        env = process_env(REDIS_URL=redis.url, INBOX_HEARTBEAT_SECONDS="2")
        web = WebProcess(env, tmp_path / "daphne.log")
        stack.callback(web.stop)
        cluster = Cluster(tmp_path / "qcluster.log", workers=2,
                          extra_env={"REDIS_URL": redis.url})
        stack.callback(cluster.stop)
        fleet = ClientFleet([InboxClient(web.base_url, r.external_id,
                                         inbox_hmac(r.external_id)) for r in recipients])
        stack.callback(fleet.stop)
        started = time.monotonic()
        marks = {}
        wait(lambda: fleet.connected() == sockets, "every socket to connect", timeout=60)
        n = 0
        for _ in range(rounds):  # before: pushed through Redis
            n += 1
            trigger(n)
        wait(lambda: all(len(c.items) == rounds for c in fleet.clients),
             "the pushes before the outage", timeout=60)
        pushed_before = sum(client.pushed for client in fleet.clients)
        marks["before"] = time.monotonic() - started

        redis.stop()
        for _ in range(rounds):  # during: the worker writes the items, its pushes fail
            n += 1
            trigger(n)
        wait(lambda: created(n * sockets), "the items written during the outage", timeout=90)
        marks["written during"] = time.monotonic() - started
        time.sleep(down_seconds)
        redis.start()
        for _ in range(rounds):  # after: Redis is back, empty
            n += 1
            trigger(n)
        wait(lambda: created(n * sockets), "the items written after the outage", timeout=90)

        def converged() -> bool:
            expected = items_by_recipient(recipients)
            return all(set(c.items) == expected[c.recipient_id] for c in fleet.clients)

        marks["written after"] = time.monotonic() - started
        wait(converged, "every client's feed to equal the database", timeout=90, interval=0.5)
        wait(lambda: fleet.connected() == sockets, "every socket to be open again", timeout=60)
        elapsed = time.monotonic() - started

    assert fleet.failures() == []
    expected = items_by_recipient(recipients)
    missing = sum(len(expected[c.recipient_id] - set(c.items)) for c in fleet.clients)
    extra = sum(len(set(c.items) - expected[c.recipient_id]) for c in fleet.clients)
    assert missing == extra == 0
    for client, recipient in zip(fleet.clients, recipients, strict=True):
        assert client.counts == inbox_counts(recipient=recipient), client.recipient_id
    reconnects = sum(client.connects - 1 for client in fleet.clients)
    print(f"\nredis outage: {sockets} sockets, {n * sockets} items ({rounds * sockets} during "
          f"the outage), {pushed_before} pushed before it, "
          f"{sum(c.pushed for c in fleet.clients)} pushed in all, "
          f"{sum(c.fetched for c in fleet.clients)} fetched on re-sync, {reconnects} reconnects, "
          f"{sum(c.resync_frames for c in fleet.clients)} resync frames, missing {missing}, "
          f"{elapsed:.1f} s ({', '.join(f'{k} {v:.1f} s' for k, v in marks.items())})")
    return reconnects


def test_sockets_reconnect_and_resync_after_redis_restarts(tmp_path, make_workflow):
    outage(tmp_path, make_workflow, sockets=10, rounds=1, down_seconds=1)


@pytest.mark.chaos
def test_sockets_survive_a_long_redis_outage_with_many_items(tmp_path, make_workflow):
    outage(tmp_path, make_workflow, sockets=50, rounds=5, down_seconds=10)
