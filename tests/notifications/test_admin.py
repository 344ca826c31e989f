"""The admin a product manager uses: every page loads, templates are edited without JSON and go
through the template service, API key secrets are shown once (runs as timelines:
test_admin_runs.py)."""

import hashlib
import json
import re
from html import unescape

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from inbox.models import InboxItem
from notifications import rendering
from notifications.models import (
    ApiKey,
    DeliveryAttempt,
    Message,
    Run,
    Step,
    StepLog,
    Template,
    TemplateVersion,
    Trigger,
)

from .admin_support import hrefs, message_texts, url


def inbox_template(workflow) -> Template:
    return Template.objects.get(step__workflow=workflow, step__ref="inbox", locale="en")


def test_every_changelist_add_and_change_page_loads_for_a_superuser(admin_client, triggered):
    assert Run.objects.count() == 2 and DeliveryAttempt.objects.count() == 2
    assert InboxItem.objects.count() == 2
    for model, model_admin in admin.site._registry.items():
        response = admin_client.get(url(model))
        assert response.status_code == 200, model
        add = admin_client.get(url(model, "add"))
        can_add = model_admin.has_add_permission(add.wsgi_request)
        assert add.status_code == (200 if can_add else 403), model
        first = model._default_manager.first()
        if first is not None:
            assert admin_client.get(url(model, "change", first.pk)).status_code == 200, model


def test_ledgers_are_read_only(admin_client, triggered):
    for model in (Trigger, Run, Message, DeliveryAttempt, StepLog, TemplateVersion, InboxItem):
        request = admin_client.get(url(model)).wsgi_request
        model_admin = admin.site._registry[model]
        assert not model_admin.has_add_permission(request), model
        assert not model_admin.has_change_permission(request), model


def test_workflow_page_lists_steps_in_order_with_a_link_to_each_steps_templates(admin_client,
                                                                                 welcome):
    response = admin_client.get(url(type(welcome), "change", welcome.pk))
    assert response.status_code == 200
    assert [step["ref"] for step in response.context["state"].steps] == ["inbox", "wait", "mail"]
    mail = welcome.steps.get(ref="mail")
    template = mail.templates.get()
    template_url = url(Template, "change", template.pk)
    assert (f'<li><a href="{template_url}">en</a>: v1 published</li>'
            in unescape(response.content.decode()))
    assert f'{url(Template, "add")}?step={mail.pk}' in hrefs(response)

    page = admin_client.get(template_url)
    form = page.context["adminform"].form
    assert form["subject"].value() == "Hello {{ recipient.name }}"
    assert form["html"].value() == "<p>{{ data.body }}</p>"
    assert form["text"].value() is None


def test_step_page_lists_its_templates_and_links_to_add_one(admin_client, welcome):
    step = welcome.steps.get(ref="inbox")
    template = step.templates.get()
    response = admin_client.get(url(Step, "change", step.pk))
    html = unescape(response.content.decode())
    assert "<tr><td>en</td><td>1</td><td>" in html
    assert f'<a href="{url(Template, "change", template.pk)}">Edit</a>' in html
    assert (f'<a class="addlink" href="{url(Template, "add")}?step={step.pk}">'
            "Add a template for this step</a>") in html

    delay = welcome.steps.get(ref="wait")
    response = admin_client.get(url(Step, "change", delay.pk))
    assert "Delay steps have no templates." in response.content.decode()


def test_step_type_choices_are_the_engines(admin_client, welcome):
    response = admin_client.get(url(Step, "change", welcome.steps.get(ref="inbox").pk))
    choices = response.context["adminform"].form.fields["type"].choices
    assert choices == [("", "---------"), ("email", "Email"), ("sms", "SMS"), ("push", "Push"),
                       ("chat", "Chat"), ("whatsapp", "WhatsApp"), ("in_app", "In-app"),
                       ("webhook", "Webhook"), ("delay", "Delay"), ("digest", "Digest"),
                       ("throttle", "Throttle"), ("branch", "Branch"), ("route", "Route"),
                       ("approval", "Approval")]


