"""<clarion-inbox> in Debian's chromium (Playwright).

The first test runs the product as `make serve` does (daphne + qcluster) and uses the demo page:
trigger, see the badge go from n to n+1 and the item appear without a reload, click it and see the
badge drop. The resync test runs a daphne web process and a private Redis (its pushes lost and
delivered for real). The others drive the widget's REST features against the live test server.
"""

import contextlib
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from playwright.sync_api import expect

from inbox.auth import inbox_hmac
from inbox.models import InboxItem
from inbox.selectors import inbox_counts
from inbox.services import tenant_inbox_secret_rotate
from notifications.demo import seed_demo
from notifications.models import Recipient, Tenant

from ..chaos.support import RedisServer, WebProcess, process_env
from ..conftest import in_app_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(page):
    """The conftest page; afterwards, close the database connections this test opened while
    Playwright's event loop ran (asgiref keeps those apart from the ones pytest-django closes,
    and PostgreSQL could not drop the test database at the end of the session)."""
    yield page
    connections.close_all()


def badge_count(page) -> int:
    badge = page.locator("clarion-inbox .badge")
    return 0 if badge.is_hidden() else int(badge.inner_text())


def test_demo_page_badge_and_item_update_live_and_drop_on_click(serve, page):  # noqa: F811
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        page.goto(f"{server.base_url}/demo/inbox/")
        inbox = page.locator("clarion-inbox")
        expect(inbox).to_have_attribute("data-connected", "")
        before = badge_count(page)

        page.get_by_role("button", name="Trigger “welcome”").click()
        expect(page.locator("clarion-inbox .badge")).to_have_text(str(before + 1), timeout=10_000)
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

        page.locator("clarion-inbox .bell").click()
        item = page.locator("clarion-inbox li.unread .item").first
        expect(item).to_contain_text("Welcome aboard, Ada Lovelace!")
        item.click()
        if before == 0:
            expect(page.locator("clarion-inbox .badge")).to_be_hidden()
        else:
            expect(page.locator("clarion-inbox .badge")).to_have_text(str(before))
        expect(page).to_have_url(re.compile(r"#welcome-tour$"))  # the action URL, followed
        read = InboxItem.objects.get(recipient__external_id="demo-user", read_at__isnull=False)
        assert read.message.clicked_at is not None


@pytest.fixture
def demo(live_server, transactional_db):
    """The demo seeded in the test database; the page of the live server."""
    seed_demo()
    return Recipient.objects.get(external_id="demo-user")


def add_items(recipient, n, **fields):
    return InboxItem.objects.bulk_create(
        [InboxItem(recipient=recipient, content={"body": f"Note {i}"}, **fields)
         for i in range(n)])


def test_widget_scrolls_marks_archives_and_shows_the_empty_state(demo, live_server, page):
    add_items(demo, 45)
    page.goto(f"{live_server.url}/demo/inbox/")
    badge = page.locator("clarion-inbox .badge")
    expect(badge).to_have_text("45")
    page.locator("clarion-inbox .bell").click()
    items = page.locator("clarion-inbox li")
    expect(items).to_have_count(20)
    expect(items.first).to_contain_text("Note 44")
    expect(items.first.locator("time")).to_have_text(re.compile(r"now|second"))
    for expected in (40, 45):  # infinite scroll
        items.last.scroll_into_view_if_needed()
        expect(items).to_have_count(expected)
    assert InboxItem.objects.filter(recipient=demo, seen_at__isnull=True).count() == 0

    page.locator("clarion-inbox .mark-all").click()
    expect(badge).to_be_hidden()
    expect(page.locator("clarion-inbox li.unread")).to_have_count(0)
    assert InboxItem.objects.filter(recipient=demo, read_at__isnull=True).count() == 0

    first = page.locator("clarion-inbox li").first
    first.get_by_role("button", name=re.compile("^Archive")).click()
    expect(items).to_have_count(44)
    assert InboxItem.objects.filter(recipient=demo, archived_at__isnull=False).count() == 1
    InboxItem.objects.filter(recipient=demo).update(archived_at="2026-01-01T00:00:00Z")
    page.reload()
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox .empty")).to_be_visible()
    expect(page.locator("clarion-inbox .empty")).to_have_text("You're all caught up.")


def test_mark_all_read_leaves_an_item_the_widget_has_not_drawn(demo, live_server, page):
    """The live test server speaks no websocket: an item added after the feed was drawn is
    not on screen, and "Mark all read" (which sends the newest id shown) must not mark it."""
    shown = add_items(demo, 3)
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox li.unread")).to_have_count(3)
    late = add_items(demo, 1)[0]
    page.locator("clarion-inbox .mark-all").click()
    expect(page.locator("clarion-inbox .badge")).to_have_text("1")
    expect(page.locator("clarion-inbox li.unread")).to_have_count(0)
    read = InboxItem.objects.filter(recipient=demo, read_at__isnull=False)
    assert set(read.values_list("id", flat=True)) == {item.pk for item in shown}
    late.refresh_from_db()
    assert late.read_at is None and late.seen_at is None


