"""A step a published workflow's draft adds (notifications/workflow_versions.py,
draft_new_step…; admin/draft_templates.py): its templates are written into the draft in every
locale before any Step row exists, the diff shows them, the live version keeps running until
the draft is published, and publishing (or a rollback) makes or removes the step and its
templates together."""

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from notifications import publishing
from notifications.admin.versions import document_diff
from notifications.models import Message, Run, Step, Template, WorkflowVersion
from notifications.roles import EDITOR, PUBLISHER, roles_sync
from notifications.workflow_versions import (
    VersionError,
    draft_of,
    draft_save,
    draft_step_template_delete,
    draft_step_template_put,
    workflow_document,
)

from ..conftest import in_app_step

State = WorkflowVersion.State
MAIL_EN = {"subject": "Welcome, {{ recipient.name }}", "html": "<p>Plan: {{ data.plan }}</p>"}
MAIL_FR = {"subject": "Bienvenue, {{ recipient.name }}", "html": "<p>Offre : {{ data.plan }}</p>"}


@pytest.fixture(autouse=True)
def _roles(db):
    roles_sync()


def person(role: str, username: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def welcome(make_workflow):
    """Published as version 1: one in-app step."""
    return make_workflow("welcome", steps=[in_app_step(body="Hi {{ recipient.name }}")],
                         sample_data={"plan": "Starter"})


def add_mail_step(workflow, user, steps_extra=()):
    """The draft: the live version plus a new email step `mail` (no templates yet), and the
    sample data changed to a plan the live version never had."""
    document = workflow_document(workflow)
    document["steps"].append({"ref": "mail", "type": "email", "templates": {}})
    document["steps"].extend(steps_extra)
    document["sample_data"] = {"plan": "Pro"}
    return draft_save(workflow=workflow, document=document, user=user)


def trigger(api, run_tasks, recipient):
    response = api.post("/api/v1/workflows/welcome/trigger", {
        "recipients": [{"id": recipient, "name": recipient.title(),
                        "email": f"{recipient}@example.com", "locale": "fr"}],
        "data": {"plan": "Team"}})
    assert response.status_code == 202, response.content
    run_tasks()
    return Run.objects.get(recipient__external_id=recipient)


def test_a_new_steps_templates_live_in_the_draft_until_it_is_published_with_them(
        api, run_tasks, smtp, welcome):
    editor, publisher = person(EDITOR, "eve"), person(PUBLISHER, "pat")
    live = welcome.published_version
    add_mail_step(welcome, editor)
    for locale, fields in (("en", MAIL_EN), ("fr", MAIL_FR)):
        draft = draft_step_template_put(workflow=welcome, step_ref="mail", locale=locale,
                                        fields=fields, user=editor)
    assert draft.document["steps"][1] == {"ref": "mail", "type": "email",
                                          "templates": {"en": MAIL_EN, "fr": MAIL_FR}}
    assert list(draft.authors.all()) == [editor]
    # nothing of it is live: no Step row, no Template row
    assert not Step.objects.filter(ref="mail").exists()
    assert not Template.objects.filter(step__ref="mail").exists()

    # the diff shows the new step and both of its templates
    changed, same = document_diff(live.document, draft.document, "live", "draft")
    assert [(title, kind) for title, kind, _table in changed] == [
        ("Data schema and sample data", "changed"), ("Steps", "changed"),
        ("Template mail · en", "added"), ("Template mail · fr", "added")]
    table = dict((title, html) for title, _kind, html in changed)["Template mail · fr"]
    assert "Bienvenue,&nbsp;{{&nbsp;recipient.name&nbsp;}}" in table

    # a trigger before publishing runs the live version: the in-app step only
    before = trigger(api, run_tasks, "ada")
    assert before.workflow_version == live
    assert list(Message.objects.filter(run=before).values_list("step_ref", "channel")) == [
        ("inbox", "in_app")]
    assert smtp.messages == []

    published = publishing.workflow_version_publish(version=draft, user=publisher)
    assert (published.number, published.state) == (2, State.PUBLISHED)
    step = Step.objects.get(ref="mail")
    templates = {t.locale: t for t in Template.objects.filter(step=step)}
    assert {locale: t.fields for locale, t in templates.items()} == {"en": MAIL_EN,
                                                                     "fr": MAIL_FR}
    assert all(t.published_version.number == 1 for t in templates.values())
    welcome.refresh_from_db()
    assert published.document == workflow_document(welcome)
    assert welcome.sample_data == {"plan": "Pro"}

    after = trigger(api, run_tasks, "zoe")
    assert after.workflow_version == published
    assert sorted(Message.objects.filter(run=after).values_list("step_ref", flat=True)) == [
        "inbox", "mail"]
    mail = smtp.wait_for(1)[-1]
    assert (mail["To"], mail["Subject"]) == ("Zoe <zoe@example.com>", "Bienvenue, Zoe")
    assert "Offre : Team" in mail.get_body(("html",)).get_content()

    # rolling back to version 1 removes the step and its templates together; rolling
    # forward to version 2 brings both back
    publishing.workflow_version_rollback(version=live, user=publisher)
    assert not Step.objects.filter(ref="mail").exists()
    assert not Template.objects.filter(step__ref="mail").exists()
    publishing.workflow_version_rollback(version=published, user=publisher)
    assert {t.locale: t.fields for t in Template.objects.filter(step__ref="mail")} == {
        "en": MAIL_EN, "fr": MAIL_FR}


def test_the_draft_keeps_a_new_steps_templates_through_more_builder_saves(client, welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    draft_step_template_put(workflow=welcome, step_ref="mail", locale="en", fields=MAIL_EN,
                            user=editor)
    client.force_login(editor)
    response = client.post(reverse("admin:notifications_workflow_change", args=[welcome.pk]), {
        "name": "Welcome aboard", "default_locale": "en", "active": "on",
        "steps-0-type": "in_app", "steps-0-ref": "inbox", "steps-0-original": "inbox",
        "steps-1-type": "email", "steps-1-ref": "mail", "steps-1-original": "mail",
        "_save_draft": "1"})
    assert response.status_code == 302
    draft = draft_of(welcome)
    assert draft.document["name"] == "Welcome aboard"
    assert draft.document["steps"][1]["templates"] == {"en": MAIL_EN}


def test_a_route_steps_new_templates_are_per_channel(welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor, steps_extra=[{
        "ref": "ask", "type": "route", "config": {"channels": ["sms", "email"]},
        "templates": {"sms": {"en": {"text": "Hi"}}, "email": {"en": MAIL_EN}}}])
    draft = draft_step_template_put(workflow=welcome, step_ref="ask", channel="sms",
                                    locale="fr", fields={"text": "Salut"}, user=editor)
    assert draft.document["steps"][2]["templates"]["sms"] == {"en": {"text": "Hi"},
                                                              "fr": {"text": "Salut"}}
    with pytest.raises(VersionError) as caught:
        draft_step_template_put(workflow=welcome, step_ref="ask", channel="push", locale="fr",
                                fields={"title": "x"}, user=editor)
    assert (caught.value.field, caught.value.message) == (
        "channel", "Expected one of the route's channels: sms, email.")


@pytest.mark.parametrize(("ref", "locale", "fields", "field", "message"), [
    ("mail", "english!", MAIL_EN, "locale", "Expected a locale like 'en' or 'pt-BR'."),
    ("mail", "en", {"html": "<p>Hi</p>"}, "subject", "This field is required."),
    ("mail", "en", {"subject": "{% if %}", "html": "x"}, "subject",
     "Liquid syntax error: missing expression"),
    ("inbox", "en", {"body": "Hi"}, "step",
     "The step “inbox” is live: edit its templates in the template editor."),
    ("nope", "en", MAIL_EN, "step", "The draft has no step “nope”."),
    ("wait", "en", MAIL_EN, "step", "A delay step has no templates."),
])
def test_bad_templates_for_a_new_step_are_refused_naming_the_field(
        welcome, ref, locale, fields, field, message):
    editor = person(EDITOR, "eve")
    draft = add_mail_step(welcome, editor, steps_extra=[
        {"ref": "wait", "type": "delay", "config": {"duration": "1h"}}])
    with pytest.raises(VersionError) as caught:
        draft_step_template_put(workflow=welcome, step_ref=ref, locale=locale, fields=fields,
                                user=editor)
    assert (caught.value.field, caught.value.message.split(" (")[0]) == (field, message)
    assert draft_of(welcome).document == draft.document


def test_a_new_steps_template_is_taken_out_of_the_draft(welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    for locale, fields in (("en", MAIL_EN), ("fr", MAIL_FR)):
        draft_step_template_put(workflow=welcome, step_ref="mail", locale=locale,
                                fields=fields, user=editor)
    draft = draft_step_template_delete(workflow=welcome, step_ref="mail", locale="en",
                                       user=editor)
    assert draft.document["steps"][1]["templates"] == {"fr": MAIL_FR}
    with pytest.raises(VersionError) as caught:
        draft_step_template_delete(workflow=welcome, step_ref="mail", locale="en", user=editor)
    assert (caught.value.field, caught.value.message) == (
        "locale", "The draft's step “mail” has no en template.")


def test_without_a_draft_there_is_no_new_step_to_write(welcome):
    with pytest.raises(VersionError) as caught:
        draft_step_template_put(workflow=welcome, step_ref="mail", locale="en", fields=MAIL_EN,
                                user=person(EDITOR, "eve"))
    assert caught.value.code == "no_draft"


# --- The admin's editor of a new step's templates ----------------------------------------------

def editor_url(workflow, ref="mail", **query):
    url = reverse("admin:notifications_workflow_draft_template", args=[workflow.pk, ref])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def test_the_builder_links_a_new_step_to_its_draft_template_editor(client, welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    draft_step_template_put(workflow=welcome, step_ref="mail", locale="en", fields=MAIL_EN,
                            user=editor)
    client.force_login(editor)
    page = client.get(reverse("admin:notifications_workflow_change",
                              args=[welcome.pk])).content.decode()
    assert f'<a href="{editor_url(welcome, locale="en")}">en</a>: new in this draft' in page
    assert f'<a href="{editor_url(welcome)}">Add a template</a>' in page


def test_an_editor_writes_a_new_steps_template_in_the_admin_and_bad_input_is_a_400(
        client, welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    client.force_login(editor)
    page = client.get(editor_url(welcome))
    assert page.status_code == 200
    assert 'name="locale"' in page.content.decode() and 'name="subject"' in page.content.decode()

    response = client.post(editor_url(welcome), {"locale": "fr", "html": "<p>x</p>"})
    assert response.status_code == 400
    assert response.context["errors"] == {"subject": "This field is required."}
    assert draft_of(welcome).document["steps"][1]["templates"] == {}

    response = client.post(editor_url(welcome), {"locale": "fr", **MAIL_FR})
    assert response.status_code == 302
    assert response["Location"] == editor_url(welcome, locale="fr")
    assert draft_of(welcome).document["steps"][1]["templates"] == {"fr": MAIL_FR}
    page = client.get(response["Location"]).content.decode()
    assert "Bienvenue, {{ recipient.name }}</textarea>" in page
    response = client.post(editor_url(welcome), {"locale": "fr", **MAIL_EN})  # added again
    assert response.status_code == 400
    assert response.context["errors"] == {"locale": (
        "The draft has a fr template of this step already: open it from the list above to "
        "change it.")}
    response = client.post(editor_url(welcome, locale="fr"), {**MAIL_FR, "subject": "Salut"})
    assert response.status_code == 302
    assert draft_of(welcome).document["steps"][1]["templates"]["fr"]["subject"] == "Salut"
    response = client.post(editor_url(welcome, locale="fr"), {"_delete": "1"})
    assert response["Location"] == editor_url(welcome)
    assert draft_of(welcome).document["steps"][1]["templates"] == {}

    # a step the live version has is not edited here; an unknown one is not found
    assert client.get(editor_url(welcome, "inbox")).status_code == 404
    assert client.get(editor_url(welcome, "nope")).status_code == 404
    assert client.get(editor_url(welcome, locale="de")).status_code == 404


def test_the_preview_of_a_new_steps_template_uses_the_drafts_sample_data(client, welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    client.force_login(editor)
    url = reverse("admin:notifications_workflow_draft_template_preview",
                  args=[welcome.pk, "mail"])
    response = client.post(url, {"channel": "email", "locale": "en", **MAIL_EN})
    assert response.status_code == 200
    body = response.json()
    assert body["rendered"]["subject"] == "Welcome, eve"
    assert "Plan: Pro" in body["rendered"]["html"]  # the draft's sample data, not "Starter"
    response = client.post(url, {"channel": "sms", "locale": "en", "text": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_request", "detail": "This step's templates are for email.",
        "fields": {"channel": ["This step's templates are for email."]}}
    response = client.post(reverse("admin:notifications_workflow_draft_template_preview",
                                   args=[welcome.pk, "inbox"]), {"locale": "en"})
    assert response.status_code == 404
    assert response.json()["fields"] == {"step": [
        "The step “inbox” is live: edit its templates in the template editor."]}
    assert client.get(url).status_code == 405


def test_a_test_send_of_a_new_steps_template_reaches_the_editor(client, smtp, welcome):
    editor = person(EDITOR, "eve")
    add_mail_step(welcome, editor)
    client.force_login(editor)
    url = reverse("admin:notifications_workflow_draft_template_send_test",
                  args=[welcome.pk, "mail"])
    response = client.post(url, {"channel": "email", "locale": "en", **MAIL_EN})
    assert response.status_code == 200, response.content
    assert response.json()["detail"] == "Sent to eve@example.com through smtp."
    mail = smtp.wait_for(1)[-1]
    assert (mail["To"], mail["Subject"]) == ("eve <eve@example.com>", "Welcome, eve")
    assert "Plan: Pro" in mail.get_body(("html",)).get_content()
    message = Message.objects.get()
    assert (message.step, message.step_ref) == (None, "mail")
    assert not Step.objects.filter(ref="mail").exists()