def step_post_data(step, **changes) -> dict:
    data = {"workflow": step.workflow_id, "position": step.position, "ref": step.ref,
            "type": step.type, "config": "{}", "conditions": ""}
    return data | changes


@pytest.mark.parametrize("changes, field, error", [
    ({"type": "fax"}, "type",
     "Select a valid choice. fax is not one of the available choices."),
    ({"type": "digest", "config": '{"window": {"daily": "9:00"}}'}, "config",
     'config.window.daily: Expected a local time "HH:MM", e.g. "09:00".'),
    ({"conditions": '{"all": [{"path": "data.plan", "op": "equals", "value": 1}]}'}, "conditions",
     "conditions.all[0].op: Expected one of: eq, neq, gt, gte, lt, lte, in, contains, exists, "
     "not_exists."),
    ({"conditions": "[1, 2]"}, "conditions",
     'conditions: Expected an object with "all" or "any".'),
    ({"conditions": "{not json"}, "conditions", "Enter a valid JSON."),
    ({"type": "delay", "config": '{"weeks": 1}'}, "config",
     'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.'),
    ({"type": "delay", "config": ""}, "config",
     'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.'),
    ({"type": "delay"}, "type",
     "This step has In-app templates; delete them before changing its type."),
])
def test_step_form_shows_bad_config_and_conditions_as_errors(admin_client, welcome, changes,
                                                             field, error):
    step = welcome.steps.get(ref="inbox")
    response = admin_client.post(url(Step, "change", step.pk), step_post_data(step, **changes))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [error]
    step.refresh_from_db()
    assert (step.type, step.config, step.conditions) == ("in_app", {}, None)


def test_step_form_saves_valid_conditions_and_an_emptied_config_as_an_object(admin_client,
                                                                              welcome):
    step = welcome.steps.get(ref="wait")
    response = admin_client.post(url(Step, "change", step.pk), step_post_data(
        step, config='{"minutes": 5}',
        conditions='{"any": [{"path": "data.plan", "op": "eq", "value": "pro"}]}'))
    assert response.status_code == 302
    step.refresh_from_db()
    assert step.config == {"minutes": 5}
    assert step.conditions == {"any": [{"path": "data.plan", "op": "eq", "value": "pro"}]}

    mail = welcome.steps.get(ref="mail")
    for emptied in ("", "null"):
        Step.objects.filter(pk=mail.pk).update(config={"x": 1})
        assert admin_client.post(url(Step, "change", mail.pk),
                                 step_post_data(mail, config=emptied)).status_code == 302
        mail.refresh_from_db()
        assert mail.config == {}


def workflow_post_data(workflow, row_changes=None) -> dict:
    """The builder's form as the browser posts it; row_changes: {index: {field: value}}."""
    row_changes = row_changes or {}
    data = {"name": workflow.name, "category": workflow.category, "active": "on",
            "default_locale": workflow.default_locale}
    for index, step in enumerate(workflow.steps.order_by("position")):
        row = {"ref": step.ref, "type": step.type, "original": step.ref}
        if step.type == "delay":
            row |= {"duration_amount": step.config.get("seconds", ""),
                    "duration_unit": "seconds"}
        row |= row_changes.get(index, {})
        data |= {f"steps-{index}-{name}": value for name, value in row.items()}
    return data


def test_workflow_page_shows_step_errors_instead_of_failing(admin_client, welcome):
    response = admin_client.post(url(type(welcome), "change", welcome.pk), workflow_post_data(
        welcome, {1: {"duration_amount": "", "until": "nowhere.at"}, 2: {"ref": "inbox"}}))
    assert response.status_code == 200
    assert response.context["problems"] == {
        "steps-1-until": ['"until" must be a path starting with one of: data, recipient, '
                          'tenant, actor, steps.']}
    response = admin_client.post(url(type(welcome), "change", welcome.pk), workflow_post_data(
        welcome, {2: {"ref": "inbox"}}))
    assert response.context["problems"] == {
        "steps": ["Step refs must be unique (nested steps included): inbox."],
        "steps-0-ref": ["Another step is 'inbox' too."],
        "steps-2-ref": ["Another step is 'inbox' too."]}

    welcome.refresh_from_db()
    assert welcome.steps.get(ref="wait").config == {"seconds": 0}


