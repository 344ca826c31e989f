"""Draft → review → publish for workflows (notifications/workflow_versions.py, publishing.py,
admin/versions.py): the live version runs until a draft is published, every published version
is kept, a rollback republishes an old one, and a run records the version it ran."""

import json
import threading

import pytest
from django.contrib.auth.models import Group, User
from django.db import close_old_connections, connection
from django.urls import reverse

from notifications import publishing
from notifications.admin.builder.diagram import flow_html
from notifications.admin.versions import document_diff, document_sections
from notifications.models import Run, Step, Template, Workflow, WorkflowVersion
from notifications.roles import EDITOR, PUBLISHER, roles_sync
from notifications.workflow_versions import (
    VersionError,
    draft_of,
    draft_save,
    draft_submit,
    workflow_document,
)

from ..conftest import email_step, in_app_step

State = WorkflowVersion.State


@pytest.fixture(autouse=True)
def _roles(db):
    """The migration's role groups (a transactional test elsewhere may have emptied them)."""
    roles_sync()


def person(role: str, username: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def builder_url(workflow) -> str:
    return reverse("admin:notifications_workflow_change", args=[workflow.pk])


def version_url(workflow, number) -> str:
    return reverse("admin:notifications_workflow_version", args=[workflow.pk, number])


def action(client, workflow, number, name, **extra):
    return client.post(reverse("admin:notifications_workflow_version_action",
                               args=[workflow.pk, number]), {"action": name, **extra})


WELCOME_FORM = {  # the builder's form for `welcome`: one in-app step, then an email
    "name": "Welcome", "default_locale": "en", "active": "on",
    "steps-0-type": "in_app", "steps-0-ref": "inbox", "steps-0-original": "inbox",
    "steps-1-type": "email", "steps-1-ref": "mail", "steps-1-original": "mail",
}


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", steps=[in_app_step(body="Hi"), email_step(subject="Hello")])


def trigger(api, key="welcome", recipient="ada"):
    response = api.post(f"/api/v1/workflows/{key}/trigger", {"recipients": [recipient]})
    return response


# --- The API's PUT publishes, and is recorded -------------------------------------------------

def test_a_put_publishes_a_version_and_the_same_put_again_records_nothing(api):
    body = {"name": "Welcome", "steps": [{"ref": "inbox", "type": "in_app",
                                          "templates": {"en": {"body": "Hi"}}}]}
    assert api.put("/api/v1/workflows/welcome", body).status_code == 201
    workflow = Workflow.objects.get(key="welcome")
    first = workflow.published_version
    assert (first.number, first.state, first.source) == (1, State.PUBLISHED, "api")
    assert first.note.startswith("PUT with the API key tests")
    assert first.document == {**api.get("/api/v1/workflows/welcome").json(), "sample_data": {}}

    assert api.put("/api/v1/workflows/welcome", body).status_code == 200
    assert workflow.versions.count() == 1

    body["steps"][0]["templates"]["en"]["body"] = "Hello"
    api.put("/api/v1/workflows/welcome", body)
    workflow.refresh_from_db()
    assert [(v.number, v.state) for v in workflow.versions.all()] == [
        (2, State.PUBLISHED), (1, State.SUPERSEDED)]
    assert workflow.published_version.number == 2


def test_a_run_records_the_version_live_when_it_was_triggered(api, welcome):
    assert trigger(api).status_code == 202
    run = Run.objects.get()
    assert run.workflow_version == welcome.published_version


# --- Drafts: the live version keeps running -----------------------------------------------------

def test_an_editors_builder_save_is_a_draft_and_the_live_version_keeps_running(
        client, api, welcome):
    editor = person(EDITOR, "eve")
    client.force_login(editor)
    live = welcome.published_version
    form = {**WELCOME_FORM, "steps-1-ref": "letter"}  # the email step renamed
    response = client.post(builder_url(welcome), form)
    assert response.status_code == 302
    draft = draft_of(welcome)
    assert (draft.number, draft.state, draft.base_number) == (2, State.DRAFT, 1)
    assert list(draft.authors.all()) == [editor]
    assert [s["ref"] for s in draft.document["steps"]] == ["inbox", "letter"]
    # the renamed step keeps its template in the draft
    assert draft.document["steps"][1]["templates"] == {"en": {"subject": "Hello",
                                                              "html": "<p>{{ data.body }}</p>"}}
    # the rows (the live version) are untouched, and runs still use them
    assert list(Step.objects.values_list("ref", flat=True).order_by("position")) == [
        "inbox", "mail"]
    welcome.refresh_from_db()
    assert welcome.published_version == live
    trigger(api)
    assert Run.objects.get().workflow_version == live

    # the builder shows the draft, not the live version
    page = client.get(builder_url(welcome)).content.decode()
    assert 'name="steps-1-ref" value="letter"' in page
    assert "You are editing the draft, version 2 (Draft)." in page
    assert 'name="_save"' not in page  # an Editor cannot publish


def test_an_editor_submits_and_cannot_publish_then_a_publisher_publishes(client, api,
                                                                          welcome):
    editor, publisher = person(EDITOR, "eve"), person(PUBLISHER, "pat")
    client.force_login(editor)
    client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    draft = draft_of(welcome)

    page = client.get(version_url(welcome, 2)).content.decode()
    assert 'value="submit"' in page and 'value="publish"' not in page
    # the side-by-side diff: the steps, and the template that moved with its step
    assert '<h3>Steps <span class="wv-kind wv-changed">changed</span></h3>' in page
    assert "<td nowrap=\"nowrap\">2.&nbsp;l<span class=\"diff_add\">etter</span>" in page
    assert "<h3>Template letter · en " in page and "<h3>Template mail · en " in page
    assert action(client, welcome, 2, "publish").status_code == 403
    action(client, welcome, 2, "submit")
    draft.refresh_from_db()
    assert (draft.state, draft.submitted_by) == (State.IN_REVIEW, editor)

    client.force_login(publisher)
    page = client.get(version_url(welcome, 2)).content.decode()
    assert "Approve and publish" in page
    response = action(client, welcome, 2, "publish")
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.state, draft.published_by, draft.approved_by) == (
        State.PUBLISHED, publisher, publisher)
    assert WorkflowVersion.objects.get(workflow=welcome, number=1).state == State.SUPERSEDED
    assert list(Step.objects.values_list("ref", flat=True).order_by("position")) == [
        "inbox", "letter"]
    assert Template.objects.get(step__ref="letter").fields["subject"] == "Hello"
    assert draft.document == workflow_document(welcome)
    trigger(api)
    assert Run.objects.get().workflow_version == draft


