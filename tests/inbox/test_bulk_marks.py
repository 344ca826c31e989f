"""Mark all seen / read and archive read: bounded by the newest item the client has shown
(`up_to`), the same rows in InboxItem and Message, and the race with an item that arrives
between the feed read and the bulk call (on PostgreSQL with real concurrent transactions)."""

import threading
import time

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connection, connections, transaction

from clarion.asgi import application
from inbox import services
from inbox.auth import inbox_token_create
from inbox.models import InboxItem
from inbox.selectors import inbox_counts
from notifications.models import Message

from ..conftest import in_app_step, invalid
from .conftest import recipient_client

BULK_URLS = ["/api/v1/inbox/seen", "/api/v1/inbox/read", "/api/v1/inbox/archive-read"]


@pytest.mark.parametrize("action,column", [("seen", "seen_at"), ("read", "read_at"),
                                           ("archive-read", "archived_at")])
def test_bulk_marks_leave_items_newer_than_up_to_as_they_are(ada_client, ada, make_items,
                                                             action, column):
    read = "2026-01-01T00:00:00Z"
    already = {"seen_at": read, "read_at": read} if action == "archive-read" else {}
    shown = make_items(ada, 3, **already)
    make_items(ada, 2, **already)  # arrived after the client drew its feed
    response = ada_client.post(f"/api/v1/inbox/{action}", {"up_to": shown[-1].pk})
    assert response.status_code == 200, response.json()
    assert response.json()["updated"] == 3
    marked = InboxItem.objects.filter(**{f"{column}__isnull": False})
    assert set(marked.values_list("id", flat=True)) == {item.pk for item in shown}


@pytest.mark.parametrize("url", BULK_URLS)
@pytest.mark.parametrize("body,fields", [
    ({}, {"up_to": ["This field is required."]}),
    ({"tenant": None}, {"up_to": ["This field is required."]}),
    ({"up_to": None}, {"up_to": ["This field may not be null."]}),
    ({"up_to": "newest"}, {"up_to": ["A valid integer is required."]}),
    ({"up_to": -1}, {"up_to": ["Ensure this value is greater than or equal to 0."]}),
])
def test_a_bulk_mark_without_a_valid_up_to_is_a_400_naming_it(ada_client, ada, make_items, url,
                                                               body, fields):
    make_items(ada, 2)
    response = ada_client.post(url, body)
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert InboxItem.objects.filter(seen_at__isnull=False).count() == 0


def test_up_to_zero_marks_nothing(ada_client, ada, make_items):
    make_items(ada, 2)
    assert ada_client.post("/api/v1/inbox/read", {"up_to": 0}).json()["updated"] == 0
    assert InboxItem.objects.filter(read_at__isnull=False).count() == 0


@pytest.fixture
def ping(make_workflow):
    return make_workflow("ping", steps=[in_app_step(body="Ping for {{ recipient.name }}")])


def deliver(api, run_tasks, recipient_id="ada") -> InboxItem:
    """One in_app item written by the real engine (with its Message)."""
    assert api.post("/api/v1/workflows/ping/trigger",
                    {"recipients": [recipient_id]}).status_code == 202
    run_tasks()
    return InboxItem.objects.order_by("-id").first()


def read_state(item_ids) -> list[tuple[bool, bool]]:
    """(item read, its message read) for each item."""
    items = InboxItem.objects.filter(pk__in=item_ids).select_related("message").order_by("id")
    return [(item.read_at is not None, item.message.read_at is not None) for item in items]


@pytest.mark.parametrize("batch", [500, 2])
def test_a_bulk_mark_changes_the_same_items_and_messages(ping, api, run_tasks, monkeypatch,
                                                         batch):
    """Both tables are updated by one list of ids (in batches of BULK_BATCH)."""
    monkeypatch.setattr(services, "BULK_BATCH", batch)
    items = [deliver(api, run_tasks) for _ in range(5)]
    client = recipient_client(items[0].recipient)
    client.post(f"/api/v1/inbox/items/{items[1].pk}/read")
    newer = deliver(api, run_tasks)
    response = client.post("/api/v1/inbox/read", {"up_to": items[-1].pk})
    assert response.json()["updated"] == 4
    assert read_state([item.pk for item in items]) == [(True, True)] * 5
    assert read_state([newer.pk]) == [(False, False)]
    seen = Message.objects.filter(pk__in=[i.message_id for i in items], seen_at__isnull=False)
    assert seen.count() == 5


