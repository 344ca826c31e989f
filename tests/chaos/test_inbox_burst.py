"""A burst of in-app items to one connected recipient, past the channel layer's per-channel
capacity (channels-redis drops what a channel cannot hold without a word). Production holds
10,000 per channel (clarion/settings.py); this test sets channels-redis's default, 100, so that a
burst of a few hundred items exceeds it.

The items are written by the engine's real in-app step, all in one transaction, so their pushes
leave in one burst when it commits, through a private Redis, to a socket held by a daphne web
process. The pushes beyond the capacity are lost; the socket finds them missing when it
reconciles with the database, counts them (`clarion_inbox_pushes_dropped_total` on /metrics) and
sends a `resync` frame, after which the client, as the widget does, fetches them from the feed.
The client ends with every item and the database's unread count.
"""

import contextlib
import time

import pytest
from django.db import connection, transaction  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone

from inbox.auth import inbox_hmac
from inbox.models import InboxItem
from inbox.selectors import inbox_counts
from notifications.engine import advance_batch
from notifications.models import Recipient, Run
from notifications.services import TriggerRequest, trigger_workflow
from tests.conftest import in_app_step

from .support import (
    ClientFleet,
    InboxClient,
    RedisServer,
    WebProcess,
    metric_value,
    process_env,
    wait,
)

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="a web process against PostgreSQL")]

CAPACITY = 100  # channels-redis's default per-channel capacity, set below the product's


def burst(tmp_path, settings, make_workflow, *, items: int) -> None:
    stack = contextlib.ExitStack()  # stops whatever started, in reverse, even on errors
    redis = RedisServer(tmp_path / "redis.log")
    stack.callback(redis.stop)
    # The product's layer: a batch's pushes leave in one script call per 500 (group_send_many),
    # so the web process cannot drain the socket's key between them and the burst is sure to
    # pass CAPACITY (pushed one by one, a quick receiver could keep up and nothing be tested).
    settings.CHANNEL_LAYERS = {"default": {
        "BACKEND": "clarion.channel_layer.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": redis.url, "socket_timeout": None}],
                   "capacity": CAPACITY}}}
    settings.INBOX_REALTIME = "layer"  # this process is the worker: it publishes
    workflow = make_workflow("ping", steps=[in_app_step(body="Ping {{ data.n }}")])
    ada = Recipient.objects.create(external_id="ada", name="Ada")
    runs = [trigger_workflow(TriggerRequest(workflow=workflow, recipients=["ada"],
                                            data={"n": n}))[1][0].pk for n in range(items)]
    runs = [str(pk) for pk in runs]
    with stack:
        web = WebProcess(process_env(REDIS_URL=redis.url), tmp_path / "daphne.log")
        stack.callback(web.stop)
        fleet = ClientFleet([InboxClient(web.base_url, "ada", inbox_hmac("ada"))])
        stack.callback(fleet.stop)
        client = fleet.clients[0]
        wait(lambda: fleet.connected() == 1, "the socket to connect", timeout=30)
        # The engine's batch pass (a fan-out's), all in one transaction: every push leaves
        # after its commit, in one burst.
        with transaction.atomic():
            advance_batch(runs, now=timezone.now())
            committing = time.monotonic()
        started = time.monotonic()
        assert InboxItem.objects.filter(recipient=ada).count() == items
        assert not Run.objects.exclude(status=Run.Status.COMPLETED).exists()
        expected = set(InboxItem.objects.filter(recipient=ada).values_list("id", flat=True))
        counts = inbox_counts(recipient=ada)
        wait(lambda: set(client.items) == expected and client.counts == counts,
             "the client to hold every item with the right counts", timeout=60, interval=0.2)
        elapsed = time.monotonic() - started
        dropped = metric_value(web.get_text("/metrics"), "clarion_inbox_pushes_dropped_total")

    assert fleet.failures() == []
    never_pushed = items - client.pushed
    assert client.counts["unread_count"] == items
    assert never_pushed > 0, "the burst did not exceed the layer's capacity: nothing tested"
    assert client.resync_frames >= 1
    # Every push the socket never received is counted (a push that was only late, by more than
    # INBOX_RESYNC_CHECK_SECONDS, would be counted too: never fewer than the lost ones).
    assert never_pushed <= dropped <= items
    print(f"\ninbox burst: {items} items to one socket (capacity {CAPACITY}): "
          f"{client.pushed} pushed, {never_pushed} never pushed, {dropped:.0f} counted dropped, "
          f"{client.resync_frames} resync frame(s), {client.fetched} fetched on re-sync, "
          f"unread {client.counts['unread_count']}; published in {started - committing:.1f} s, "
          f"all held {elapsed:.1f} s after")


def test_a_burst_past_the_layer_capacity_reaches_the_client_through_a_resync(
        tmp_path, settings, make_workflow):
    burst(tmp_path, settings, make_workflow, items=300)


@pytest.mark.chaos
def test_a_burst_of_a_thousand_items_reaches_the_client_through_a_resync(
        tmp_path, settings, make_workflow):
    burst(tmp_path, settings, make_workflow, items=1000)