def test_a_publisher_saves_and_publishes_at_once_when_no_review_is_required(client, welcome):
    client.force_login(person(PUBLISHER, "pat"))
    response = client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    assert response.status_code == 302
    welcome.refresh_from_db()
    assert welcome.published_version.number == 2
    assert draft_of(welcome) is None
    assert Step.objects.filter(ref="letter").exists()


def test_a_template_draft_goes_into_the_workflows_draft_and_is_published_with_it(
        client, welcome):
    template = Template.objects.get(step__ref="mail")
    client.force_login(person(EDITOR, "eve"))
    response = client.post(reverse("admin:notifications_template_change", args=[template.pk]),
                           {"subject": "Welcome aboard", "html": "<p>Hi</p>",
                            "_save_draft": "1"})
    assert response.status_code == 302
    template.refresh_from_db()
    assert template.fields["subject"] == "Hello"  # live is unchanged
    draft = draft_of(welcome)
    assert draft.document["steps"][1]["templates"]["en"] == {"subject": "Welcome aboard",
                                                             "html": "<p>Hi</p>"}
    changed, _ = document_diff(welcome.published_version.document, draft.document, "live",
                               "draft")
    assert [(title, kind) for title, kind, _table in changed] == [
        ("Template mail · en", "changed")]

    publishing.workflow_version_publish(version=draft, user=person(PUBLISHER, "pat"))
    template.refresh_from_db()
    assert template.fields == {"subject": "Welcome aboard", "html": "<p>Hi</p>"}
    assert template.published_version.number == 2  # the editor's version, not a copy


