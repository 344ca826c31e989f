"""A day of work in the admin, in chromium, by three people who are not superusers.

An Editor builds `invoice-overdue` with forms only (in-app now, wait a day, email only if the
in-app item is unread, SMS only when data.amount ≥ 1000), writes its English and French templates
watching the live preview, sends the email to themself and leaves it for review; a Publisher
reviews and publishes; the app triggers it through the API, and a day later the email reaches a
real SMTP server and the SMS a local server that answers as Twilio does (refusing it once);
Support finds the person with the search box, reads the run's timeline and resends the SMS.

Each page is saved as a screenshot under the test's output folder; `make screenshots` runs this
test with CLARION_SCREENSHOTS_DIR=docs/img/admin, the pictures of docs/admin-guide.md.
"""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import connections
from django.urls import reverse
from django.utils import timezone

from inbox.auth import inbox_hmac
from notifications.models import Message, ProviderConfig, Run, Template, Workflow
from notifications.roles import EDITOR, PUBLISHER, SUPPORT, roles_sync
from notifications.services import api_key_create

from ..conftest import advance_at, timeline_events
from ..screenshots import VIEWPORT, Screenshots
from .providers.servers import ProviderServer, Reply
from .providers.test_sms import SID, TOKEN, twilio_accepts, twilio_check
from .test_workflow_builder_browser import EXPECTED_STEPS, add_step, card

PASSWORD = "a-long-day-2026"
DATA_FIELDS = [("invoice", "text", "INV-1042"), ("amount", "number", "1250")]
IN_APP = {
    "en": "Invoice <strong>{{ data.invoice }}</strong> is overdue: "
          "{{ data.amount | format_currency: \"EUR\" }} to pay.",
    "fr": "La facture <strong>{{ data.invoice }}</strong> est en retard : "
          "{{ data.amount | format_currency: \"EUR\" }} à régler.",
}
EMAIL = {
    "en": ("Invoice {{ data.invoice }} is overdue",
           "<p>Hello {{ recipient.name }},</p><p>Invoice {{ data.invoice }} "
           "({{ data.amount | format_currency: \"EUR\" }}) is now overdue.</p>"),
    "fr": ("La facture {{ data.invoice }} est en retard",
           "<p>Bonjour {{ recipient.name }},</p><p>La facture {{ data.invoice }} "
           "({{ data.amount | format_currency: \"EUR\" }}) est en retard.</p>"),
}
SMS = {
    "en": "Invoice {{ data.invoice }} ({{ data.amount | format_currency: \"EUR\" }}) is overdue.",
    "fr": "Facture {{ data.invoice }} ({{ data.amount | format_currency: \"EUR\" }}) en retard.",
}


def person(username: str, role: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", PASSWORD,
                                    is_staff=True, first_name=username.title())
    user.groups.add(Group.objects.get(name=role))
    return user


def sign_in(browser, live_server, username: str):
    """A browser window of its own (1280×800) for `username`, signed in on the home page."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def http_json(method: str, url: str, headers: dict, body: dict | None = None
              ) -> tuple[int, dict]:
    """A real HTTP request with a JSON body (or none); (status, JSON answer), 4xx included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"null")