def test_widget_with_a_tenant_hmac_shows_and_marks_only_that_tenants_items(demo, live_server,
                                                                           page):
    acme = Tenant.objects.get(key="acme")
    globex = Tenant.objects.create(key="globex", name="Globex")
    secret = tenant_inbox_secret_rotate(tenant=acme)
    theirs = add_items(demo, 2, tenant=acme)
    others = add_items(demo, 1, tenant=globex) + add_items(demo, 1)
    page.goto(f"{live_server.url}/demo/inbox/")
    # A fresh element with a tenant HMAC instead of the demo's token.
    page.evaluate("""(signature) => {
        document.querySelector("clarion-inbox").remove();
        const inbox = document.createElement("clarion-inbox");
        inbox.setAttribute("recipient-id", "demo-user");
        inbox.setAttribute("tenant", "acme");
        inbox.setAttribute("hmac", signature);
        document.querySelector(".bar").append(inbox);
    }""", inbox_hmac("demo-user", secret))
    expect(page.locator("clarion-inbox .badge")).to_have_text("2")
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox li")).to_have_count(2)
    page.locator("clarion-inbox .mark-all").click()
    expect(page.locator("clarion-inbox .badge")).to_be_hidden()
    read = InboxItem.objects.filter(recipient=demo, read_at__isnull=False)
    assert set(read.values_list("id", flat=True)) == {item.pk for item in theirs}
    assert not InboxItem.objects.filter(pk__in=[i.pk for i in others],
                                        seen_at__isnull=False).exists()


def test_widget_is_keyboard_accessible(demo, live_server, page):
    add_items(demo, 3)
    page.goto(f"{live_server.url}/demo/inbox/")
    bell = page.locator("clarion-inbox .bell")
    expect(bell).to_have_attribute("aria-label", "Notifications, 3 unread")
    bell.focus()
    page.keyboard.press("Enter")
    expect(bell).to_have_attribute("aria-expanded", "true")
    focused = "document.querySelector('clarion-inbox').shadowRoot.activeElement.textContent"
    assert "Note 2" in page.evaluate(focused)
    page.keyboard.press("ArrowDown")
    assert "Note 1" in page.evaluate(focused)
    page.keyboard.press("End")
    assert "Note 0" in page.evaluate(focused)
    page.keyboard.press("Escape")
    expect(bell).to_have_attribute("aria-expanded", "false")
    assert page.evaluate(
        "document.querySelector('clarion-inbox').shadowRoot.activeElement.className") == "bell"


def test_widget_resyncs_from_the_feed_cursor(demo, live_server, page):
    """What happened while the socket was down: new items appear, items archived elsewhere go."""
    old = add_items(demo, 3)
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox li")).to_have_count(3)
    add_items(demo, 2)
    InboxItem.objects.filter(pk=old[0].pk).update(archived_at="2026-01-01T00:00:00Z")
    page.evaluate("document.querySelector('clarion-inbox').resync()")
    expect(page.locator("clarion-inbox li")).to_have_count(4)
    expect(page.locator("clarion-inbox li").first).to_contain_text("Note 1")
    expect(page.locator("clarion-inbox .badge")).to_have_text("4")


def test_widget_themes_through_css_custom_properties(demo, live_server, page):
    add_items(demo, 1)
    page.goto(f"{live_server.url}/demo/inbox/")
    # As an embedding page's stylesheet would (the demo page's policy refuses an inline <style>
    # it did not write, so the property is set through the CSSOM).
    page.locator("clarion-inbox").evaluate(
        "e => e.style.setProperty('--clarion-badge-bg', 'rgb(1, 2, 3)')")
    badge = page.locator("clarion-inbox .badge")
    expect(badge).to_have_css("background-color", "rgb(1, 2, 3)")


def test_demo_page_is_404_without_the_seeded_demo(live_server, page, transactional_db):
    response = page.goto(f"{live_server.url}/demo/inbox/")
    assert response.status == 404