def test_workflow_page_saves_step_order(admin_client, welcome):
    data = workflow_post_data(welcome)
    moved = {name.replace("steps-0-", "steps-9-"): value for name, value in data.items()
             if name.startswith("steps-0-")}
    data = {name: value for name, value in data.items() if not name.startswith("steps-0-")}
    response = admin_client.post(url(type(welcome), "change", welcome.pk), data | moved)
    assert response.status_code == 302, response.context and response.context["problems"]
    assert list(welcome.steps.values_list("ref", flat=True)) == ["wait", "mail", "inbox"]
    assert welcome.steps.get(ref="inbox").templates.get().versions.count() == 1


def test_workflow_import_refuses_an_invalid_json_schema(admin_client, welcome):
    response = admin_client.post(url(type(welcome), "import"), {"json": json.dumps(
        {"key": "welcome", "name": "W", "data_schema": {"type": "nothing"}, "steps": []})})
    assert response.status_code == 200
    [error] = response.context["errors"]
    assert error.startswith("data_schema: Not a valid JSON Schema: ")


def template_post_data(**fields) -> dict:
    return {"body": "", "action_url": "", "avatar": ""} | fields


def test_saving_a_template_publishes_a_new_version_that_new_runs_render(
        admin_client, admin_user, api, welcome, run_tasks):
    template = inbox_template(welcome)
    response = admin_client.post(url(Template, "change", template.pk), template_post_data(
        body="Welcome, {{ recipient.name }}!\r\nSee you soon.", action_url="/start"))
    assert response.status_code == 302
    assert "Saved and published version 2." in message_texts(response)

    template.refresh_from_db()
    version = template.published_version
    assert (version.number, version.author) == (2, admin_user)
    assert version.fields == {"body": "Welcome, {{ recipient.name }}!\nSee you soon.",
                              "action_url": "/start"}
    assert list(template.versions.values_list("number", flat=True)) == [2, 1]

    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": [{"id": "u1", "name": "Ada"}], "data": {}})
    assert response.status_code == 202
    run_tasks()
    message = Message.objects.get(step_ref="inbox")
    assert message.content == {"body": "Welcome, Ada!\nSee you soon.", "action_url": "/start"}
    assert message.template_version == version


def test_saving_an_unchanged_template_creates_no_version(admin_client, welcome):
    template = inbox_template(welcome)
    response = admin_client.post(url(Template, "change", template.pk),
                                 template_post_data(body="Hi {{ recipient.name }}"))
    assert response.status_code == 302
    assert "Nothing changed: version 1 stays published." in message_texts(response)
    assert template.versions.count() == 1


@pytest.mark.parametrize("fields, field", [
    ({"body": "Hi {% if recipient.name %}"}, "body"),
    ({"body": "Hi {{ recipient.name "}, "body"),
    ({"body": "Hi", "avatar": "{{ recipient.avatar | }}"}, "avatar"),
])
def test_invalid_liquid_shows_a_form_error_and_creates_no_version(admin_client, welcome, fields,
                                                                  field):
    template = inbox_template(welcome)
    with pytest.raises(rendering.TemplateError) as expected:
        rendering.validate_fields("in_app", fields)
    response = admin_client.post(url(Template, "change", template.pk), template_post_data(**fields))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: [expected.value.message]}
    assert expected.value.message.startswith("Liquid syntax error: ")
    assert template.versions.count() == 1
    template.refresh_from_db()
    assert template.published_version.number == 1


def test_a_template_missing_its_required_field_shows_the_error_on_that_field(admin_client,
                                                                             welcome):
    template = Template.objects.get(step__ref="mail")
    response = admin_client.post(url(Template, "change", template.pk),
                                 {"subject": "", "html": "<p>hi</p>", "text": ""})
    assert response.context["adminform"].form.errors == {"subject": ["This field is required."]}
    assert template.versions.count() == 1


