"""Template versions, publishing and rollback, locale fallback, layouts per tenant, test sends."""

import pytest
from django.contrib.auth.models import User

from inbox.models import InboxItem
from notifications import engine
from notifications.models import DeliveryAttempt, Layout, Message, StepLog, Template, Tenant
from notifications.rendering import DEFAULT_LAYOUT_TEXT, default_layout_html
from notifications.services import (
    SendTestError,
    StepSpec,
    template_publish,
    template_save,
    template_send_test,
)

from ..conftest import email_step, in_app_step


@pytest.fixture
def staff(db):
    return User.objects.create_user("pat", "pat@example.com", "pw", is_staff=True,
                                    first_name="Pat", last_name="Lee")


@pytest.fixture
def trigger_and_run(api, run_tasks):
    """Trigger a workflow for one recipient through the API and run every task."""

    def go(key, recipient=None, **body):
        recipient = recipient or {"id": "u1", "name": "Ada", "email": "ada@example.com"}
        response = api.post(f"/api/v1/workflows/{key}/trigger", {"recipients": [recipient],
                                                                 **body})
        assert response.status_code == 202, response.content
        run_tasks()

    return go


def inbox_body() -> str:
    return InboxItem.objects.order_by("-id").first().content["body"]


# --- Versions ---------------------------------------------------------------------------------

def test_every_save_is_a_new_immutable_version_with_author_and_time(make_workflow, staff):
    workflow = make_workflow("w", steps=[in_app_step(body="v1")])
    step = workflow.steps.get()
    template, v2 = template_save(step=step, locale="en", fields={"body": "v2"}, author=staff)
    _, v3 = template_save(step=step, locale="en", fields={"body": "v3"}, author=staff)
    assert [v.number for v in template.versions.all()] == [3, 2, 1]
    assert template.versions.get(number=1).fields == {"body": "v1"}  # untouched by later saves
    assert (v2.author, v3.author) == (staff, staff)
    assert v2.created_at <= v3.created_at
    template.refresh_from_db()
    assert template.published_version == v3


def test_a_draft_is_saved_without_publishing(make_workflow, trigger_and_run):
    workflow = make_workflow("w", steps=[in_app_step(body="published")])
    template, draft = template_save(step=workflow.steps.get(), locale="en",
                                    fields={"body": "draft"}, publish=False)
    assert draft.number == 2
    assert template.published_version.number == 1
    trigger_and_run("w")
    assert inbox_body() == "published"


def test_publish_then_rollback_changes_what_new_runs_render_and_messages_record_it(
        make_workflow, trigger_and_run):
    workflow = make_workflow("w", steps=[in_app_step(body="old words")])
    template = Template.objects.get(step__workflow=workflow)
    v1 = template.published_version
    _, v2 = template_save(step=template.step, locale="en", fields={"body": "new words"},
                          publish=False)

    template_publish(version=v2)
    trigger_and_run("w", recipient={"id": "u1"})
    assert inbox_body() == "new words"
    assert Message.objects.get(recipient__external_id="u1").template_version == v2

    template_publish(version=v1)  # rollback
    trigger_and_run("w", recipient={"id": "u2"})
    assert inbox_body() == "old words"
    assert Message.objects.get(recipient__external_id="u2").template_version == v1
    assert template.versions.count() == 2  # a rollback creates no version


def test_saving_the_fields_of_an_existing_version_creates_nothing(make_workflow):
    workflow = make_workflow("w", steps=[in_app_step(body="one")])
    step = workflow.steps.get()
    template_save(step=step, locale="en", fields={"body": "two"}, publish=False)
    template, version = template_save(step=step, locale="en", fields={"body": "two"})
    assert version is None
    assert template.published_version.number == 2  # the draft was published, not copied
    assert template.versions.count() == 2


def test_concurrent_saves_get_distinct_numbers(make_workflow):
    workflow = make_workflow("w", steps=[in_app_step(body="one")])
    step = workflow.steps.get()
    numbers = [template_save(step=step, locale="en", fields={"body": f"b{i}"})[1].number
               for i in range(3)]
    assert numbers == [2, 3, 4]


# --- Locales ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "expected"), [
    ("pt-BR", "Olá do Brasil"), ("pt_br", "Olá do Brasil"), ("pt-PT", "Olá"), ("pt", "Olá"),
    ("fr-CA", "Bonjour"), ("de", "Hallo"), ("", "Hallo"), ("zh-Hant-TW", "Hallo"),
])
def test_the_recipients_locale_falls_back_to_its_language_then_the_workflow_default(
        make_workflow, trigger_and_run, locale, expected):
    step = StepSpec(ref="inbox", type="in_app", templates={
        "de": {"body": "Hallo"}, "pt": {"body": "Olá"}, "pt-BR": {"body": "Olá do Brasil"},
        "fr": {"body": "Bonjour"}})
    make_workflow("w", steps=[step], default_locale="de")
    trigger_and_run("w", recipient={"id": "u1", "locale": locale})
    assert inbox_body() == expected


def test_locale_candidates_narrow_step_by_step():
    assert engine.locale_candidates("zh-Hant-TW", "en-GB") == [
        "zh-hant-tw", "zh-hant", "zh", "en-gb", "en"]


