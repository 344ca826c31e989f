"""The template editor's endpoints: live preview (never a 500), drafts, version diffs, test sends,
layouts and sample data."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from notifications.models import Layout, Message, Template, Tenant, Workflow
from notifications.rendering import default_layout_html
from notifications.services import StepSpec, TriggerRequest, template_save, trigger_workflow
from notifications.tasks import advance_run

from ..conftest import email_step, in_app_step

PREVIEW = reverse("admin:notifications_template_preview")


def change_url(template) -> str:
    return reverse("admin:notifications_template_change", args=[template.pk])


@pytest.fixture
def editor(client, db):
    """A staff user (not a superuser) who may edit and publish templates, logged in."""
    user = User.objects.create_user("ed", "ed@example.com", "pw", is_staff=True,
                                    first_name="Ed")
    user.user_permissions.add(*Permission.objects.filter(codename__in=[
        "view_template", "change_template", "add_template", "view_templateversion",
        "publish_template"]))
    client.force_login(user)
    return client


@pytest.fixture
def order(make_workflow):
    return make_workflow("order", steps=[
        email_step(subject="Order {{ data.order.id }}",
                   html="<p>{{ data.order.total | format_currency: 'EUR' }}</p>"),
        in_app_step(body="Order {{ data.order.id }} shipped"),
        StepSpec(ref="text", type="sms", templates={"en": {"text": "Order {{ data.order.id }}"}}),
    ], sample_data={"order": {"id": "A-1", "total": 9.5}})


def template_of(workflow, ref) -> Template:
    return Template.objects.get(step__workflow=workflow, step__ref=ref)


def preview(client, template, **fields):
    return client.post(PREVIEW, {"step": template.step_id, "locale": template.locale, **fields})


def test_preview_renders_the_editors_fields_with_the_workflows_sample_data(editor, order):
    response = preview(editor, template_of(order, "mail"), subject="Your order {{ data.order.id }}",
                       html="<p>Hi {{ recipient.name }}: {{ data.order.total | format_currency: "
                            "'EUR' }}</p>")
    assert response.status_code == 200
    body = response.json()
    assert body["errors"] == [] and body["warnings"] == []
    assert body["rendered"]["subject"] == "Your order A-1"
    assert body["rendered"]["html"] == "<p>Hi Ed: €9.50</p>"
    assert body["rendered"]["text"] == "Hi Ed: €9.50"


def test_preview_wraps_email_in_the_chosen_tenants_layout(editor, order):
    tenant = Tenant.objects.create(key="acme", name="Acme", primary_color="#abcdef")
    Layout.objects.create(name="Acme", tenant=tenant, html=default_layout_html())
    response = editor.post(PREVIEW, {"step": template_of(order, "mail").step_id, "locale": "en",
                                     "preview_tenant": tenant.pk, "subject": "s",
                                     "html": "<p>x</p>"})
    assert "background-color: #abcdef" in response.json()["rendered"]["html"]


@pytest.mark.parametrize(("fields", "expected"), [
    ({"subject": "ok", "html": "<p>\n{% if %}</p>"},
     {"field": "html", "line": 2, "column": 4,
      "message": "Liquid syntax error: missing expression (line 2, column 4)"}),
    ({"subject": "{{ data.__class__ }}", "html": "x"},
     {"field": "subject", "line": 1, "column": 4,
      "message": "'__class__' cannot be used: names starting with '__' are not template "
                 "variables (line 1, column 4)"}),
    ({"subject": "{% for i in (1..99999999) %}{% endfor %}", "html": "x"},
     {"field": "subject", "line": 1, "column": 4,
      "message": "loop iteration limit reached (line 1, column 4); loops may run at most "
                 "10,000 times in all"}),
    ({"subject": "{{ 'x' | format_date }}", "html": "x"},
     {"field": "subject", "line": 1, "column": 1,
      "message": "format_date: expected a date like 2026-01-31 or 2026-01-31T09:30:00Z, got 'x' "
                 "(line 1, column 1)"}),
])
def test_preview_answers_bad_templates_with_errors_and_lines_never_a_500(editor, order, fields,
                                                                         expected):
    response = preview(editor, template_of(order, "mail"), **fields)
    assert response.status_code == 200
    assert response.json()["errors"] == [expected]


def test_preview_warns_of_unknown_variables_with_their_lines(editor, order):
    response = preview(editor, template_of(order, "mail"), subject="Order {{ data.order.idd }}",
                       html="<p>\n{{ recipient.fullname }}</p>")
    body = response.json()
    assert body["errors"] == []
    assert [(w["field"], w["line"]) for w in body["warnings"]] == [("subject", 1), ("html", 2)]
    assert body["warnings"][0]["message"].startswith("data.order.idd: not in the workflow's")
    assert body["rendered"]["subject"] == "Order"  # warnings still render


def test_sms_preview_counts_characters_and_segments(editor, order):
    body = preview(editor, template_of(order, "text"), text="é" * 150 + "☃").json()
    assert body["sms"] == {"encoding": "UCS-2", "characters": 151, "segments": 3}


def test_in_app_preview_escapes_sample_data(editor, order):
    order.sample_data = {"order": {"id": "<script>x</script>"}}
    order.save()
    body = preview(editor, template_of(order, "inbox"), body="Order {{ data.order.id }}").json()
    assert body["rendered"]["body"] == "Order &lt;script&gt;x&lt;/script&gt;"


def test_preview_of_an_unknown_step_is_a_400_naming_the_field(editor, db):
    response = editor.post(PREVIEW, {"step": "999999", "subject": "x"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "detail": "Choose a step first.",
                               "fields": {"step": ["Unknown step."]}}


def test_preview_needs_template_permissions(client, order):
    outsider = User.objects.create_user("o", password="pw", is_staff=True)
    client.force_login(outsider)
    assert preview(client, template_of(order, "mail"), subject="x").status_code == 403
    assert client.get(PREVIEW).status_code in (403, 405)


def test_the_editor_page_has_the_preview_the_variables_and_a_draft_button(editor, order):
    html = editor.get(change_url(template_of(order, "mail"))).content.decode()
    assert 'id="clarion-preview"' in html
    assert 'data-insert="data.order.id"' in html
    assert 'data-insert="recipient.name"' in html
    assert 'data-insert="unsubscribe_url"' in html
    assert 'name="_save_draft"' in html
    assert "clarion/template-editor.js" in html
    assert "Send a test to me" in html


def test_save_as_draft_keeps_the_published_version(editor, order):
    template = template_of(order, "inbox")
    response = editor.post(change_url(template), {"body": "Draft words", "action_url": "",
                                                  "avatar": "", "_save_draft": "1"})
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.published_version.number == 1
    draft = template.versions.get(number=2)
    assert draft.fields == {"body": "Draft words"}
    assert draft.author.username == "ed"
    # The editor reopens on the draft; the published version is still what renders.
    page = editor.get(change_url(template))
    assert page.context["adminform"].form["body"].value() == "Draft words"
    assert "Publish v2" in page.content.decode()


def test_diff_shows_two_versions_side_by_side_escaped(editor, order):
    template = template_of(order, "inbox")
    template_save(step=template.step, locale="en", fields={"body": "Order <b>{{ x }}</b> left"})
    v1, v2 = template.versions.get(number=1), template.versions.get(number=2)
    url = reverse("admin:notifications_template_diff", args=[template.pk])
    response = editor.get(f"{url}?a={v1.pk}&b={v2.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h2>body</h2>" in html
    assert '<table class="diff"' in html
    assert "&lt;b&gt;" in html and "<b>{{" not in html
    assert ">v1<" in html and ">v2<" in html


def test_versions_list_links_to_a_comparison_with_the_published_version(editor, order):
    template = template_of(order, "inbox")
    template_save(step=template.step, locale="en", fields={"body": "new"}, publish=False)
    html = editor.get(change_url(template)).content.decode()
    url = reverse("admin:notifications_template_diff", args=[template.pk])
    v1, v2 = template.versions.get(number=1), template.versions.get(number=2)
    assert f'href="{url}?a={v1.pk}&amp;b={v2.pk}">compare with published</a>' in html


def test_send_test_view_sends_the_editors_fields_to_the_staff_user(editor, order, smtp):
    template = template_of(order, "mail")
    url = reverse("admin:notifications_template_send_test", args=[template.pk])
    response = editor.post(url, {"subject": "Test {{ data.order.id }}", "html": "<p>hi</p>"})
    assert response.status_code == 200, response.content
    assert response.json()["detail"] == "Sent to ed@example.com through smtp."
    mail = smtp.wait_for(1)[0]
    assert (mail["To"], mail["Subject"]) == ("Ed <ed@example.com>", "Test A-1")
    assert Message.objects.get().status == Message.Status.SENT


def test_send_test_delivers_only_its_own_message_and_leaves_other_queued_messages_alone(
        editor, order, smtp, make_workflow):
    _, runs = trigger_workflow(TriggerRequest(
        workflow=make_workflow("other", steps=[email_step()]),
        recipients=[{"id": "u1", "name": "Ada", "email": "ada@example.com"}]))
    advance_run(str(runs[0].id))
    queued = Message.objects.get()
    assert queued.status == Message.Status.QUEUED
    url = reverse("admin:notifications_template_send_test", args=[template_of(order, "mail").pk])

    response = editor.post(url, {"subject": "Test", "html": "<p>hi</p>"})

    assert response.status_code == 200, response.content
    assert [mail["To"] for mail in smtp.wait_for(1)] == ["Ed <ed@example.com>"]
    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == (Message.Status.QUEUED, 0)
    assert not queued.delivery_attempts.exists()
    assert Message.objects.exclude(pk=queued.pk).get().status == Message.Status.SENT


def test_send_test_view_answers_a_bad_template_with_a_400(editor, order, smtp):
    url = reverse("admin:notifications_template_send_test", args=[template_of(order, "mail").pk])
    response = editor.post(url, {"subject": "{{ x | nope }}", "html": "x"})
    assert response.status_code == 400
    assert response.json() == {"error": "test_send_failed",
                               "detail": "subject: unknown filter 'nope' (line 1, column 8)"}
    assert not Message.objects.exists()


def test_a_new_layout_starts_from_the_built_in_one(admin_client, db):
    page = admin_client.get(reverse("admin:notifications_layout_add"))
    assert page.context["adminform"].form["html"].value() == default_layout_html()


def test_a_layout_without_content_or_with_a_syntax_error_is_refused(admin_client, db):
    url = reverse("admin:notifications_layout_add")
    page = admin_client.post(url, {"name": "x", "html": "<p>no content</p>", "text": ""})
    assert page.context["adminform"].form.errors["html"] == [
        "The layout must contain {{ content }}."]
    page = admin_client.post(url, {"name": "x", "html": "{{ content }}\n{% if %}", "text": ""})
    assert page.context["adminform"].form.errors["html"] == [
        "Liquid syntax error: missing expression (line 2, column 4)"]
    assert not Layout.objects.exists()


def test_workflow_sample_data_is_edited_in_the_admin(admin_client, order):
    """The sample data the editor previews with is the examples of the workflow's data fields
    (no schema yet: the fields are inferred from the sample)."""
    url = reverse("admin:notifications_workflow_change", args=[order.pk])
    rows = admin_client.get(url).context["state"].rows
    assert [(r["name"], r["type"], r["example"]) for r in rows] == [
        ("order.id", "string", "A-1"), ("order.total", "number", "9.5")]
    response = admin_client.post(url, workflow_post(order, {
        "fields-0-name": "order.id", "fields-0-type": "string", "fields-0-example": "B-2"}))
    assert response.status_code == 302, response.context["problems"]
    order.refresh_from_db()
    assert (order.sample_data, order.data_schema) == ({"order": {"id": "B-2"}}, None)


def workflow_post(workflow, changes: dict) -> dict:
    data = {"name": workflow.name, "default_locale": workflow.default_locale, "active": "on"}
    for index, step in enumerate(workflow.steps.all()):
        data |= {f"steps-{index}-type": step.type, f"steps-{index}-ref": step.ref,
                 f"steps-{index}-original": step.ref}
    return data | changes


@pytest.mark.parametrize(("field_type", "example", "error"), [
    ("number", "cheap", "Enter a number."),
    ("object", "[1, 2]", 'Enter a JSON object, e.g. {"id": 1}.'),
    ("boolean", "maybe", "Enter true or false."),
])
def test_an_example_must_be_of_its_fields_type(admin_client, order, field_type, example,
                                               error):
    url = reverse("admin:notifications_workflow_change", args=[order.pk])
    page = admin_client.post(url, workflow_post(order, {
        "check_data": "on", "fields-0-name": "order", "fields-0-type": field_type,
        "fields-0-example": example}))
    assert page.status_code == 200
    assert page.context["problems"] == {"fields-0-example": [error]}
    assert Workflow.objects.get(pk=order.pk).sample_data == {"order": {"id": "A-1", "total": 9.5}}


def test_tenant_colour_must_be_a_hex_colour_since_it_goes_into_css(api, db):
    response = api.put("/api/v1/tenants/acme", {"name": "Acme",
                                                "primary_color": "red; background: url(x)"})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "primary_color": ["Use a hex colour like #4f46e5 (it goes into CSS)."]}
    assert api.put("/api/v1/tenants/acme", {"name": "Acme", "primary_color": "#0F0",
                                            "footer": "Acme, 1 Road"}).status_code == 201
    assert Tenant.objects.get(key="acme").footer == "Acme, 1 Road"


def test_saving_a_template_with_an_unknown_variable_saves_and_warns_with_the_line(editor, order):
    template = template_of(order, "inbox")
    response = editor.post(change_url(template), {"body": "Order\n{{ data.ordr.id }}",
                                                  "action_url": "", "avatar": ""}, follow=True)
    texts = [str(m) for m in response.context["messages"]]
    assert "Saved and published version 2." in texts
    assert ("Check body: data.ordr.id: not in the workflow's data schema or sample data "
            "(line 2, column 4)") in texts


def test_a_saved_layout_shows_a_preview_with_its_tenants_branding(admin_client, db):
    tenant = Tenant.objects.create(key="acme", name="Acme", primary_color="#abcdef",
                                   footer="Acme <Inc>")
    layout = Layout.objects.create(name="Acme", tenant=tenant, html=default_layout_html(),
                                   text="{{ content }}\n-- {{ tenant.footer }}")
    html = admin_client.get(reverse("admin:notifications_layout_change",
                                    args=[layout.pk])).content.decode()
    assert '<iframe sandbox="" srcdoc="' in html
    assert "background-color: #abcdef" in html
    assert "Acme &amp;lt;Inc&amp;gt;" in html  # escaped by Liquid, then for the attribute
    assert "-- Acme &lt;Inc&gt;</pre>" in html
