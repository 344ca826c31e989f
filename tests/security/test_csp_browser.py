"""In Debian's chromium: the hosted pages (preference center, unsubscribe) and the widget's demo
page carry a strict Content-Security-Policy and still work under it, with no
`securitypolicyviolation` event and no console error; and an XSS payload in every field these
pages and the widget show (tenant branding, category and workflow names, the person's name, an
inbox item's body, title-like fields) is shown as text and never runs, without the policy having
to stop it (a violation would mean the payload reached the page as markup)."""

import pytest
from django.db import connections
from playwright.sync_api import expect

from inbox.models import InboxItem
from notifications.models import Recipient, Tenant
from notifications.services import recipient_upsert, tenant_upsert
from preferences.models import Category
from preferences.tokens import preferences_url, unsubscribe_url

from ..conftest import email_step, in_app_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS = "<img src=x onerror=window.__xss=1>"
SCRIPT_XSS = "</style><script>window.__xss=2</script>"
WATCH = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sample}`);
}, true);
"""


@pytest.fixture
def page(page):
    """The conftest page, watching CSP violations, console errors and uncaught exceptions."""
    page.add_init_script(WATCH)
    page.problems = []
    page.expected = ()  # console errors a test expects (their text's start), e.g. "WebSocket"
    page.on("console", lambda m: m.type == "error" and not m.text.startswith(page.expected)
            and page.problems.append(m.text))
    page.on("pageerror", lambda e: page.problems.append(str(e)))
    yield page
    connections.close_all()


def assert_clean(page) -> None:
    assert page.evaluate("window.__violations") == []
    assert page.problems == []
    assert page.evaluate("window.__xss") is None


def policy(response) -> dict[str, list[str]]:
    header = response.headers["content-security-policy"]
    return {part.split()[0]: part.split()[1:] for part in header.split(";") if part.strip()}


@pytest.fixture
def hostile_tenant(make_workflow, settings, live_server):
    """A tenant, its category and workflow, and a person, every shown field carrying XSS."""
    settings.PUBLIC_URL = live_server.url
    tenant, _ = tenant_upsert(key="evil", name=f"Evil {XSS}", sender_name="Evil",
                              footer=XSS, primary_color="#4f46e5")
    Category.objects.create(key="news", name=f"News {XSS}", description=f"About {SCRIPT_XSS}")
    make_workflow("digest", name=f"Digest {XSS}", category="news",
                  steps=[email_step(), in_app_step()])
    person, _ = recipient_upsert(external_id="victim", name=f"Vic {XSS}", email="v@example.com")
    return tenant, person


def test_the_preference_center_works_under_its_policy_and_shows_payloads_as_text(
        hostile_tenant, page):
    tenant, person = hostile_tenant
    response = page.goto(preferences_url(recipient_id=person.pk, tenant_id=tenant.pk))
    directives = policy(response)
    assert directives["default-src"] == ["'none'"] and directives["frame-ancestors"] == ["'none'"]
    assert "script-src" not in directives  # no script at all: default-src 'none'
    assert directives["style-src"][0].startswith("'nonce-")
    assert "'unsafe-inline'" not in response.headers["content-security-policy"]
    expect(page.get_by_text(f"News {XSS}")).to_be_visible()  # shown as text
    expect(page.locator("header strong")).to_have_text(f"Evil {XSS}")
    # The page's own style applies (the nonce works): the header has the brand colour.
    assert page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor") == \
        "rgb(79, 70, 229)"
    toggle = page.get_by_label(f"Digest {XSS}: Email")
    assert toggle.is_checked()
    toggle.uncheck()
    page.get_by_role("button", name="Save preferences").click()
    page.get_by_role("status").filter(has_text="Your preferences were saved.").wait_for()
    assert not page.get_by_label(f"Digest {XSS}: Email").is_checked()
    assert page.locator("img[src=x]").count() == 0
    assert_clean(page)


def test_the_unsubscribe_page_works_under_its_policy(hostile_tenant, page):
    tenant, person = hostile_tenant
    response = page.goto(unsubscribe_url(recipient_id=person.pk, tenant_id=tenant.pk,
                                         workflow_key="digest", category="news"))
    assert policy(response)["default-src"] == ["'none'"]
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.locator("main")).to_contain_text("unsubscribed")
    assert_clean(page)


def test_the_widget_demo_page_works_under_its_policy_and_shows_item_payloads_as_text(
        live_server, page, transactional_db):
    from notifications.demo import seed_demo

    seed_demo()
    # No websocket server under live_server (WSGI): the widget's connection attempts, and its
    # retries at any moment of the test, fail with a console error that is expected here.
    page.expected = ("WebSocket connection to",)
    demo = Recipient.objects.get(external_id="demo-user")
    InboxItem.objects.create(recipient=demo, content={
        "body": f"Hello {XSS}", "title": XSS, "avatar": "javascript:window.__xss=3",
        "action_url": "javascript:window.__xss=4"})
    response = page.goto(f"{live_server.url}/demo/inbox/")
    directives = policy(response)
    assert directives["script-src"][0] == "'self'" and directives["script-src"][1].startswith(
        "'nonce-")
    assert directives["connect-src"] == ["'self'"]
    badge = page.locator("clarion-inbox .badge")
    expect(badge).to_have_text("1")
    # The widget's constructed stylesheet applies under style-src without 'unsafe-inline'.
    assert badge.evaluate("e => getComputedStyle(e).position") == "absolute"
    page.locator("clarion-inbox .bell").click()
    item = page.locator("clarion-inbox li .item").first
    expect(item).to_contain_text(f"Hello {XSS}")
    item.click()  # a javascript: action URL is never followed
    page.wait_for_timeout(300)
    assert page.locator("clarion-inbox").evaluate(
        "e => e.shadowRoot.querySelectorAll('img[src=x]').length") == 0
    # The page's inline script (nonce) runs: the trigger button answers.
    page.get_by_role("button", name="Trigger “welcome”").click()
    expect(page.locator("#result")).to_have_text("Triggered.")
    assert_clean(page)
    assert Tenant.objects.filter(key="acme").exists()
