"""In chromium: support answers "did ada get notified?" from the header's search box: her page
lists the run and the suppressed email with its reason, the run's timeline shows every step,
message and provider call in time order, and a provider message id lands on its message."""

import pytest
from django.contrib.auth.models import User

from notifications.models import DeliveryAttempt, Message

from ..conftest import email_step, in_app_step


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_support_finds_a_recipient_and_reads_the_run_timeline(request, live_server, api,
                                                              make_workflow, run_tasks):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    api.put("/api/v1/recipients/ada", {"email": "ada@example.com"})
    api.put("/api/v1/recipients/ada/preferences", {"channel_types": {"email": False}})
    response = api.post("/api/v1/workflows/welcome/trigger", {
        "recipients": [{"id": "ada", "email": "ada@example.com"},
                       {"id": "bob", "email": "bob@example.com"}],
        "data": {"plan": "pro"}}, HTTP_IDEMPOTENCY_KEY="signup-7")
    assert response.status_code == 202, response.content
    run_tasks()
    bob_mail = Message.objects.get(recipient__external_id="bob", step_ref="mail")
    Message.objects.filter(pk=bob_mail.pk).update(provider_message_id="pm-4711")
    User.objects.create_superuser("support", "support@example.com", "s3cret-pass")
    # The browser starts after the deliveries: Playwright's loop would stop theirs.
    page = request.getfixturevalue("page")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "support")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")

    # The header's box, from the admin's home page: a recipient id opens her page.
    page.fill("#clarion-find input[name=q]", "ada")
    page.press("#clarion-find input[name=q]", "Enter")
    page.wait_for_url("**/admin/notifications/recipient/*/change/")
    mail_row = page.locator(".field-recent_messages tr", has_text="Suppressed")
    mail_row.filter(has_text="Opted out: recipient:channel_types.email").wait_for()
    run_row = page.locator(".field-recent_runs tr", has_text="welcome")
    run_row.filter(has_text="mail: Opted out (recipient:channel_types.email)").wait_for()
    mail_row.get_by_role("link", name="timeline").click()

    # The run's timeline: the trigger with its API key and Idempotency-Key, then each step.
    page.wait_for_url("**/admin/notifications/run/*/change/")
    timeline = page.locator("#clarion-timeline tbody tr")
    timeline.first.filter(has_text="Triggered by API key tests").wait_for()
    assert "signup-7" in timeline.first.inner_text()
    kinds = [row.get_attribute("data-kind") for row in timeline.all()]
    assert kinds[0] == "trigger" and "step" in kinds and "message" in kinds
    page.locator("#clarion-timeline tr[data-kind=step]", has_text="Opted out").wait_for()

    # A provider message id lands on bob's email; its run's timeline shows the provider call
    # with its (redacted) request folded until opened.
    page.fill("#clarion-find input[name=q]", "pm-4711")
    page.press("#clarion-find input[name=q]", "Enter")
    page.wait_for_url(f"**/admin/notifications/message/{bob_mail.pk}/change/")
    page.locator(".field-run a").click()
    attempt = DeliveryAttempt.objects.get(message=bob_mail)
    row = page.locator("#clarion-timeline tr[data-kind=attempt]")
    row.filter(has_text=f"Provider call to {attempt.provider}: Succeeded").wait_for()
    request = row.locator("details", has_text="request")
    assert not request.locator("pre").is_visible()
    request.locator("summary").click()
    request.locator("pre").wait_for()

    # Nothing found says so.
    page.fill("#clarion-find input[name=q]", "no-such-thing")
    page.press("#clarion-find input[name=q]", "Enter")
    page.locator("#clarion-find-none").wait_for()