def test_a_template_published_on_its_own_is_recorded_and_kept_in_the_draft(client, welcome):
    client.force_login(person(EDITOR, "eve"))
    client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    template = Template.objects.get(step__ref="inbox")
    client.force_login(person(PUBLISHER, "pat"))
    client.post(reverse("admin:notifications_template_change", args=[template.pk]),
                {"body": "Hi there", "_save": "1"})
    welcome.refresh_from_db()
    assert (welcome.published_version.number, welcome.published_version.source) == (
        3, "template")
    draft = draft_of(welcome)
    assert draft.document["steps"][0]["templates"]["en"] == {"body": "Hi there"}
    assert draft.document["steps"][1]["ref"] == "letter"


def test_saving_what_is_live_opens_no_draft(client, welcome):
    client.force_login(person(EDITOR, "eve"))
    client.post(builder_url(welcome), {**WELCOME_FORM, "_save_draft": "1"})
    assert draft_of(welcome) is None
    assert welcome.versions.count() == 1


# --- Review required ----------------------------------------------------------------------------

def test_with_review_required_the_author_cannot_publish_their_own_draft(client, welcome,
                                                                        clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    author, other = person(PUBLISHER, "pat"), person(PUBLISHER, "quinn")
    client.force_login(author)
    page = client.get(builder_url(welcome)).content.decode()
    assert 'name="_save"' not in page and 'name="_save_draft"' in page
    client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    draft = draft_of(welcome)
    assert draft.state == State.DRAFT  # saved, not published

    with pytest.raises(VersionError, match="not been submitted for review"):
        publishing.workflow_version_publish(version=draft, user=other)
    action(client, welcome, draft.number, "submit")
    response = action(client, welcome, draft.number, "publish")
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.state == State.IN_REVIEW
    page = client.get(version_url(welcome, draft.number)).content.decode()
    assert "You changed this draft: someone else must approve and publish it." in page

    client.force_login(other)
    action(client, welcome, draft.number, "publish")
    draft.refresh_from_db()
    assert (draft.state, draft.approved_by) == (State.PUBLISHED, other)


def test_with_review_required_templates_are_not_published_on_their_own(client, welcome,
                                                                       clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    template = Template.objects.get(step__ref="mail")
    client.force_login(person(PUBLISHER, "pat"))
    client.post(reverse("admin:notifications_template_change", args=[template.pk]),
                {"subject": "Changed", "html": "<p>Hi</p>", "_save": "1"})
    template.refresh_from_db()
    assert template.fields["subject"] == "Hello"
    assert draft_of(welcome).document["steps"][1]["templates"]["en"]["subject"] == "Changed"


def test_asking_for_changes_sends_the_draft_back_and_an_edit_withdraws_a_submission(
        client, welcome):
    editor = person(EDITOR, "eve")
    client.force_login(editor)
    client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    draft = draft_of(welcome)
    draft_submit(version=draft, user=editor)
    client.force_login(person(PUBLISHER, "pat"))
    action(client, welcome, draft.number, "request_changes", review_note="Say why.")
    draft.refresh_from_db()
    assert (draft.state, draft.review_note) == (State.DRAFT, "Say why.")

    draft_submit(version=draft, user=editor)
    draft_save(workflow=welcome, document=draft.document, user=editor)
    draft.refresh_from_db()
    assert (draft.state, draft.submitted_at) == (State.DRAFT, None)


def test_a_draft_can_be_discarded_and_the_live_version_stays(client, welcome):
    client.force_login(person(EDITOR, "eve"))
    client.post(builder_url(welcome), {**WELCOME_FORM, "steps-1-ref": "letter"})
    number = draft_of(welcome).number
    action(client, welcome, number, "discard")
    assert draft_of(welcome) is None
    assert welcome.versions.get().state == State.PUBLISHED


# --- A new workflow, never published ------------------------------------------------------------

def test_a_new_workflow_is_refused_by_triggers_until_it_is_published(client, api):
    client.force_login(person(EDITOR, "eve"))
    response = client.post(reverse("admin:notifications_workflow_add"),
                           {"key": "invoice", "name": "Invoice", "default_locale": "en",
                            "active": "on", "steps-0-type": "in_app", "steps-0-ref": "inbox"})
    assert response.status_code == 302
    workflow = Workflow.objects.get(key="invoice")
    assert workflow.published_version is None
    assert draft_of(workflow).state == State.DRAFT
    response = trigger(api, "invoice")
    assert response.status_code == 422
    assert response.json() == {
        "error": "workflow_not_published",
        "detail": "The workflow 'invoice' has a draft but was never published: a Publisher "
                  "publishes it in the admin."}

    page = client.get(builder_url(workflow)).content.decode()
    assert "This workflow has never been published" in page
    draft = draft_of(workflow)
    draft_submit(version=draft, user=User.objects.get(username="eve"))
    publishing.workflow_version_publish(version=draft, user=person(PUBLISHER, "pat"))
    assert trigger(api, "invoice").status_code == 202
    assert Run.objects.get().workflow_version.number == 1


def test_a_workflow_from_before_versions_is_recorded_before_its_first_draft(client, db):
    workflow = Workflow.objects.create(key="old", name="Old")
    Step.objects.create(workflow=workflow, ref="inbox", type="in_app")
    client.force_login(person(EDITOR, "eve"))
    client.post(builder_url(workflow), {"name": "Old", "default_locale": "en", "active": "on",
                                        "steps-0-type": "in_app", "steps-0-ref": "inbox2",
                                        "steps-0-original": "inbox"})
    assert [(v.number, v.state, v.source) for v in workflow.versions.all()] == [
        (2, State.DRAFT, "admin"), (1, State.PUBLISHED, "snapshot")]
    assert workflow.steps.get().ref == "inbox"


# --- Rollback -----------------------------------------------------------------------------------

def test_rollback_publishes_an_old_version_again_as_a_new_one(client, api, welcome):
    body = api.get("/api/v1/workflows/welcome").json()
    body["steps"] = body["steps"][:1]
    api.put("/api/v1/workflows/welcome", body)
    assert list(Step.objects.values_list("ref", flat=True)) == ["inbox"]
    client.force_login(person(PUBLISHER, "pat"))
    page = client.get(reverse("admin:notifications_workflow_versions",
                              args=[welcome.pk])).content.decode()
    assert "Roll back to v1" in page
    response = action(client, welcome, 1, "rollback")
    assert response.status_code == 302
    welcome.refresh_from_db()
    live = welcome.published_version
    assert (live.number, live.source, live.note) == (3, "rollback", "Rolled back to version 1.")
    assert live.document == WorkflowVersion.objects.get(workflow=welcome, number=1).document
    assert list(Step.objects.values_list("ref", flat=True).order_by("position")) == [
        "inbox", "mail"]
    assert [v.state for v in welcome.versions.all()] == [State.PUBLISHED, State.SUPERSEDED,
                                                        State.SUPERSEDED]


def test_an_editor_cannot_roll_back(client, api, welcome):
    api.put("/api/v1/workflows/welcome", {"name": "Renamed", "steps": []})
    client.force_login(person(EDITOR, "eve"))
    assert action(client, welcome, 1, "rollback").status_code == 403
    welcome.refresh_from_db()
    assert welcome.published_version.number == 2


# --- Concurrency (PostgreSQL: two transactions at once) -----------------------------------------

# The role groups and the content-type cache a flush disturbs are restored for every database
# test by tests/conftest.py; serialized_rollback would re-insert content types the flush's
# post_migrate has already re-created (a duplicate key).
@pytest.mark.django_db(transaction=True)
def test_two_publishers_publishing_one_draft_at_once_publish_it_once(make_workflow):
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL")
    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi")])
    editor = person(EDITOR, "eve")
    document = {**workflow.published_version.document, "name": "Welcome 2"}
    draft = draft_save(workflow=workflow, document=document, user=editor)
    publishers = [person(PUBLISHER, f"p{i}") for i in range(2)]
    barrier, outcomes = threading.Barrier(2), []

    def publish(user):
        try:
            barrier.wait()
            publishing.workflow_version_publish(version=draft, user=user)
            outcomes.append("published")
        except VersionError as exc:
            outcomes.append(exc.code)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=publish, args=(user,)) for user in publishers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["not_publishable", "published"]
    assert [(v.number, v.state) for v in workflow.versions.all()] == [
        (2, State.PUBLISHED), (1, State.SUPERSEDED)]
    workflow.refresh_from_db()
    assert workflow.name == "Welcome 2" and workflow.published_version.number == 2


# --- JSON import in the admin: a draft, as the builder saves -----------------------------------

def import_json(client, body: dict, **buttons):
    return client.post(reverse("admin:notifications_workflow_import"),
                       {"json": json.dumps(body), **buttons})


def test_an_editors_json_import_is_a_draft_they_cannot_publish(client, api, welcome):
    editor = person(EDITOR, "eve")
    client.force_login(editor)
    live = welcome.published_version
    body = api.get("/api/v1/workflows/welcome").json()
    body["steps"][1]["ref"] = "letter"
    body["steps"][1]["templates"]["en"]["subject"] = "Imported"
    page = client.get(reverse("admin:notifications_workflow_import")).content.decode()
    assert 'name="_save"' not in page and 'name="_save_draft"' in page
    response = import_json(client, body, _save="1")  # as if the Publisher's button were there
    assert response.status_code == 302
    welcome.refresh_from_db()
    assert welcome.published_version == live
    assert list(Step.objects.values_list("ref", flat=True).order_by("position")) == [
        "inbox", "mail"]
    assert Template.objects.get(step__ref="mail").fields["subject"] == "Hello"
    draft = draft_of(welcome)
    assert (draft.state, draft.source, draft.note, list(draft.authors.all())) == (
        State.DRAFT, "import", "Imported from JSON in the admin.", [editor])
    assert draft.document == {**body, "sample_data": {}}
    assert action(client, welcome, draft.number, "submit").status_code == 302
    assert action(client, welcome, draft.number, "publish").status_code == 403
    draft.refresh_from_db()
    assert draft.state == State.IN_REVIEW
    trigger(api)
    assert Run.objects.get().workflow_version == live


def test_an_editors_import_of_a_new_workflow_is_refused_by_triggers_until_published(
        client, api):
    client.force_login(person(EDITOR, "eve"))
    body = {"key": "invoice", "name": "Invoice",
            "steps": [{"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Due"}}}]}
    assert import_json(client, body).status_code == 302
    workflow = Workflow.objects.get(key="invoice")
    assert workflow.published_version is None
    assert (draft_of(workflow).state, draft_of(workflow).source) == (State.DRAFT, "import")
    assert trigger(api, "invoice").status_code == 422