def test_adding_a_template_for_a_step_shows_its_channel_fields_and_publishes_version_1(
        admin_client, admin_user, welcome):
    step = welcome.steps.get(ref="mail")
    page = admin_client.get(f"{url(Template, 'add')}?step={step.pk}")
    form = page.context["adminform"].form
    assert list(form.fields) == ["step", "locale", "subject", "html", "text"]
    assert form.initial["step"] == str(step.pk)

    response = admin_client.post(f"{url(Template, 'add')}?step={step.pk}", {
        "step": step.pk, "locale": "fr", "subject": "Bonjour {{ recipient.name }}",
        "html": "<p>Bienvenue</p>", "text": ""})
    assert response.status_code == 302
    template = step.templates.get(locale="fr")
    assert template.published_version.number == 1
    assert template.published_version.author == admin_user
    assert template.fields == {"subject": "Bonjour {{ recipient.name }}",
                               "html": "<p>Bienvenue</p>"}


def test_adding_a_template_without_a_step_asks_for_the_fields_once_the_step_is_chosen(
        admin_client, welcome):
    page = admin_client.get(url(Template, "add"))
    form = page.context["adminform"].form
    assert list(form.fields) == ["step", "locale"]
    step_choices = [label for _, label in form.fields["step"].choices][1:]
    assert step_choices == ["welcome/inbox (In-app)", "welcome/mail (Email)"]

    step = welcome.steps.get(ref="inbox")
    response = admin_client.post(url(Template, "add"), {"step": step.pk, "locale": "de"})
    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.non_field_errors() == ["Fill in the fields of this In-app template, then save."]
    assert list(form.fields) == ["step", "locale", "body", "action_url", "avatar"]
    assert not step.templates.filter(locale="de").exists()

    response = admin_client.post(url(Template, "add"),
                                 {"step": step.pk, "locale": "de", "body": "Hallo",
                                  "action_url": "", "avatar": ""})
    assert response.status_code == 302
    assert step.templates.get(locale="de").fields == {"body": "Hallo"}


def test_adding_a_second_template_for_the_same_locale_is_refused(admin_client, welcome):
    step = welcome.steps.get(ref="inbox")
    response = admin_client.post(url(Template, "add"), {"step": step.pk, "locale": "en",
                                                        "body": "Again"})
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        "Template with this Step and Locale already exists."]
    assert inbox_template(welcome).versions.count() == 1


def test_template_page_lists_versions_read_only(admin_client, admin_user, welcome):
    template = inbox_template(welcome)
    admin_client.post(url(Template, "change", template.pk), template_post_data(body="v2"))
    response = admin_client.get(url(Template, "change", template.pk))
    form = response.context["adminform"].form
    assert list(form.fields) == ["body", "action_url", "avatar"]
    html = response.content.decode()
    v1 = template.versions.get(number=1)
    assert (f'<button type="submit" name="_publish_version" value="{v1.pk}" class="button">'
            "Publish (roll back to) v1</button>") in html
    assert f"<td>{admin_user}</td>" in html
    assert "<td>yes</td><td><strong>published</strong></td>" in html


