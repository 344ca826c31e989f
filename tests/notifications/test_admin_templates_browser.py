"""In chromium: a staff member without superuser rights edits an email template, watches the
preview change, sends a test to themself, publishes, and the workflow sends the new words; a
rollback brings the old back."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from notifications.models import Template

from ..conftest import email_step

PERMISSIONS = ["view_template", "change_template", "add_template", "view_templateversion",
               "publish_template",
               "view_workflow", "view_step"]


def trigger(api, run_tasks, recipient_id: str) -> None:
    response = api.post("/api/v1/workflows/order-shipped/trigger", {
        "recipients": [{"id": recipient_id, "name": "Ada", "email": f"{recipient_id}@example.com"}],
        "data": {"order": "A-42"},
    })
    assert response.status_code == 202, response.content
    run_tasks()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_staff_edits_previews_publishes_and_rolls_back_a_template(page, live_server, api,
                                                                   make_workflow, run_tasks,
                                                                   smtp):
    workflow = make_workflow("order-shipped", steps=[email_step(
        subject="Order {{ data.order }} shipped", html="<p>Your order is on its way.</p>")],
        sample_data={"order": "SAMPLE-1"})
    template = Template.objects.get(step__workflow=workflow)
    staff = User.objects.create_user("editor", "editor@example.com", "s3cret-pass",
                                     is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=PERMISSIONS))
    assert not staff.is_superuser

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "editor")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.goto(live_server.url + reverse("admin:notifications_template_change",
                                        args=[template.pk]))

    subject = page.locator("[data-out=subject]")
    subject.filter(has_text="Order SAMPLE-1 shipped").wait_for()
    frame = page.frame_locator("#clarion-email-frame")
    frame.get_by_text("Your order is on its way.").wait_for()

    # Edit: the preview follows as the editor types.
    page.fill("textarea[name=subject]", "Good news: {{ data.order }} is on its way")
    page.fill("textarea[name=html]", "<p>Packed with care, {{ recipient.name }}.</p>")
    subject.filter(has_text="Good news: SAMPLE-1 is on its way").wait_for()
    frame.get_by_text("Packed with care, editor.").wait_for()

    # A mistake is shown with its line before saving, and goes away when fixed.
    page.fill("textarea[name=html]", "<p>Packed</p>\n{% if %}")
    page.locator(".clarion-problem.clarion-error").filter(
        has_text="Error in html, line 2: Liquid syntax error: missing expression").wait_for()
    page.fill("textarea[name=html]", "<p>Packed with care, {{ recipient.name }}.</p>")
    page.locator(".clarion-problem").wait_for(state="detached")

    # "Send a test to me": the unsaved fields, with the sample data, to the editor's own address.
    page.click("#clarion-send-test")
    page.locator("#clarion-send-test-result").filter(
        has_text="Sent to editor@example.com through smtp.").wait_for()
    test_mail = smtp.wait_for(1)[-1]
    assert (test_mail["To"], test_mail["Subject"]) == ("editor <editor@example.com>",
                                                       "Good news: SAMPLE-1 is on its way")

    # Save as a draft (nothing changes for recipients), then publish it.
    page.click("input[name=_save_draft]")
    page.get_by_text("Saved version 2 as a draft: version 1 stays published.").wait_for()
    trigger(api, run_tasks, "before")
    assert smtp.wait_for(2)[-1]["Subject"] == "Order A-42 shipped"

    page.click("button[name=_publish_version]:has-text('Publish v2')")
    page.get_by_text("Published version 2 of").wait_for()
    trigger(api, run_tasks, "after")
    mail = smtp.wait_for(3)[-1]
    assert mail["Subject"] == "Good news: A-42 is on its way"
    assert "Packed with care, Ada." in mail.get_body(("html",)).get_content()

    # Roll back to version 1: the old words are sent again.
    page.click("button[name=_publish_version]:has-text('Publish (roll back to) v1')")
    page.get_by_text("Published version 1 of").wait_for()
    trigger(api, run_tasks, "rolled-back")
    mail = smtp.wait_for(4)[-1]
    assert mail["Subject"] == "Order A-42 shipped"
    assert "Your order is on its way." in mail.get_body(("html",)).get_content()