async def counts_frames(communicator) -> list[dict]:
    """The frames until the first `counts.changed` after a bulk `items.updated`."""
    frames = []
    while not (frames and frames[-1]["type"] == "counts.changed"
               and any(f["type"] == "items.updated" for f in frames)):
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] != "heartbeat":
            frames.append(frame)
    return frames


@pytest.mark.django_db(transaction=True)
async def test_an_item_committed_between_the_feed_read_and_mark_all_read_stays_unread(
        settings, ping, api, run_tasks):
    """The widget's sequence: feed read, an item arrives, "Mark all read" with the newest item
    it drew. The new item and its Message stay unread, and the counts the socket hears are the
    database's."""
    settings.INBOX_REALTIME = "layer"
    shown = [await database_sync_to_async(deliver)(api, run_tasks) for _ in range(2)]
    recipient = await database_sync_to_async(lambda: shown[0].recipient)()
    token, _ = await database_sync_to_async(inbox_token_create)(recipient=recipient)
    communicator = WebsocketCommunicator(application, f"/ws/inbox/?token={token}")
    assert (await communicator.connect(timeout=5))[0]
    assert (await communicator.receive_json_from(timeout=5))["meta"]["unread_count"] == 2
    client = await database_sync_to_async(recipient_client)(recipient)

    feed = (await database_sync_to_async(client.get)("/api/v1/inbox/")).json()
    up_to = max(item["id"] for item in feed["items"])
    arrived = await database_sync_to_async(deliver)(api, run_tasks)  # committed now
    response = await database_sync_to_async(client.post)("/api/v1/inbox/read",
                                                         {"up_to": up_to})

    assert response.json()["updated"] == 2
    assert await database_sync_to_async(read_state)([i.pk for i in shown]) == [(True, True)] * 2
    assert await database_sync_to_async(read_state)([arrived.pk]) == [(False, False)]
    frames = await counts_frames(communicator)
    bulk = next(f for f in frames if f["type"] == "items.updated")
    assert bulk["up_to"] == up_to and bulk["action"] == "read"
    database = await database_sync_to_async(inbox_counts)(recipient=recipient)
    assert frames[-1]["meta"] == database == {"unread_count": 1, "unseen_count": 1,
                                              "total_count": 3}
    assert response.json()["meta"] == database
    await communicator.disconnect()
    await database_sync_to_async(connections.close_all)()


def extra_message(template: Message, ref: str) -> Message:
    """Another in_app Message of the same run (a step ref of its own)."""
    return Message.objects.create(run=template.run, step_ref=ref, recipient=template.recipient,
                                  workflow=template.workflow, channel="in_app",
                                  status=Message.Status.SENT)


def wait_for(condition, what: str, timeout: float = 20) -> None:
    """Poll until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def advisory_waiters() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                       "AND NOT granted AND classid = %s", [services.ITEM_ORDER_LOCK])
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_one_recipients_items_commit_in_id_order_on_postgresql(ping, api, run_tasks):
    """Without the order lock, a worker that took a lower id could commit after a higher id was
    shown, and that item would fall under the client's `up_to`. With it, the second writer waits
    for the first to commit and then takes the higher id."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; set DATABASE_URL to a PostgreSQL database")
    template = deliver(api, run_tasks).message
    first_inserted, release_first, results = threading.Event(), threading.Event(), {}

    def first_writer():
        try:
            with transaction.atomic():
                results["first"] = services.inbox_item_create(
                    message=extra_message(template, "first"), content={"body": "first"}).pk
                first_inserted.set()
                release_first.wait(30)
        finally:
            connections.close_all()

    def second_writer():
        try:
            with transaction.atomic():
                results["second"] = services.inbox_item_create(
                    message=extra_message(template, "second"), content={"body": "second"}).pk
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first_writer), threading.Thread(target=second_writer)]
    threads[0].start()
    assert first_inserted.wait(20)
    threads[1].start()
    try:
        wait_for(lambda: advisory_waiters() == 1 or "second" in results,
                 "the second writer to wait or finish")
        assert "second" not in results  # it waits for the first transaction's commit
        feed = recipient_client(template.recipient).get("/api/v1/inbox/").json()
        assert [item["id"] for item in feed["items"]] == [template.inbox_item.pk]
    finally:
        release_first.set()
        for thread in threads:
            thread.join(30)
    assert results["second"] > results["first"]