def test_a_template_reader_sees_the_published_fields_and_no_publish_button(client, welcome):
    template = inbox_template(welcome)
    reader = User.objects.create_user("reader", password="pw", is_staff=True)
    reader.user_permissions.add(Permission.objects.get(codename="view_template"))
    client.force_login(reader)
    response = client.get(url(Template, "change", template.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "&quot;body&quot;: &quot;Hi {{ recipient.name }}&quot;" in html
    assert "_publish_version" not in html
    v1 = template.versions.get()
    assert client.post(url(Template, "change", template.pk),
                       {"_publish_version": v1.pk}).status_code == 403


def test_rollback_button_on_the_template_page_republishes_the_old_version(admin_client, welcome):
    template = inbox_template(welcome)
    admin_client.post(url(Template, "change", template.pk), template_post_data(body="v2"))
    v1 = template.versions.get(number=1)
    response = admin_client.post(url(Template, "change", template.pk),
                                 template_post_data(body="ignored", _publish_version=v1.pk))
    assert response.status_code == 302
    assert f"Published version 1 of “{template}”." in message_texts(response)
    template.refresh_from_db()
    assert template.published_version == v1
    assert template.versions.count() == 2


def test_rollback_action_republishes_the_old_version(admin_client, api, welcome, run_tasks):
    template = inbox_template(welcome)
    admin_client.post(url(Template, "change", template.pk), template_post_data(body="Version two"))
    v1 = template.versions.get(number=1)
    response = admin_client.post(url(TemplateVersion), {
        "action": "publish", "_selected_action": [v1.pk]}, follow=True)
    assert f"Published version 1 of “{template}”." in message_texts(response)
    template.refresh_from_db()
    assert template.published_version == v1

    api.post("/api/v1/workflows/welcome/trigger", {"recipients": [{"id": "u9", "name": "Cy"}]})
    run_tasks()
    assert Message.objects.get(step_ref="inbox").content == {"body": "Hi Cy"}


def test_rollback_action_refuses_two_versions_of_one_template(admin_client, welcome):
    template = inbox_template(welcome)
    admin_client.post(url(Template, "change", template.pk), template_post_data(body="Version two"),
                      follow=True)
    response = admin_client.post(url(TemplateVersion), {
        "action": "publish", "_selected_action": list(template.versions.values_list("pk",
                                                                                    flat=True))},
        follow=True)
    assert message_texts(response) == ["Select one version per template."]
    template.refresh_from_db()
    assert template.published_version.number == 2


def test_creating_an_api_key_shows_its_secret_once_and_stores_only_its_hash(admin_client):
    page = admin_client.get(url(ApiKey, "add"))
    assert list(page.context["adminform"].form.fields) == ["name", "tenant"]

    response = admin_client.post(url(ApiKey, "add"), {"name": "billing", "tenant": ""},
                                 follow=True)
    api_key = ApiKey.objects.get(name="billing")
    shown = [text for text in message_texts(response) if "secret" in text]
    [text] = shown
    match = re.fullmatch(r"The secret of API key “billing” is (\S+) — copy it now: it is shown "
                         r"only once and cannot be recovered\.", text)
    assert match, text
    secret = match.group(1)
    assert secret.startswith(f"{api_key.prefix}_")
    assert api_key.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())

    again = admin_client.get(url(ApiKey))
    assert secret not in again.content.decode()
    change = admin_client.get(url(ApiKey, "change", api_key.pk)).content.decode()
    assert secret not in change and api_key.secret_hash not in change

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/workflows").status_code == 200


def test_revoke_action_revokes_the_key(admin_client, api_key):
    key, secret = api_key
    response = admin_client.post(url(ApiKey), {"action": "revoke", "_selected_action": [key.pk]},
                                 follow=True)
    assert "Revoked 1 API key." in message_texts(response)
    key.refresh_from_db()
    assert key.revoked_at is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert client.get("/api/v1/workflows").status_code == 401


def test_workflow_import_refuses_a_file_too_large_or_not_utf8_or_unstorable_and_saves_nothing(
        admin_client, welcome, settings):
    """The import takes the API's JSON and holds it to the API's limits: no larger than a
    request body may be, UTF-8, and no text a column cannot store (a 500 on PostgreSQL)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    before = welcome.updated_at
    document = {"key": "welcome", "name": "W" * 2000, "steps": []}
    cases = [
        ({"file": SimpleUploadedFile("w.json", json.dumps(document).encode())},
         "The file is larger than 1000"),
        ({"file": SimpleUploadedFile("w.json", b'{"key": "welcome", "name": "\xff"}')},
         "The file is not UTF-8 text, which JSON must be."),
        ({"json": json.dumps({"key": "welcome", "name": "W\u0000", "steps": []})},
         "Not JSON: name: Text cannot contain NUL (\\u0000).."),
        ({"json": '{"key": "welcome", "name": "W", "steps": [], "x": NaN}'}, "Not JSON: "),
        ({"json": "[" * 100_000}, "Not JSON: nested too deeply."),
    ]
    for posted, problem in cases:
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000 if "larger" in problem else 2_621_440
        response = admin_client.post(url(type(welcome), "import"), posted)
        assert response.status_code == 200, posted
        [error] = response.context["errors"]
        assert error.startswith(problem), (error, problem)
        assert problem in response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")
    welcome.refresh_from_db()
    assert welcome.updated_at == before and welcome.name != "W"
