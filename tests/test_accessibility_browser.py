"""In chromium at 375 px wide, axe-core (run offline from axe-playwright-python's bundled script)
finds no serious or critical violation on the hosted pages (preference center, unsubscribe page,
the inbox demo with the widget opened) and on the admin's home page."""

import re

import pytest
from django.contrib.auth.models import User

from inbox.models import InboxItem
from notifications.demo import seed_demo
from notifications.models import Message, Recipient
from notifications.services import recipient_upsert
from preferences.tokens import center_token, unsubscribe_token

from .browser_support import serious_violations
from .conftest import email_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 375, "height": 740}


def fits(page) -> bool:
    """No sideways scrolling at the page's width."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_preference_center_and_unsubscribe_page(live_server, page, make_workflow):
    make_workflow("newsletter", name="Newsletter", category="marketing",
                  steps=[email_step()])
    ada, _ = recipient_upsert(external_id="ada", email="ada@example.com")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/p/{center_token(recipient_id=ada.pk, tenant_id=None)}/")
    page.get_by_label("Newsletter: Email").wait_for()
    assert serious_violations(page) == []
    assert fits(page)

    token = unsubscribe_token(recipient_id=ada.pk, tenant_id=None, workflow_key="newsletter",
                              category="marketing")
    page.goto(f"{live_server.url}/u/{token}/")
    page.get_by_role("button").first.wait_for()
    assert serious_violations(page) == []
    assert fits(page)


def test_inbox_demo_with_the_widget_open(live_server, page):
    seed_demo()
    demo = Recipient.objects.get(external_id="demo-user")
    InboxItem.objects.bulk_create([InboxItem(recipient=demo, content={"body": f"Note {i}"})
                                   for i in range(3)])
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    page.locator("clarion-inbox li").first.wait_for()
    # The items' names are what they show (WCAG 2.5.3), their times legible on the unread
    # background (4.5:1).
    found = serious_violations(page, rules=["label-content-name-mismatch"])
    assert found == [], "\n".join(found)
    first = page.locator("clarion-inbox li").first
    assert first.locator("button").first.get_attribute("aria-label") is None
    first.get_by_role("button", name=re.compile(r"^Unread: Note 2\b")).wait_for()
    assert fits(page)


def test_admin_home(live_server, page, api, make_workflow, run_tasks):
    make_workflow("order", steps=[email_step()])
    api.post("/api/v1/workflows/order/trigger", {"recipients": [{"id": "ada"}]})
    run_tasks()
    Message.objects.update(status=Message.Status.FAILED, error="550 mailbox unavailable")
    User.objects.create_superuser("root", "root@example.com", "s3cret-pass")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.locator("#clarion-failures").wait_for()
    assert serious_violations(page) == []