def test_a_template_formats_dates_in_the_recipients_locale_and_zone(make_workflow,
                                                                    trigger_and_run):
    make_workflow("w", steps=[in_app_step(body="{{ data.at | format_datetime: 'short' }}")])
    trigger_and_run("w", recipient={"id": "u1", "locale": "fr", "timezone": "Europe/Paris"},
                    data={"at": "2026-07-14T20:00:00Z"})
    assert inbox_body() == "14/07/2026 22:00"


# --- Layouts, branding, XSS through the engine ------------------------------------------------

def test_a_tenants_layout_wraps_its_emails_and_data_is_escaped(make_workflow, trigger_and_run,
                                                               smtp, api):
    api.put("/api/v1/tenants/acme", {"name": "Acme", "primary_color": "#123456",
                                     "footer": "Acme Inc., 1 Road"})
    Layout.objects.create(name="Default", html=default_layout_html(), text=DEFAULT_LAYOUT_TEXT)
    Layout.objects.create(name="Acme", tenant=Tenant.objects.get(key="acme"),
                          html="<div class='acme'>{{ content }}</div>", text="")
    make_workflow("w", steps=[email_step(html="<p>{{ data.name }}</p>")])

    trigger_and_run("w", tenant="acme", data={"name": "<script>alert(1)</script>"})
    trigger_and_run("w", recipient={"id": "u2", "email": "bo@example.com"},
                    data={"name": "Bo"})

    acme, default = smtp.wait_for(2)
    acme_html = acme.get_body(("html",)).get_content()
    assert "<div class=\"acme\"><p>&lt;script&gt;alert(1)&lt;/script&gt;</p></div>" in acme_html
    default_html = default.get_body(("html",)).get_content()
    assert '<table role="presentation"' in default_html
    assert "<p style=\"margin: 0 0 16px;\">Bo</p>" in default_html
    text = default.get_body(("plain",)).get_content().replace("\r\n", "\n")
    # No tenant footer: the text part is the content and the person's two links.
    body, signature = text.split("\n--\n")
    assert body.strip() == "Bo"
    assert [line.split(": ")[0] for line in signature.strip().splitlines()] == [
        "Notification settings", "Unsubscribe"]
    assert "/p/" in signature and "/u/" in signature


def test_in_app_content_escapes_data(make_workflow, trigger_and_run):
    make_workflow("w", steps=[in_app_step(body="<b>{{ data.who }}</b> commented")])
    trigger_and_run("w", data={"who": "<img src=x onerror=alert(1)>"})
    assert inbox_body() == "<b>&lt;img src=x onerror=alert(1)&gt;</b> commented"


# --- Test sends -------------------------------------------------------------------------------

def test_send_a_test_to_me_really_sends_with_sample_data_and_is_recorded(make_workflow, staff,
                                                                         smtp):
    workflow = make_workflow("w", steps=[email_step(
        subject="Order {{ data.order }} for {{ recipient.name }}",
        html="<p>Total {{ data.total | format_currency: 'EUR' }}</p>")],
        sample_data={"order": "A-1", "total": 12.5})
    template = Template.objects.get(step__workflow=workflow)

    message = template_send_test(template=template, user=staff)

    mail = smtp.wait_for(1)[0]
    assert mail["To"] == "Pat Lee <pat@example.com>"
    assert mail["Subject"] == "Order A-1 for Pat Lee"
    assert "Total €12.50" in mail.get_body(("html",)).get_content()
    assert message.status == Message.Status.SENT
    assert message.template_version == template.published_version
    assert DeliveryAttempt.objects.get(message=message).outcome == "succeeded"
    logs = list(message.run.step_logs.order_by("id").values_list("event", flat=True))
    assert logs == [StepLog.Event.TRIGGERED, StepLog.Event.QUEUED, StepLog.Event.SENT]
    assert message.run.step_logs.first().detail["test_send_by"] == "pat"


def test_a_test_send_of_unsaved_fields_records_no_version(make_workflow, staff, smtp):
    workflow = make_workflow("w", steps=[email_step()])
    template = Template.objects.get(step__workflow=workflow)
    message = template_send_test(template=template, user=staff,
                                 fields={"subject": "Unsaved", "html": "<p>draft</p>"})
    assert smtp.wait_for(1)[0]["Subject"] == "Unsaved"
    assert message.template_version is None


@pytest.mark.parametrize(("setup", "fields", "expected"), [
    ("no_email", None, "Your user has no email address: add one to your account first."),
    ("", {"subject": "{% if %}", "html": "x"},
     "subject: Liquid syntax error: missing expression (line 1, column 4)"),
    ("in_app", None, "Test sends are made for email templates."),
])
def test_a_test_send_that_cannot_be_made_says_why_and_sends_nothing(make_workflow, staff, smtp,
                                                                    setup, fields, expected):
    if setup == "no_email":
        staff.email = ""
        staff.save()
    step = in_app_step() if setup == "in_app" else email_step()
    workflow = make_workflow("w", steps=[step])
    with pytest.raises(SendTestError) as caught:
        template_send_test(template=Template.objects.get(step__workflow=workflow), user=staff,
                           fields=fields)
    assert str(caught.value) == expected
    assert not Message.objects.exists()
