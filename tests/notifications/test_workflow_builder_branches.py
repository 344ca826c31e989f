"""The workflow builder's digest, branch, route and approval steps as fields and back, and who may
save through it."""

import json

import pytest
from django.urls import reverse

from notifications.admin.builder import convert
from notifications.admin.builder.declarations import KINDS, Problems
from notifications.models import Workflow

from ..conftest import in_app_step
from .workflow_builder_support import INVOICE_FORM, change_url, posted, steps_of

# --- Digest and branch steps ------------------------------------------------------------------

BRANCH_FORM = {
    "name": "Branchy", "default_locale": "en", "active": "on",
    "steps-0-type": "digest", "steps-0-ref": "batch", "steps-0-window_amount": "",
    "steps-0-window_unit": "minutes", "steps-0-daily": "09:00", "steps-0-key": "data.thread_id",
    "steps-0-max_events": "50", "steps-0-skip_read": "on",
    "steps-1-type": "branch", "steps-1-ref": "size",
    "steps-1-branches-0-name": "big", "steps-1-branches-0-when-mode": "all",
    "steps-1-branches-0-when-items-0-path": "data.amount",
    "steps-1-branches-0-when-items-0-op": "gte", "steps-1-branches-0-when-items-0-value": "1000",
    "steps-1-branches-0-steps-0-type": "sms", "steps-1-branches-0-steps-0-ref": "text",
    "steps-1-branches-0-steps-1-type": "email", "steps-1-branches-0-steps-1-ref": "big_mail",
    "steps-1-branches-0-steps-1-unless_step": "text",
    "steps-1-branches-0-steps-1-unless_is": "delivered",
    "steps-1-default-steps-0-type": "in_app", "steps-1-default-steps-0-ref": "inbox",
}
BRANCH_STEPS = [
    {"ref": "batch", "type": "digest", "config": {
        "window": {"daily": "09:00"}, "key": "data.thread_id", "max_events": 50,
        "skip_read": True}},
    {"ref": "size", "type": "branch", "branches": [
        {"name": "big", "conditions": {"all": [{"path": "data.amount", "op": "gte",
                                                "value": 1000}]},
         "steps": [{"ref": "text", "type": "sms"},
                   {"ref": "big_mail", "type": "email",
                    "unless": {"step": "text", "is": "delivered"}}]}],
     "default": {"steps": [{"ref": "inbox", "type": "in_app"}]}},
]


def test_digest_and_branch_fields_become_the_apis_json():
    problems = Problems()
    steps = convert.strip_originals(convert.steps_from_form(
        convert.form_tree(posted(BRANCH_FORM))["steps"], "steps-", problems))
    assert not problems
    assert steps == BRANCH_STEPS


@pytest.mark.parametrize("window", [{"minutes": 5}, {"daily": "09:00"},
                                    {"weekly": {"day": "mon", "time": "09:00"}}])
def test_a_digest_window_shown_as_fields_posts_back_the_same(window):
    step = {"ref": "d", "type": "digest", "config": {"window": window, "first_at_once": True}}
    values, extra = convert.step_values(step, KINDS["digest"])
    assert extra == {}
    fields = {f"steps-0-{name}": ("on" if value else "") if isinstance(value, bool) else value
              for name, value in values.items()}
    steps, problems = steps_of(fields)
    assert not problems
    assert steps == [step]


@pytest.mark.parametrize(("path", "field"), [
    ("steps[1].branches[0].steps[1].unless.step", "steps-1-branches-0-steps-1-unless_step"),
    ("steps[1].branches[0].name", "steps-1-branches-0-name"),
    ("steps[1].branches[0].conditions.all[0].op", "steps-1-branches-0-when-items-0-op"),
    ("steps[1].default.steps[0].config", "steps-1-default-steps-0-__step"),
    ("steps[0].config.window.daily", "steps-0-daily"),
    ("steps[0].config.max_events", "steps-0-max_events"),
    ("steps[1].branches", "steps-1-__step"),
    ("name", "name"),
])
def test_nested_api_errors_map_to_their_field(path, field):
    assert convert.error_target(path, BRANCH_STEPS, "Wrong.")[0] == field