def test_widget_retries_a_failed_socket_with_growing_delays(demo, live_server, page):
    """The live test server speaks no websocket: every attempt fails, and the widget keeps
    retrying with backoff while the feed (REST) still works."""
    add_items(demo, 1)
    page.add_init_script("""
        window.__attempts = [];
        const Native = window.WebSocket;
        window.WebSocket = function (url) {
            window.__attempts.push(Date.now());
            return new Native(url);
        };
        window.WebSocket.OPEN = Native.OPEN;
    """)
    page.goto(f"{live_server.url}/demo/inbox/")
    expect(page.locator("clarion-inbox .badge")).to_have_text("1")
    page.wait_for_function("() => window.__attempts.length >= 3", timeout=15_000)
    attempts = page.evaluate("window.__attempts")
    gaps = [b - a for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[1] > 900  # the second wait is 1-2 s (2 s with jitter), never a tight loop
    expect(page.locator("clarion-inbox .status")).to_have_text("Reconnecting…")
    assert page.evaluate("document.querySelector('clarion-inbox').retries") >= 2


# Every frame the widget's socket receives, in window.__frames (set before the page's scripts).
RECORD_FRAMES = """
    window.__frames = [];
    const Native = window.WebSocket;
    window.WebSocket = function (url, protocols) {
        const socket = new Native(url, protocols);
        socket.addEventListener("message", (event) => window.__frames.push(JSON.parse(event.data)));
        return socket;
    };
    Object.assign(window.WebSocket, { OPEN: Native.OPEN, CLOSED: Native.CLOSED });
"""


@pytest.fixture
def pushing_web(transactional_db, settings, tmp_path):
    """A daphne web process whose sockets hear this process's pushes through a private Redis
    (the layer mode a deployment runs), checking every 0.2 s (heartbeat) that none was lost
    (an item older than 2 s and never pushed gets its socket a `resync` frame: a push the
    loaded machine delays past that would count as lost too). Yields it; stops both after the
    test."""
    with contextlib.ExitStack() as stack:
        redis = RedisServer(tmp_path / "redis.log")
        stack.callback(redis.stop)
        settings.CHANNEL_LAYERS = {"default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis.url, "socket_timeout": None}]}}}
        settings.INBOX_REALTIME = "layer"
        web = WebProcess(process_env(REDIS_URL=redis.url, INBOX_HEARTBEAT_SECONDS="0.2",
                                     INBOX_RESYNC_CHECK_SECONDS="2"), tmp_path / "daphne.log")
        stack.callback(web.stop)
        yield web


def in_a_thread(func, *args):
    """func(*args) in a thread of its own (the engine may run an event loop, which Playwright's,
    running in this thread, would refuse); its database connections closed after."""
    def run():
        try:
            return func(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def test_widget_shows_every_item_after_a_resync_frame(pushing_web, page, api, run_tasks,
                                                     make_workflow):
    """Pushes lost between delivered ones: the socket's check finds them and sends `resync`
    {before: the newest item it knew}; the widget fetches everything newer (two pages of the
    feed, below items already pushed to it) and ends with every item, newest first, each read
    or unread as stored, and the stored unread count on its badge."""
    seed_demo()
    make_workflow("ping", steps=[in_app_step(body="Pushed for {{ recipient.name }}")])
    demo = Recipient.objects.get(external_id="demo-user")
    shown = add_items(demo, 3)
    page.add_init_script(RECORD_FRAMES)
    # The widget re-syncs once on connect (`before` the newest item it drew): items written
    # after that can only reach it by a push or a `resync` frame.
    with page.expect_response(lambda r: "/api/v1/inbox/?before=" in r.url):
        page.goto(f"{pushing_web.base_url}/demo/inbox/")
    expect(page.locator("clarion-inbox")).to_have_attribute("data-connected", "")
    page.locator("clarion-inbox .bell").click()
    items = page.locator("clarion-inbox li")
    expect(items).to_have_count(3)

    # 105 items written without a push (every fifth read): more than one page of the feed.
    lost = InboxItem.objects.bulk_create(
        [InboxItem(recipient=demo, content={"body": f"Lost {i}"},
                   read_at="2026-01-01T00:00:00Z" if i % 5 == 0 else None)
         for i in range(105)])
    for _ in range(2):  # then two the engine writes and pushes through Redis
        assert api.post("/api/v1/workflows/ping/trigger",
                        {"recipients": ["demo-user"]}).status_code == 202
        in_a_thread(run_tasks)
    pushed = list(InboxItem.objects.filter(recipient=demo, pk__gt=lost[-1].pk).order_by("id"))
    assert len(pushed) == 2

    expect(items).to_have_count(110, timeout=15_000)
    frames = page.evaluate("window.__frames")
    assert {"type": "resync", "before": shown[-1].pk} in frames
    assert [f["item"]["id"] for f in frames if f["type"] == "item.created"] == [
        item.pk for item in pushed]
    stored = list(InboxItem.objects.filter(recipient=demo).order_by("-id"))
    ids = [int(i) for i in items.evaluate_all("(rows) => rows.map((row) => row.dataset.id)")]
    assert ids == [item.pk for item in stored]  # each once, newest first
    unread = inbox_counts(recipient=demo)["unread_count"]
    assert unread == 3 + 84 + 2
    expect(page.locator("clarion-inbox li.unread")).to_have_count(unread)
    expect(page.locator("clarion-inbox .badge")).to_have_text(str(unread))
    expect(page.locator("clarion-inbox .bell")).to_have_attribute(
        "aria-label", f"Notifications, {unread} unread")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
