"""The widget's preferences panel in Debian's chromium (Playwright), on the demo page of the live
test server: opened with the keyboard, a switch persists through the recipient API."""

import time

import pytest
from playwright.sync_api import expect

from preferences.models import PreferenceSet

from .conftest import recipient_client
from .test_widget_browser import add_items, demo  # noqa: F401 - the fixture

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FOCUSED = "document.querySelector('clarion-inbox').shadowRoot.activeElement"


def focused_label(page) -> str:
    return page.evaluate(f"({FOCUSED} || {{}}).getAttribute?.('aria-label') || ''")


def wait_for_set(recipient, expected: dict, timeout: float = 10) -> PreferenceSet:
    """The recipient's own PreferenceSet once its categories are `expected`."""
    deadline = time.monotonic() + timeout
    while True:
        row = PreferenceSet.objects.filter(recipient=recipient, tenant=None).first()
        if row is not None and row.categories == expected:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"categories never became {expected}: "
                                 f"{row.categories if row else None}")
        time.sleep(0.05)


def open_preferences_with_the_keyboard(page):
    # The feed first: opened before its items load, the panel takes the focus, not an item,
    # and Shift+Tab leaves the widget instead of reaching the gear.
    expect(page.locator("clarion-inbox .item").first).to_be_attached()
    bell = page.locator("clarion-inbox .bell")
    bell.focus()
    page.keyboard.press("Enter")
    expect(bell).to_have_attribute("aria-expanded", "true")
    for _ in range(6):  # from the first item, Shift+Tab reaches the header's gear
        if focused_label(page) == "Preferences":
            break
        page.keyboard.press("Shift+Tab")
    assert focused_label(page) == "Preferences"
    page.keyboard.press("Enter")
    expect(page.locator("clarion-inbox .prefs")).to_be_visible()


def test_preferences_panel_switches_a_category_channel_off_and_it_persists(demo, live_server,  # noqa: F811
                                                                            page):
    add_items(demo, 1)
    page.goto(f"{live_server.url}/demo/inbox/")
    expect(page.locator("clarion-inbox .badge")).to_have_text("1")
    open_preferences_with_the_keyboard(page)

    expect(page.locator("clarion-inbox header h2")).to_have_text("Preferences")
    assert focused_label(page) == "Back to notifications"
    account_email = page.get_by_role("switch", name="Account: Email")
    welcome_email = page.get_by_role("switch", name="Welcome: Email")
    expect(account_email).to_be_checked()
    expect(welcome_email).to_be_checked()
    expect(page.get_by_role("switch", name="All notifications: In-app")).to_be_checked()
    expect(page.get_by_role("switch", name="Comment mention: In-app")).to_be_checked()

    account_email.focus()
    page.keyboard.press("Space")

    expect(account_email).not_to_be_checked()
    wait_for_set(demo, {"account": {"channel_types": {"email": False}}})
    assert recipient_client(demo).get("/api/v1/inbox/preferences").json() == {
        "tenant": None, "channel_types": {}, "workflows": {}, "quiet_hours": None,
        "categories": {"account": {"channel_types": {"email": False}}}}  # one minimal PATCH
    # The center was read again: the category's workflow is now off on email too.
    expect(welcome_email).not_to_be_checked()
    expect(page.get_by_role("switch", name="Welcome: In-app")).to_be_checked()
    assert page.evaluate(f"{FOCUSED}.dataset.id") == "category|account|email"  # focus kept

    page.keyboard.press("Shift+Tab")  # back through the switches to the back button
    for _ in range(10):
        if focused_label(page) == "Back to notifications":
            break
        page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("clarion-inbox .feed-view")).to_be_visible()
    expect(page.locator("clarion-inbox .prefs")).to_be_hidden()
    assert focused_label(page) == "Preferences"

    page.reload()
    open_preferences_with_the_keyboard(page)
    expect(page.get_by_role("switch", name="Account: Email")).not_to_be_checked()
    expect(page.get_by_role("switch", name="Account: In-app")).to_be_checked()
    expect(page.get_by_role("switch", name="Welcome: Email")).not_to_be_checked()


def test_a_failed_save_reverts_the_switch_and_says_so(demo, live_server, page):  # noqa: F811
    """The server's failure is simulated at the network (Playwright's route): nothing else can
    make a valid one-switch PATCH fail."""
    page.route("**/api/v1/inbox/preferences*", lambda route: (
        route.fulfill(status=503, content_type="application/json",
                      body='{"error": "unavailable", "detail": "Try later."}')
        if route.request.method == "PATCH" else route.continue_()))
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    page.get_by_role("button", name="Preferences").click()
    in_app = page.get_by_role("switch", name="All notifications: In-app")
    expect(in_app).to_be_checked()

    in_app.click()

    alert = page.locator("clarion-inbox .prefs [role=alert]")
    expect(alert).to_have_text("Your change could not be saved. Please try again.")
    expect(in_app).to_be_checked()
    assert not PreferenceSet.objects.exists()


def test_preferences_off_hides_the_gear(demo, live_server, page):  # noqa: F811
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    expect(page.get_by_role("button", name="Preferences")).to_be_visible()
    page.evaluate("document.querySelector('clarion-inbox').setAttribute('preferences', 'off')")
    expect(page.get_by_role("button", name="Preferences")).to_have_count(0)


def test_the_panel_is_themed_with_the_components_properties(demo, live_server, page):  # noqa: F811
    page.goto(f"{live_server.url}/demo/inbox/")
    # The demo page's CSP refuses inline style: set the theme as an embedding page's script would.
    page.locator("clarion-inbox").evaluate(
        "e => e.style.setProperty('--clarion-accent', 'rgb(1, 2, 3)')")
    page.locator("clarion-inbox .bell").click()
    page.get_by_role("button", name="Preferences").click()
    expect(page.get_by_role("switch", name="All notifications: In-app")).to_have_css(
        "background-color", "rgb(1, 2, 3)")
