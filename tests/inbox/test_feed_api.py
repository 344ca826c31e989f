"""The feed API: keyset pages, filters, counts, marks, and scoping to one recipient and tenant."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inbox.models import InboxItem
from inbox.selectors import inbox_feed
from notifications.models import Message, Tenant

from ..conftest import in_app_step
from .conftest import recipient_client


def ids(response) -> list[int]:
    return [item["id"] for item in response.json()["items"]]


def test_feed_lists_newest_first_with_counts(ada_client, ada, make_items):
    items = make_items(ada, 3)
    InboxItem.objects.filter(pk=items[0].pk).update(read_at="2026-01-01T00:00:00Z",
                                                    seen_at="2026-01-01T00:00:00Z")
    body = ada_client.get("/api/v1/inbox/").json()
    assert [item["id"] for item in body["items"]] == [i.pk for i in reversed(items)]
    assert body["meta"] == {"unread_count": 2, "unseen_count": 2, "total_count": 3}
    first = body["items"][0]
    assert first["body"] == "item 2"
    assert first["workflow"] == "welcome"
    assert first["read_at"] is None and first["tenant"] is None
    assert first["created_at"].endswith("Z")
    assert body["page_info"] == {"after": None, "before": str(items[2].pk)}


def test_pages_follow_the_after_cursor_to_the_end(ada_client, ada, make_items):
    items = make_items(ada, 7)
    newest_first = [i.pk for i in reversed(items)]
    seen, after = [], None
    while True:
        query = {"limit": 3} | ({"after": after} if after else {})
        body = ada_client.get("/api/v1/inbox/", query).json()
        seen += [item["id"] for item in body["items"]]
        after = body["page_info"]["after"]
        if after is None:
            break
    assert seen == newest_first


def test_before_returns_the_newer_items_for_a_resync(ada_client, ada, make_items):
    items = make_items(ada, 5)
    body = ada_client.get("/api/v1/inbox/", {"before": items[1].pk, "limit": 2}).json()
    assert [i["id"] for i in body["items"]] == [items[3].pk, items[2].pk]
    assert body["page_info"]["before"] == str(items[3].pk)
    rest = ada_client.get("/api/v1/inbox/", {"before": items[3].pk}).json()
    assert [i["id"] for i in rest["items"]] == [items[4].pk]
    nothing = ada_client.get("/api/v1/inbox/", {"before": items[4].pk}).json()
    assert nothing["items"] == []
    assert nothing["page_info"]["before"] == str(items[4].pk)


def test_pages_never_use_offset(ada, make_items):
    make_items(ada, 3)
    with CaptureQueriesContext(connection) as queries:
        inbox_feed(recipient=ada, after=10**9, limit=2)
    sql = queries.captured_queries[-1]["sql"].upper()
    assert "OFFSET" not in sql
    assert "I.ID < " in sql


@pytest.mark.parametrize("status,expected", [
    ("all", ["unread-unseen", "seen", "read"]), ("unread", ["unread-unseen", "seen"]),
    ("read", ["read"]), ("unseen", ["unread-unseen"]), ("seen", ["seen", "read"]),
])
def test_the_status_filter_lists_items_by_their_read_and_seen_state(
        ada_client, ada, status, expected):
    now = "2026-01-01T00:00:00Z"
    InboxItem.objects.create(recipient=ada, content={"body": "read"}, seen_at=now, read_at=now)
    InboxItem.objects.create(recipient=ada, content={"body": "seen"}, seen_at=now)
    InboxItem.objects.create(recipient=ada, content={"body": "unread-unseen"})
    body = ada_client.get("/api/v1/inbox/", {"status": status}).json()
    assert [item["body"] for item in body["items"]] == expected


@pytest.mark.parametrize("archived,expected", [
    ("exclude", ["kept"]), ("include", ["kept", "archived"]), ("only", ["archived"]),
])
def test_the_archived_filter_excludes_includes_or_only_lists_archived_items(
        ada_client, ada, archived, expected):
    InboxItem.objects.create(recipient=ada, content={"body": "archived"},
                             archived_at="2026-01-01T00:00:00Z")
    InboxItem.objects.create(recipient=ada, content={"body": "kept"})
    body = ada_client.get("/api/v1/inbox/", {"archived": archived}).json()
    assert [item["body"] for item in body["items"]] == expected
    assert body["meta"]["total_count"] == 1


def test_category_and_tags_filters_narrow_the_feed_together(ada_client, ada):
    InboxItem.objects.create(recipient=ada, category="billing", tags=["invoice", "urgent"],
                             content={"body": "a"})
    InboxItem.objects.create(recipient=ada, category="billing", tags=["invoice"],
                             content={"body": "b"})
    InboxItem.objects.create(recipient=ada, category="social", tags=["urgent"],
                             content={"body": "c"})
    def bodies(**query):
        return [i["body"] for i in ada_client.get("/api/v1/inbox/", query).json()["items"]]
    assert bodies(category="billing") == ["b", "a"]
    assert bodies(tags="urgent") == ["c", "a"]
    assert bodies(tags="invoice,urgent") == ["a"]
    assert bodies(category="social", tags="invoice") == []


@pytest.mark.parametrize("query,fields", [
    ({"limit": 101}, {"limit": ["Ensure this value is less than or equal to 100."]}),
    ({"limit": 0}, {"limit": ["Ensure this value is greater than or equal to 1."]}),
    ({"after": "x"}, {"after": ["A valid integer is required."]}),
    ({"status": "new"}, {"status": ['"new" is not a valid choice.']}),
    ({"archived": "yes"}, {"archived": ['"yes" is not a valid choice.']}),
    ({"tenant": "nope"}, {"tenant": ["Unknown tenant 'nope'."]}),
    ({"after": 5, "before": 9}, {"before": ["Use either `after` or `before`."]}),
])
def test_bad_query_parameters_are_named(ada_client, query, fields):
    response = ada_client.get("/api/v1/inbox/", query)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "detail": "The request is not valid; see `fields`.",
                               "fields": fields}


def test_a_recipient_never_sees_another_recipients_items(ada, bob, make_items):
    make_items(ada, 2)
    bobs = make_items(bob, 1)[0]
    client = recipient_client(ada)
    assert bobs.pk not in ids(client.get("/api/v1/inbox/"))
    assert client.get("/api/v1/inbox/").json()["meta"]["total_count"] == 2
    for action in ("read", "archived"):
        response = client.post(f"/api/v1/inbox/items/{bobs.pk}/{action}")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found",
                                   "detail": f"No inbox item '{bobs.pk}'."}
    client.post("/api/v1/inbox/read", {"up_to": bobs.pk})
    bobs.refresh_from_db()
    assert bobs.read_at is None


def test_a_tenant_token_sees_only_that_tenants_items(ada, acme, globex, make_items):
    make_items(ada, 2, tenant=acme)
    globex_item = make_items(ada, 1, tenant=globex)[0]
    make_items(ada, 1)  # no tenant
    client = recipient_client(ada, acme)
    body = client.get("/api/v1/inbox/").json()
    assert {item["tenant"] for item in body["items"]} == {"acme"}
    assert body["meta"]["total_count"] == 2
    refused = client.get("/api/v1/inbox/", {"tenant": "globex"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden",
                              "detail": "This inbox token is restricted to another tenant."}
    assert client.post(f"/api/v1/inbox/items/{globex_item.pk}/read").status_code == 404
    assert client.post("/api/v1/inbox/read", {"up_to": globex_item.pk}).json()["updated"] == 2
    globex_item.refresh_from_db()
    assert globex_item.read_at is None


def test_the_tenant_filter_narrows_an_unscoped_feed(ada_client, ada, acme, make_items):
    make_items(ada, 2, tenant=acme)
    make_items(ada, 1)
    body = ada_client.get("/api/v1/inbox/", {"tenant": "acme"}).json()
    assert len(body["items"]) == 2
    assert body["meta"]["total_count"] == 2
    assert ada_client.get("/api/v1/inbox/counts").json()["total_count"] == 3


def test_an_item_is_marked_seen_read_unread_archived_and_back(ada_client, ada, make_items):
    item = make_items(ada, 1)[0]
    url = f"/api/v1/inbox/items/{item.pk}"
    seen = ada_client.post(f"{url}/seen").json()
    assert seen["seen_at"] and seen["read_at"] is None
    read = ada_client.post(f"{url}/read").json()
    assert read["read_at"] and read["seen_at"] == seen["seen_at"]  # the first time is kept
    assert ada_client.post(f"{url}/read").json()["read_at"] == read["read_at"]
    assert ada_client.post(f"{url}/unread").json()["read_at"] is None
    assert ada_client.post(f"{url}/archived").json()["archived_at"]
    assert ada_client.get("/api/v1/inbox/counts").json() == {
        "unread_count": 0, "unseen_count": 0, "total_count": 0}
    assert ada_client.post(f"{url}/unarchived").json()["archived_at"] is None
    assert ada_client.get("/api/v1/inbox/counts").json()["unread_count"] == 1


def test_an_unknown_action_is_a_json_404(ada_client, ada, make_items):
    item = make_items(ada, 1)[0]
    response = ada_client.post(f"/api/v1/inbox/items/{item.pk}/starred")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_bulk_mark_all_seen_then_read_then_archive_read(ada_client, ada, make_items):
    shown = make_items(ada, 3)[-1].pk
    seen = ada_client.post("/api/v1/inbox/seen", {"up_to": shown}).json()
    assert seen == {"updated": 3, "meta": {"unread_count": 3, "unseen_count": 0,
                                           "total_count": 3}}
    read = ada_client.post("/api/v1/inbox/read", {"up_to": shown}).json()
    assert read["updated"] == 3 and read["meta"]["unread_count"] == 0
    new = make_items(ada, 1)[0]
    archived = ada_client.post("/api/v1/inbox/archive-read", {"up_to": new.pk}).json()
    assert archived == {"updated": 3, "meta": {"unread_count": 1, "unseen_count": 1,
                                               "total_count": 1}}
    assert ids(ada_client.get("/api/v1/inbox/")) == [new.pk]


@pytest.fixture
def delivered_item(make_workflow, run_tasks, api, acme):
    """An InboxItem the real engine wrote for `u1`, with its Message."""
    make_workflow("w", steps=[in_app_step(config={"tags": ["hello"]})])
    response = api.post("/api/v1/workflows/w/trigger",
                        {"recipients": [{"id": "u1", "name": "Una"}], "tenant": "acme"})
    assert response.status_code == 202
    run_tasks()
    return InboxItem.objects.select_related("message", "recipient").get()


def test_marks_set_the_messages_engagement_timestamps(delivered_item):
    item = delivered_item
    client = recipient_client(item.recipient)
    assert item.tags == ["hello"] and item.tenant.key == "acme"
    client.post(f"/api/v1/inbox/items/{item.pk}/seen")
    message = Message.objects.get(pk=item.message_id)
    assert message.seen_at is not None and message.read_at is None
    client.post(f"/api/v1/inbox/items/{item.pk}/read")
    message.refresh_from_db()
    assert message.read_at is not None
    client.post(f"/api/v1/inbox/items/{item.pk}/unread")
    message.refresh_from_db()
    assert message.read_at is None
    client.post(f"/api/v1/inbox/items/{item.pk}/clicked")
    message.refresh_from_db()
    assert message.read_at is not None and message.clicked_at is not None


def test_mark_all_read_sets_the_messages_read_at(delivered_item):
    client = recipient_client(delivered_item.recipient)
    response = client.post("/api/v1/inbox/read", {"up_to": delivered_item.pk})
    assert response.json()["updated"] == 1
    message = Message.objects.get(pk=delivered_item.message_id)
    assert message.read_at is not None and message.seen_at is not None


def test_a_feed_page_with_its_counts_takes_three_queries_whatever_the_page_size(
        ada, make_items, django_assert_num_queries):
    make_items(ada, 30, tenant=Tenant.objects.create(key="t1", name="T1"))
    client = recipient_client(ada)
    # The recipient (authentication), the page of items with their tenants, the counts.
    with django_assert_num_queries(3):
        assert len(client.get("/api/v1/inbox/").json()["items"]) == 20