def test_a_branch_workflow_is_saved_through_the_form_as_the_api_returns_it(admin_client, api):
    response = admin_client.post(reverse("admin:notifications_workflow_add"),
                                 BRANCH_FORM | {"key": "branchy"})
    assert response.status_code == 302, response.context["problems"]
    body = api.get("/api/v1/workflows/branchy").json()
    with_templates = json.loads(json.dumps(BRANCH_STEPS))
    for branch in with_templates[1]["branches"]:
        for step in branch["steps"]:
            step["templates"] = {}
    with_templates[1]["default"]["steps"][0]["templates"] = {}
    assert body["steps"] == with_templates

    workflow = Workflow.objects.get(key="branchy")
    page = admin_client.get(change_url(workflow)).content.decode()
    assert 'name="steps-1-branches-0-steps-1-unless_step" value="text"' in page
    assert "collects events, sends daily at 09:00, one batch per data.thread_id" in page
    assert '<code>big</code> if data.amount ≥ 1000</h3>' in page  # the diagram's columns
    assert "<code>default</code> otherwise</h3>" in page

    # A nested step's error is shown on that step.
    bad = admin_client.post(change_url(workflow), BRANCH_FORM | {
        "steps-1-branches-0-steps-1-unless_step": "inbox"})
    assert bad.context["problems"] == {"steps-1-branches-0-steps-1-unless_step": [
        "No step 'inbox' before this one: \"unless\" names an earlier channel step."]}


def test_a_route_step_is_edited_with_fields_and_keeps_its_templates(admin_client, api,
                                                                    make_workflow):
    route = {"ref": "reach", "type": "route", "config": {
        "channels": ["in_app", "email", "sms"], "ttl": {"hours": 1}, "success": "read",
        "always": ["in_app"]}}
    values, extra = convert.step_values(route, KINDS["route"])
    assert extra == {} and values["channels"] == "in_app, email, sms"
    fields = {f"steps-0-{name}": value for name, value in values.items()}
    assert steps_of(fields)[0] == [route]

    templates = {"email": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}},
                 "in_app": {"en": {"body": "Hi"}}, "sms": {"en": {"text": "Hi"}}}
    assert api.put("/api/v1/workflows/reach", {"name": "Reach", "steps": [
        {**route, "templates": templates}]}).status_code == 201
    workflow = Workflow.objects.get(key="reach")
    page = admin_client.get(change_url(workflow)).content.decode()
    assert "tries in_app → email → sms until one is read, within 1 hour; always in_app" in page
    assert "email en</a>: v1 published" in page
    response = admin_client.post(change_url(workflow), {
        "name": "Reach", "default_locale": "en", "active": "on", **fields,
        "steps-0-original": "reach", "steps-0-ttl_amount": "2",
        "steps-1-type": "route", "steps-1-ref": "reach_2", "steps-1-original": "reach",
        **{name.replace("steps-0-", "steps-1-"): value for name, value in fields.items()
           if name not in ("steps-0-ref", "steps-0-type")}})
    assert response.status_code == 302, response.context["problems"]
    steps = api.get("/api/v1/workflows/reach").json()["steps"]
    assert steps[0]["config"]["ttl"] == {"hours": 2}
    assert steps[0]["templates"] == steps[1]["templates"] == templates


