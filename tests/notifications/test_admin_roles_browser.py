"""In chromium, the roles at work: an Editor drafts a template but cannot publish it; Support
searches, reads a run's timeline and the workflow, cannot edit the workflow, and resends a
failed message."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from notifications.models import Message, Template, Workflow
from notifications.roles import EDITOR, SUPPORT, roles_sync

from ..conftest import email_step


def sign_in(page, live_server, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_editor_cannot_publish_and_support_cannot_edit(request, live_server, api,
                                                          make_workflow, run_tasks, smtp):
    roles_sync()  # the migration's groups (a transactional test starts from an emptied database)
    workflow = make_workflow("order", steps=[email_step(subject="Order {{ data.id }}",
                                                        html="<p>On its way.</p>")])
    response = api.post("/api/v1/workflows/order/trigger", {
        "recipients": [{"id": "ada", "email": "ada@example.com"}], "data": {"id": "A-1"}})
    assert response.status_code == 202, response.content
    run_tasks()
    smtp.wait_for(1)
    message = Message.objects.get(recipient__external_id="ada")
    template = Template.objects.get(step__workflow=workflow)
    for name, role in (("eve", EDITOR), ("sam", SUPPORT)):
        user = User.objects.create_user(name, f"{name}@example.com", "s3cret-pass", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED,
                                                 error="421 try again later")
    page = request.getfixturevalue("page")  # after the deliveries: Playwright's loop

    # The Editor: the home page is by task; the template page saves drafts only.
    sign_in(page, live_server, "eve")
    page.get_by_role("link", name="Author").first.wait_for()
    assert page.locator("#clarion-failures").count() == 0  # activity is not theirs
    page.goto(live_server.url + reverse("admin:notifications_template_change",
                                        args=[template.pk]))
    page.fill("textarea[name=subject]", "Your order {{ data.id }} has shipped")
    assert page.locator("input[name=_save]").count() == 0
    assert page.locator("button[name=_publish_version]").count() == 0
    page.get_by_text("A Publisher reviews and publishes your draft.").wait_for()
    page.click("input[name=_save_draft]")
    page.get_by_text("Saved version 2 as a draft: version 1 stays published.").wait_for()
    assert page.locator("button[name=_publish_version]").count() == 0
    template.refresh_from_db()
    assert template.published_version.number == 1

    # Support: finds ada from the header's box, reads the run's timeline and the workflow.
    sign_in(page, live_server, "sam")
    page.get_by_role("link", name="Activity").first.wait_for()
    page.fill("#clarion-find input[name=q]", str(message.run_id))
    page.press("#clarion-find input[name=q]", "Enter")
    page.wait_for_url("**/admin/notifications/run/*/change/")
    page.locator("#clarion-timeline tr[data-kind=message]").first.wait_for()
    page.goto(live_server.url + reverse("admin:notifications_workflow_change",
                                        args=[workflow.pk]))
    name = page.locator("input[name=name]")
    name.wait_for()
    assert name.input_value() == "Order" and name.is_disabled()  # shown, not editable
    assert page.locator("input[name=_save]").count() == 0
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(live_server.url + reverse(
        "admin:notifications_workflow_change", args=[workflow.pk]),
        form={"name": "Hacked", "csrfmiddlewaretoken": csrf})
    assert response.status == 403 and "CSRF" not in response.text()
    assert Workflow.objects.get(pk=workflow.pk).name == "Order"

    # …and resends the failed message from the home page's latest failures.
    page.goto(f"{live_server.url}/admin/")
    page.locator("#clarion-failures a").first.click()
    page.click("#clarion-resend")
    page.get_by_text("Queued the message to be sent again.").wait_for()
    assert Message.objects.get(pk=message.pk).status == Message.Status.QUEUED