def off_the_browser_thread(function, *args):
    """`function(*args)` in a thread of its own, its database connections closed after: the
    workers' code (delivery runs an asyncio loop; in-app items are pushed with async_to_sync)
    cannot run in this thread, where Playwright's event loop is marked running."""

    def call():
        try:
            return function(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def write_template(page, step_ref: str, locale: str, fields: dict, shown: str, *,
                   frame: str = "", shots=None, shot_name: str = "") -> None:
    """From the workflow page: add the `locale` template of step `step_ref`, fill `fields`,
    wait until the live preview shows `shown` (inside the preview's `frame`, when given),
    and save it as a draft."""
    card(page, step_ref).get_by_role("link", name="Add a template").click()
    page.fill("input[name=locale]", locale)
    for name, value in fields.items():
        page.fill(f"textarea[name={name}]", value)
    if frame:
        page.frame_locator(frame).get_by_text(shown).first.wait_for()
    else:
        page.locator("#clarion-preview").get_by_text(shown).first.wait_for()
    if shots is not None:
        shots.take(page, shot_name)
    page.click("input[name=_save_draft]")
    page.get_by_text("Saved version 1 as a draft (not published).").wait_for()


def scroll_to(page, selector: str) -> None:
    """Scroll so that `selector`'s element is at the top of the window (for a screenshot)."""
    page.locator(selector).first.evaluate("element => element.scrollIntoView({block: 'start'})")


def in_frame(page, frame: str, text: str) -> None:
    page.frame_locator(frame).get_by_text(text).first.wait_for()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_day_of_work_from_an_empty_workflow_to_a_resent_sms(browser, live_server, smtp,
                                                               run_tasks, tmp_path):
    roles_sync()  # the migration's groups (a transactional test starts from an emptied database)
    for username, role in (("erin", EDITOR), ("pablo", PUBLISHER), ("sam", SUPPORT)):
        person(username, role)
    _, api_secret = api_key_create(name="billing app")
    twilio = ProviderServer(twilio_check, twilio_accepts)
    sms_provider = ProviderConfig(key="twilio-main", channel="sms", kind="twilio",
                                  options={"base_url": twilio.url})
    sms_provider.credentials = {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"}
    sms_provider.save()
    shots = Screenshots(tmp_path / "screenshots")
    try:
        editor_day(browser, live_server, smtp, shots)
        publisher_day(browser, live_server, shots)
        deliveries(live_server, api_secret, smtp, twilio, run_tasks)
        support_day(browser, live_server, twilio, run_tasks, shots)
    finally:
        twilio.stop()
    assert twilio.problems == []
    assert len(shots.taken) >= 12


def editor_day(browser, live_server, smtp, shots) -> None:
    """The Editor builds the workflow with forms, writes six templates, sends a test."""
    page = sign_in(browser, live_server, "erin")
    shots.take(page, "editor-home")
    page.get_by_role("link", name="Workflows").first.click()
    page.get_by_role("link", name="Add workflow").click()
    page.get_by_label("Key").fill("invoice-overdue")
    page.get_by_label("Name", exact=True).fill("Invoice overdue")
    page.get_by_label("Category").fill("billing")
    for name, field_type, example in DATA_FIELDS:
        page.click("button[data-action=add-field]")
        row = page.locator("ol.wb-data-fields > li").last
        row.get_by_label("Name").fill(name)
        row.get_by_label("Type").select_option(label=field_type)
        row.get_by_label("Required").check()
        row.get_by_label("Example").fill(example)
    page.get_by_label("Refuse triggers whose data does not match these fields").check()

    add_step(page, "In-app", "inbox")
    delay = add_step(page, "Delay", "wait")
    delay.get_by_label("Wait (amount)").fill("1")
    delay.get_by_label("Wait (unit)").select_option("days")
    mail = add_step(page, "Email", "mail")
    mail.locator("summary", has_text="Skip if").click()
    mail.get_by_label("Earlier step").fill("inbox")
    mail.get_by_label("has been").select_option("read")
    sms = add_step(page, "SMS", "text")
    sms.locator("summary", has_text="Conditions").click()
    sms.get_by_role("button", name="Add condition").click()
    sms.get_by_label("Path").fill("data.amount")
    sms.get_by_label("Operator").select_option(label="≥")
    sms.get_by_label("Value").fill("1000")
    diagram = page.locator("#wb-diagram")
    diagram.get_by_text("only if data.amount ≥ 1000").wait_for()
    diagram.get_by_text("skipped if inbox has been read").wait_for()
    shots.take(page, "workflow-builder", full_page=True)
    page.click("input[name=_save_draft]")
    page.get_by_text("The workflow “invoice-overdue” was saved.").wait_for()
    workflow = Workflow.objects.get(key="invoice-overdue")
    assert [step.ref for step in workflow.steps.order_by("position")] == [
        s["ref"] for s in EXPECTED_STEPS]
    assert workflow.sample_data == {"invoice": "INV-1042", "amount": 1250}
    assert workflow.data_schema["required"] == ["invoice", "amount"]
    scroll_to(page, "#wb-steps-title")
    shots.take(page, "workflow-saved")

    # English and French for each channel step, each watched in the live preview.
    workflow_url = page.url
    write_template(page, "inbox", "en", {"body": IN_APP["en"]},
                   "is overdue: €1,250.00 to pay.", frame="#clarion-inapp-frame")
    page.goto(workflow_url)
    write_template(page, "inbox", "fr", {"body": IN_APP["fr"]}, "est en retard",
                   frame="#clarion-inapp-frame")
    page.goto(workflow_url)
    subject, html = EMAIL["en"]
    write_template(page, "mail", "en", {"subject": subject, "html": html},
                   "Invoice INV-1042 is overdue", shots=shots, shot_name="template-editor-email")
    in_frame(page, "#clarion-email-frame", "(€1,250.00) is now overdue.")
    page.get_by_text("the published version keeps being sent until a Publisher publishes "
                     "your draft.").wait_for()
    # Nobody but a Publisher publishes: the Editor's page offers drafts only.
    assert page.locator("button[name=_publish_version]").count() == 0
    page.click("#clarion-send-test")
    page.locator("#clarion-send-test-result").filter(
        has_text="Sent to erin@example.com through smtp.").wait_for()
    test_mail = smtp.wait_for(1)[-1]
    assert test_mail["To"] == "Erin <erin@example.com>"
    assert test_mail["Subject"] == "Invoice INV-1042 is overdue"
    shots.take(page, "template-test-sent")
    page.goto(workflow_url)
    subject, html = EMAIL["fr"]
    write_template(page, "mail", "fr", {"subject": subject, "html": html},
                   "La facture INV-1042 est en retard")
    in_frame(page, "#clarion-email-frame", "est en retard.")
    page.goto(workflow_url)
    write_template(page, "text", "en", {"text": SMS["en"]}, "1 segment")
    page.goto(workflow_url)
    # French writes money with no-break spaces; an SMS gets plain ones and stays in GSM-7.
    write_template(page, "text", "fr", {"text": SMS["fr"]}, "1 segment (GSM-7)",
                   shots=shots, shot_name="template-editor-sms")
    page.goto(workflow_url)
    assert page.locator(".wb-templates li").filter(has_text="not published, v1 draft").count() == 6
    scroll_to(page, "#wb-steps-title")
    shots.take(page, "workflow-templates")
    # The workflow and its templates are one draft: the Editor submits it for review.
    page.get_by_role("link", name="Review the draft and submit it").click()
    page.get_by_role("button", name="Submit for review").click()
    page.get_by_text("Version 1 is waiting for a Publisher's review.").wait_for()
    page.context.close()


def publisher_day(browser, live_server, shots) -> None:
    """The Publisher opens the workflow's draft from the home page, reads the whole workflow
    side by side with what is live (nothing yet), and approves and publishes it."""
    page = sign_in(browser, live_server, "pablo")
    drafts = page.locator("#clarion-workflow-drafts tbody tr")
    assert drafts.count() == 1 and page.locator("#clarion-drafts").count() == 0
    shots.take(page, "publisher-home")
    drafts.get_by_role("link", name="Invoice overdue").click()
    page.get_by_role("region", name="Side by side: Template mail · fr").wait_for()
    assert page.locator(".wv-section").count() == 9  # settings, data, steps, six templates
    shots.take(page, "workflow-review", full_page=True)
    page.get_by_role("button", name="Approve and publish").click()
    page.get_by_text("Published version 1: it runs from now on.").wait_for()
    assert not Template.objects.filter(published_version__isnull=True).exists()
    page.goto(live_server.url + reverse("admin:notifications_template_change", args=[
        Template.objects.get(step__ref="mail", locale="en").pk]))
    shots.take(page, "template-published")
    page.goto(f"{live_server.url}/admin/")
    assert page.locator("#clarion-workflow-drafts").count() == 0
    page.context.close()


def deliveries(live_server, api_secret, smtp, twilio, run_tasks) -> None:
    """The billing app triggers the workflow for Ada (English, €1,250) and Zoé (French, €300);
    Zoé reads her in-app item; a day later Ada gets the email and the SMS (refused by the
    provider this once), Zoé nothing more."""
    trigger = f"{live_server.url}/api/v1/workflows/invoice-overdue/trigger"
    key = {"Authorization": f"Bearer {api_secret}"}
    for recipient, data in (
            ({"id": "ada", "name": "Ada", "email": "ada@example.com", "phone": "+15550002222",
              "locale": "en"}, {"invoice": "INV-1042", "amount": 1250}),
            ({"id": "zoe", "name": "Zoé", "email": "zoe@example.com", "phone": "+15550003333",
              "locale": "fr"}, {"invoice": "INV-1043", "amount": 300})):
        status, body = http_json("POST", trigger, key, {"recipients": [recipient], "data": data})
        assert status == 202, body
    off_the_browser_thread(run_tasks)
    runs = {run.recipient.external_id: run for run in Run.objects.select_related("recipient")
            .filter(recipient__external_id__in=["ada", "zoe"])}
    assert {run.status for run in runs.values()} == {Run.Status.WAITING}
    # Zoé reads her inbox in the app (the widget's call, with the app's HMAC).
    zoe = {"X-Clarion-Recipient": "zoe", "X-Clarion-Hmac": inbox_hmac("zoe")}
    status, feed = http_json("GET", f"{live_server.url}/api/v1/inbox/", zoe)
    assert status == 200, feed
    [item] = feed["items"]
    assert "est en retard" in item["body"], item
    status, body = http_json("POST", f"{live_server.url}/api/v1/inbox/items/{item['id']}/read",
                             zoe, {})
    assert status == 200, body
    twilio.script(Reply(401, json={"code": 20003, "message": "Authenticate", "status": 401}))
    tomorrow = timezone.now() + timedelta(days=1, minutes=1)
    for run in runs.values():
        off_the_browser_thread(advance_at, run, tomorrow)
    off_the_browser_thread(run_tasks)
    mail = smtp.wait_for(2)[-1]
    assert (mail["To"], mail["Subject"]) == ("Ada <ada@example.com>",
                                             "Invoice INV-1042 is overdue")
    assert "(€1,250.00) is now overdue." in mail.get_body(("html",)).get_content()
    assert timeline_events(runs["ada"]) == [
        ("", "triggered"), ("inbox", "sent"), ("wait", "delayed"), ("wait", "resumed"),
        ("mail", "queued"), ("text", "queued"), ("", "completed"), ("mail", "sent"),
        ("text", "failed")]
    # Zoé read the in-app item (no email) and owes under 1,000 (no SMS).
    assert timeline_events(runs["zoe"]) == [
        ("", "triggered"), ("inbox", "sent"), ("wait", "delayed"), ("wait", "resumed"),
        ("mail", "condition_false"), ("text", "condition_false"), ("", "completed")]
    sms = Message.objects.get(recipient__external_id="ada", channel="sms")
    assert sms.status == Message.Status.FAILED, (sms.status, sms.error)
    assert Message.objects.filter(recipient__external_id="zoe").count() == 1  # in-app only


def support_day(browser, live_server, twilio, run_tasks, shots) -> None:
    """Support finds Ada from the search box, reads her run's timeline, resends the SMS."""
    page = sign_in(browser, live_server, "sam")
    page.locator("#clarion-failures").get_by_text("ada").wait_for()
    shots.take(page, "support-home")
    page.fill("#clarion-find input[name=q]", "ada@example.com")
    page.press("#clarion-find input[name=q]", "Enter")
    page.wait_for_url("**/admin/notifications/recipient/*/change/")
    shots.take(page, "support-recipient", full_page=True)
    page.get_by_role("link", name="timeline").first.click()
    page.wait_for_url("**/admin/notifications/run/*/change/")
    timeline = page.locator("#clarion-timeline")
    timeline.locator("tr[data-kind=message]").first.wait_for()
    shots.take(page, "support-timeline", full_page=True)
    page.goto(f"{live_server.url}/admin/")
    page.locator("#clarion-failures a").first.click()
    page.get_by_text("Twilio 20003: Authenticate").first.wait_for()
    shots.take(page, "support-failed-message")
    page.click("#clarion-resend")
    page.get_by_text("Queued the message to be sent again.").wait_for()
    off_the_browser_thread(run_tasks)
    sms = Message.objects.get(recipient__external_id="ada", channel="sms")
    assert sms.status == Message.Status.SENT, (sms.status, sms.error)
    assert [r.form()["Body"] for r in twilio.requests] == [
        "Invoice INV-1042 (€1,250.00) is overdue."] * 2
    page.reload()
    scroll_to(page, "text=Content:")
    shots.take(page, "support-resent")
    page.context.close()
