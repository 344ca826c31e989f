"""An approval answered from `<clarion-inbox>` in Debian's chromium: the person presses Approve in
the feed, the run goes on down the approved branch, and the email's link then says "already
answered"."""

import pytest
from django.db import connections
from django.test import Client
from playwright.sync_api import expect

from notifications.approval_links import approval_token
from notifications.demo import seed_demo
from notifications.models import Approval, Run
from notifications.services import StepSpec, TriggerRequest, trigger_workflow
from notifications.workflow_json import BranchSpec

from ..conftest import in_app_step, timeline_events

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(page):
    yield page
    connections.close_all()


def test_approve_in_the_widget_wins_and_the_email_link_is_then_answered(
        live_server, page, make_workflow, run_tasks, settings):
    settings.PUBLIC_URL = live_server.url
    seed_demo()
    workflow = make_workflow("spend", steps=[
        StepSpec(ref="ask", type="approval", config={"question": "Spend $300 on ads?",
                                                     "timeout": {"hours": 1},
                                                     "channels": ["in_app"]},
                 branches=[BranchSpec(name="approved", steps=[
                     in_app_step(ref="done", body="Approved: buying the ads.")])]),
    ])
    _, [run] = trigger_workflow(TriggerRequest(workflow=workflow, recipients=["demo-user"]))
    run_tasks()
    page.goto(f"{live_server.url}/demo/inbox/")
    page.locator("clarion-inbox .bell").click()
    item = page.locator("clarion-inbox li", has_text="Spend $300 on ads?")
    item.get_by_role("button", name="Approve").click()
    expect(item.locator(".approval-status")).to_have_text("Approved")
    expect(item.get_by_role("button", name="Reject")).to_have_count(0)
    approval = Approval.objects.get(run=run)
    assert (approval.status, approval.answered_via) == ("approved", "in_app")
    run_tasks()
    assert ("done", "sent") in timeline_events(Run.objects.get(pk=run.pk))
    late = Client().post(f"/approvals/{approval_token(approval, 'rejected')}/")
    assert late.status_code == 409 and b"Already answered: approved." in late.content
    page.reload()
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox li", has_text="Spend $300 on ads?")
           .locator(".approval-status")).to_have_text("Approved")
