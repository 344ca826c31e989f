"""In chromium at 375 px wide, axe-core (run offline from axe-playwright-python's bundled script)
finds no serious or critical violation on the hosted pages (preference center, unsubscribe page and
the page confirming it, the page of a link that is not valid, an approval's page asking and then
answered, the inbox demo with the widget opened) and on the admin's home page."""

import re

import pytest
from django.contrib.auth.models import User

from inbox.models import InboxItem
from notifications.approval_links import approval_token
from notifications.demo import seed_demo
from notifications.models import Approval, Message, Recipient
from notifications.services import StepSpec, TriggerRequest, recipient_upsert, trigger_workflow
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

    page.get_by_role("button").first.click()  # the one-click form: the confirmation page
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert serious_violations(page) == []
    assert fits(page)


def test_the_page_of_a_link_that_is_not_valid(live_server, page):
    page.set_viewport_size(PHONE)
    response = page.goto(f"{live_server.url}/p/not-a-token/")
    assert response.status == 404
    page.get_by_role("heading", name="This link is not valid").wait_for()
    assert serious_violations(page) == []
    assert fits(page)


def test_an_approvals_page_asking_then_answered(live_server, page, make_workflow, run_tasks):
    workflow = make_workflow("spend", steps=[
        StepSpec(ref="ask", type="approval",
                 config={"question": "Spend $300 on ads for the spring campaign?",
                         "details": "Budget line 4, marketing.", "timeout": {"hours": 1},
                         "channels": ["in_app"]})])
    trigger_workflow(TriggerRequest(workflow=workflow, recipients=["ada"]))
    run_tasks()
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/approvals/{approval_token(Approval.objects.get(), 'approved')}/")
    page.get_by_role("button", name="Approve").wait_for()
    assert serious_violations(page) == []
    assert fits(page)

    page.get_by_role("button", name="Approve").click()
    page.get_by_role("status").wait_for()
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