def test_with_review_required_the_importer_cannot_publish_their_own_import(
        client, api, welcome, clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    author, other = person(PUBLISHER, "pat"), person(PUBLISHER, "quinn")
    client.force_login(author)
    body = api.get("/api/v1/workflows/welcome").json() | {"name": "Imported welcome"}
    page = client.get(reverse("admin:notifications_workflow_import")).content.decode()
    assert 'name="_save"' not in page
    assert import_json(client, body, _save="1").status_code == 302
    welcome.refresh_from_db()
    assert (welcome.name, welcome.published_version.number) == ("Welcome", 1)
    draft = draft_of(welcome)
    action(client, welcome, draft.number, "submit")
    action(client, welcome, draft.number, "publish")
    draft.refresh_from_db()
    assert draft.state == State.IN_REVIEW
    page = client.get(version_url(welcome, draft.number)).content.decode()
    assert "You changed this draft: someone else must approve and publish it." in page

    client.force_login(other)
    action(client, welcome, draft.number, "publish")
    welcome.refresh_from_db()
    assert (welcome.name, welcome.published_version.number, welcome.published_version.source) \
        == ("Imported welcome", 2, "import")


def test_a_publisher_imports_and_publishes_at_once_or_keeps_a_draft(client, api, welcome):
    client.force_login(person(PUBLISHER, "pat"))
    page = client.get(reverse("admin:notifications_workflow_import")).content.decode()
    assert 'name="_save"' in page and 'name="_save_draft"' in page
    body = api.get("/api/v1/workflows/welcome").json()
    assert import_json(client, body | {"name": "Kept as a draft"},
                       _save_draft="1").status_code == 302
    welcome.refresh_from_db()
    assert (welcome.name, draft_of(welcome).document["name"]) == ("Welcome", "Kept as a draft")
    assert import_json(client, body | {"name": "Published"}, _save="1").status_code == 302
    welcome.refresh_from_db()
    assert (welcome.name, welcome.published_version.source, draft_of(welcome)) == (
        "Published", "import", None)
    assert api.get("/api/v1/workflows/welcome").json() == body | {"name": "Published"}


# --- The diff says conditions in the diagram's words -------------------------------------------

CONDITIONAL_STEPS = [
    {"ref": "inbox", "type": "in_app"},
    {"ref": "mail", "type": "email", "conditions": {"all": [
        {"path": "data.amount", "op": "gte", "value": 1000},
        {"any": [{"path": "data.plan", "op": "eq", "value": "pro"},
                 {"path": "recipient.email", "op": "exists"}]}]},
     "unless": {"step": "inbox", "is": "read"}},
    {"ref": "split", "type": "branch", "config": {},
     "branches": [{"name": "big", "conditions": {"any": [
         {"path": "data.amount", "op": "gt", "value": 5000}]},
                   "steps": [{"ref": "text", "type": "sms"}]}],
     "default": {"steps": []}},
]


def test_the_diff_says_conditions_unless_and_branches_in_the_diagrams_words():
    steps = document_sections({"name": "W", "steps": CONDITIONAL_STEPS})["Steps"]
    assert steps.splitlines() == [
        "1. inbox (in_app)",
        "2. mail (email)",
        "   only if data.amount ≥ 1000 and (data.plan is pro or recipient.email is set)",
        "   skipped if inbox has been read",
        "3. split (branch)",
        "   branch big if data.amount > 5000",
        "      1. text (sms)",
        "   otherwise",
    ]
    diagram = flow_html(CONDITIONAL_STEPS)
    for words in ("only if data.amount ≥ 1000 and (data.plan is pro or recipient.email is set)",
                  "skipped if inbox has been read", "if data.amount &gt; 5000"):
        assert words in diagram


def test_the_diffs_words_are_in_the_admins_language():
    from django.utils import translation

    with translation.override("de"):
        steps = document_sections({"name": "W", "steps": CONDITIONAL_STEPS})["Schritte"]
    lines = steps.splitlines()
    assert lines[5].startswith("   Zweig big ") and lines[7] == "   sonst", lines


def test_a_drafts_page_shows_a_changed_condition_in_words(client, welcome):
    client.force_login(person(EDITOR, "eve"))
    document = workflow_document(welcome)
    document["steps"][1]["conditions"] = {"all": [
        {"path": "data.plan", "op": "in", "value": ["pro", "team"]}]}
    draft = draft_save(workflow=welcome, document=document, user=None)
    page = client.get(version_url(welcome, draft.number)).content.decode()
    assert ('<span class="diff_add">&nbsp;&nbsp;&nbsp;only&nbsp;if&nbsp;data.plan&nbsp;is&nbsp;'
            'one&nbsp;of&nbsp;pro,&nbsp;team</span>') in page
    assert "&quot;op&quot;" not in page and '"op"' not in page
