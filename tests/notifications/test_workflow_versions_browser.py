"""In chromium: an Editor changes a live workflow in the builder and submits the draft, but
cannot publish it; a Publisher reads the side-by-side diff of the whole workflow and publishes
it; a trigger then runs the new version and the run records it. An Editor adds a step to a
draft and writes its template before the step is live."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from notifications.models import Message, Run, Step, Template, WorkflowVersion
from notifications.roles import EDITOR, PUBLISHER, roles_sync

from ..conftest import email_step, in_app_step
from .test_admin_roles_browser import sign_in
from .test_workflow_builder_browser import add_step, card


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_editor_submits_a_draft_and_a_publisher_reviews_the_diff_and_publishes(
        request, live_server, api, make_workflow, clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    roles_sync()  # the migration's groups (a transactional test starts from an emptied database)
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi"),
                                               email_step(subject="Hello")])
    for name, role in (("eve", EDITOR), ("pat", PUBLISHER)):
        user = User.objects.create_user(name, f"{name}@example.com", "s3cret-pass", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    template = Template.objects.get(step__ref="mail")
    page = request.getfixturevalue("page")
    builder = live_server.url + reverse("admin:notifications_workflow_change",
                                        args=[workflow.pk])

    # The Editor: renames the workflow and rewrites the email's subject; both go to the draft.
    sign_in(page, live_server, "eve")
    page.goto(builder)
    assert page.locator("input[name=_save]").count() == 0  # no "Save and publish"
    page.fill("input[name=name]", "Welcome aboard")
    page.click("input[name=_save_draft]")
    page.get_by_text("Saved in the draft (version 2)").wait_for()
    page.get_by_text("You are editing the draft, version 2 (Draft).").wait_for()
    page.goto(live_server.url + reverse("admin:notifications_template_change",
                                        args=[template.pk]))
    page.fill("textarea[name=subject]", "Welcome, {{ recipient.name }}")
    page.click("input[name=_save_draft]")
    page.get_by_role("link", name="Review the workflow's draft").click()
    page.wait_for_url("**/versions/2/")
    assert page.locator("button[value=publish]").count() == 0  # an Editor cannot publish
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_text("Version 2 is waiting for a Publisher's review.").wait_for()
    assert page.locator("#wv-state").inner_text() == "In review"
    workflow.refresh_from_db()
    assert workflow.name == "Welcome" and workflow.published_version.number == 1  # still live

    # The Publisher: the diff shows the whole workflow side by side, then publishes.
    sign_in(page, live_server, "pat")
    page.goto(builder)
    page.get_by_role("link", name="Review and publish the draft").click()
    page.wait_for_url("**/versions/2/")
    def shown(region: str) -> str:  # the diff's text, its no-break spaces read as spaces
        return page.get_by_role("region", name=f"Side by side: {region}").inner_text().replace(
            "\xa0", " ")

    assert 'name: "Welcome"' in shown("Workflow settings")
    assert 'name: "Welcome aboard"' in shown("Workflow settings")
    assert "Hello" in shown("Template mail · en")
    assert "Welcome, {{ recipient.name }}" in shown("Template mail · en")
    page.get_by_text("3 sections unchanged").wait_for()  # data, steps, the in-app template
    page.get_by_role("button", name="Approve and publish").click()
    page.get_by_text("Published version 2: it runs from now on.").wait_for()
    assert page.locator("#wv-state").inner_text() == "Published"

    version = WorkflowVersion.objects.get(workflow=workflow, number=2)
    assert (version.state, version.approved_by.username) == ("published", "pat")
    template.refresh_from_db()
    assert template.fields["subject"] == "Welcome, {{ recipient.name }}"
    response = api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["ada"]})
    assert response.status_code == 202, response.content
    assert Run.objects.get().workflow_version == version


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_editor_adds_a_step_with_its_template_to_a_drafts_and_a_publisher_publishes_it(
        request, live_server, api, make_workflow, run_tasks, smtp, clarion_settings):
    """A step new in the draft gets its template (preview and test send on the draft's sample
    data) before any Step row exists; a trigger meanwhile runs the live steps; publishing
    makes the step and its template together."""
    clarion_settings(REQUIRE_REVIEW=True)
    roles_sync()
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi")],
                             sample_data={"plan": "Starter"})
    live = workflow.published_version
    for name, role in (("eve", EDITOR), ("pat", PUBLISHER)):
        user = User.objects.create_user(name, f"{name}@example.com", "s3cret-pass", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
    page = request.getfixturevalue("page")
    builder = live_server.url + reverse("admin:notifications_workflow_change",
                                        args=[workflow.pk])

    # The Editor adds an email step in the builder: it goes to the draft.
    sign_in(page, live_server, "eve")
    page.goto(builder)
    add_step(page, "Email", "mail")
    page.click("input[name=_save_draft]")
    page.get_by_text("Saved in the draft (version 2)").wait_for()
    mail_card = card(page, "mail")
    mail_card.get_by_text("The step is new in this draft: its templates are published with "
                          "it.").wait_for()

    # …writes its template in the draft's editor: the preview renders the draft's content.
    mail_card.get_by_role("link", name="Add a template").click()
    page.wait_for_url("**/draft/steps/mail/template/")
    assert page.locator("input[name=locale]").input_value() == "en"
    page.fill("textarea[name=subject]", "Your {{ data.plan }} plan, {{ recipient.name }}")
    page.fill("textarea[name=html]", "<p>Welcome to {{ data.plan }}.</p>")
    page.locator("[data-out=subject]").filter(has_text="Your Starter plan, eve").wait_for()
    page.frame_locator("#clarion-email-frame").get_by_text("Welcome to Starter.").wait_for()
    page.click("#clarion-send-test")
    page.locator("#clarion-send-test-result").filter(
        has_text="Sent to eve@example.com through smtp.").wait_for()
    assert smtp.wait_for(1)[-1]["Subject"] == "Your Starter plan, eve"
    page.click("input[name=_save_draft]")
    page.get_by_text("the en template of “mail” is published with the step").wait_for()
    assert not Step.objects.filter(ref="mail").exists()  # nothing live yet

    # …and submits the draft; a trigger meanwhile runs the live version: no email.
    page.get_by_role("link", name="Review the workflow's draft").first.click()
    page.wait_for_url("**/versions/2/")
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_text("Version 2 is waiting for a Publisher's review.").wait_for()
    assert trigger(api, run_tasks, "ada").workflow_version == live
    assert list(Message.objects.values_list("step_ref", flat=True).exclude(
        recipient__external_id__startswith="staff-")) == ["inbox"]

    # The Publisher reads the new step and its template in the diff, and publishes.
    sign_in(page, live_server, "pat")
    page.goto(live_server.url + reverse("admin:notifications_workflow_version",
                                        args=[workflow.pk, 2]))
    template_diff = page.get_by_role("region", name="Side by side: Template mail · en")
    assert "Your {{ data.plan }} plan" in template_diff.inner_text().replace("\xa0", " ")
    assert "2. mail (email)" in page.get_by_role(
        "region", name="Side by side: Steps").inner_text().replace("\xa0", " ")
    page.get_by_role("button", name="Approve and publish").click()
    page.get_by_text("Published version 2: it runs from now on.").wait_for()

    template = Template.objects.get(step__ref="mail", locale="en")
    assert template.fields == {"subject": "Your {{ data.plan }} plan, {{ recipient.name }}",
                               "html": "<p>Welcome to {{ data.plan }}.</p>"}
    run = trigger(api, run_tasks, "zoe")
    assert run.workflow_version.number == 2
    assert smtp.wait_for(2)[-1]["Subject"] == "Your Team plan, Zoe"


def trigger(api, run_tasks, recipient: str) -> Run:
    response = api.post("/api/v1/workflows/welcome/trigger", {
        "recipients": [{"id": recipient, "name": recipient.title(),
                        "email": f"{recipient}@example.com"}], "data": {"plan": "Team"}})
    assert response.status_code == 202, response.content
    run_tasks()
    return Run.objects.get(recipient__external_id=recipient)