def test_a_new_route_step_gets_its_first_templates_from_the_builder(admin_client, api):
    form = {"key": "reach", "name": "Reach", "default_locale": "fr", "active": "on",
            "steps-0-type": "route", "steps-0-ref": "reach",
            "steps-0-channels": "in_app, email", "steps-0-ttl_amount": "30",
            "steps-0-ttl_unit": "minutes", "steps-0-success": "read"}
    first = admin_client.post(reverse("admin:notifications_workflow_add"), form)
    assert first.context["problems"] == {"steps-0-__step": [
        f'templates.{channel}: Missing: a route step needs a template for each of its channels '
        f'(e.g. {{"{channel}": {{"en": {{…}}}}}}).' for channel in ("in_app", "email")]}
    html = first.content.decode()
    assert 'name="steps-0-tpl-email-subject"' in html
    assert "First templates for in_app, email" in html

    response = admin_client.post(reverse("admin:notifications_workflow_add"), form | {
        "steps-0-tpl-in_app-body": "Bonjour", "steps-0-tpl-email-subject": "Salut",
        "steps-0-tpl-email-html": "<p>Salut</p>"})
    assert response.status_code == 302, response.context["problems"]
    step = api.get("/api/v1/workflows/reach").json()["steps"][0]
    assert step["templates"] == {"in_app": {"fr": {"body": "Bonjour"}},
                                 "email": {"fr": {"subject": "Salut", "html": "<p>Salut</p>"}}}


def test_an_approval_has_one_column_per_outcome_and_leaves_empty_ones_out(admin_client, api):
    form = {"key": "deploy", "name": "Deploy", "default_locale": "en", "active": "on",
            "steps-0-type": "approval", "steps-0-ref": "ask",
            "steps-0-question": "Deploy {{ data.version }}?", "steps-0-timeout_amount": "4",
            "steps-0-timeout_unit": "hours", "steps-0-default": "rejected",
            "steps-0-branches-0-name": "approved",
            "steps-0-branches-1-name": "rejected",
            "steps-0-branches-2-name": "expired",
            "steps-0-branches-2-steps-0-type": "throttle",
            "steps-0-branches-2-steps-0-ref": "chase", "steps-0-branches-2-steps-0-limit": "0",
            "steps-0-branches-2-steps-0-window_amount": "1",
            "steps-0-branches-2-steps-0-window_unit": "hours"}
    bad = admin_client.post(reverse("admin:notifications_workflow_add"), form)
    assert bad.context["problems"] == {
        "steps-0-branches-2-steps-0-limit": ["Expected a whole number ≥ 1."]}
    html = bad.content.decode()
    form_html = html[:html.index("<div hidden>")]  # not the new steps' <template>s
    assert form_html.count("<h3>If ") == 3  # approved, rejected, expired side by side

    response = admin_client.post(reverse("admin:notifications_workflow_add"),
                                 form | {"steps-0-branches-2-steps-0-limit": "1"})
    assert response.status_code == 302, response.context["problems"]
    step = api.get("/api/v1/workflows/deploy").json()["steps"][0]
    assert step == {"ref": "ask", "type": "approval", "config": {
        "question": "Deploy {{ data.version }}?", "timeout": {"hours": 4}, "default": "rejected"},
        "branches": [{"name": "expired", "steps": [
            {"ref": "chase", "type": "throttle",
             "config": {"limit": 1, "window": {"hours": 1}}}]}]}
    page = admin_client.get(change_url(Workflow.objects.get(key="deploy"))).content.decode()
    assert 'name="steps-0-branches-2-steps-0-limit" value="1"' in page
    assert "asks “Deploy {{ data.version }}?” on in_app, email; expires after 4 hours" in page


def test_a_viewer_sees_the_builder_but_cannot_save(client, make_workflow):
    from django.contrib.auth.models import Permission, User

    workflow = make_workflow("welcome", steps=[in_app_step(body="Hi")])
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_workflow"))
    client.force_login(viewer)
    page = client.get(change_url(workflow))
    assert page.status_code == 200
    html = page.content.decode()
    assert '<fieldset class="wb-all" disabled>' in html and 'name="_continue"' not in html
    assert client.post(change_url(workflow), {"name": "Changed"}).status_code == 403
    assert client.get(reverse("admin:notifications_workflow_add")).status_code == 403
    workflow.refresh_from_db()
    assert workflow.name == "Welcome"


def test_the_diagram_is_drawn_from_the_unsaved_form(admin_client, client):
    url = reverse("admin:notifications_workflow_diagram")
    response = admin_client.post(url, INVOICE_FORM)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Trigger invoice-overdue" in html and "only if data.amount ≥ 1000" in html
    assert not Workflow.objects.exists()
    assert client.post(url, INVOICE_FORM).status_code == 302  # to the login page
