"""The admin keeps working with nested steps: the workflow page lists them with their parent and
branch, a step's form checks its parent, branch and a branch step's branches as the API does, and
a run that took a branch shows it on its page."""

import json
import re
from datetime import UTC, datetime
from html import unescape

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from notifications.models import Run, Step, Workflow
from notifications.services import TriggerRequest, trigger_workflow
from notifications.workflow_json import BranchSpec, StepSpec

from ..conftest import advance_at, delay_step, in_app_step

PRO = {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}


def url(model, view="changelist", *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def nudge(make_workflow):
    return make_workflow("nudge", steps=[
        in_app_step("inbox"),
        StepSpec(ref="by-plan", type="branch",
                 branches=[BranchSpec(name="pro", conditions=PRO,
                                      steps=[in_app_step("pro-hello")])],
                 default=[delay_step("pause", minutes=5)]),
    ])


def post_data(workflow, **fields) -> dict:
    data = {"workflow": workflow.pk, "parent": "", "branch": "", "position": 0, "ref": "new",
            "type": "in_app", "config": "{}", "conditions": "", "branches": "", "unless": "",
            "send_window": ""}
    return data | fields


def test_the_workflow_page_lists_nested_steps_inside_their_branch(admin_client, nudge):
    """The workflow page (the builder) shows each nested step's fields inside its branch, and
    the branch's own fields (its name) beside them."""
    response = admin_client.get(url(Workflow, "change", nudge.pk))
    assert response.status_code == 200
    html = response.content.decode()
    refs = dict((value, name) for name, value in re.findall(
        r'name="(steps-[^"]*ref)" value="([^"]+)"', html))
    assert refs == {"inbox": "steps-0-ref", "by-plan": "steps-1-ref",
                    "pro-hello": "steps-1-branches-0-steps-0-ref",
                    "pause": "steps-1-default-steps-0-ref"}
    assert 'name="steps-1-branches-0-name" value="pro"' in html


def test_the_step_list_and_a_nested_steps_page_load(admin_client, nudge):
    assert admin_client.get(url(Step)).status_code == 200
    step = Step.objects.get(ref="pro-hello")
    response = admin_client.get(url(Step, "change", step.pk))
    assert response.status_code == 200
    assert response.context["adminform"].form.initial["branch"] == "pro"


def test_a_step_added_in_the_admin_inside_a_branch_runs_in_that_branch(admin_client, nudge):
    parent = Step.objects.get(ref="by-plan")
    response = admin_client.post(url(Step, "add"), post_data(
        nudge, parent=parent.pk, branch="pro", position=1, ref="pro-bye"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    step = Step.objects.get(ref="pro-bye")
    assert (step.parent_id, step.branch, step.position) == (parent.pk, "pro", 1)
    _, runs = trigger_workflow(TriggerRequest(workflow=nudge, data={"plan": "pro"},
                                              recipients=[{"id": "u1", "name": "Ada"}]))
    OrmQ.objects.all().delete()
    run = advance_at(runs[0], datetime(2026, 3, 1, tzinfo=UTC))
    assert run.status == Run.Status.COMPLETED
    assert list(run.messages.order_by("created_at").values_list("step_ref", flat=True)) == [
        "inbox", "pro-hello", "pro-bye"]


@pytest.mark.parametrize(("fields", "field", "error"), [
    ({"parent": "inbox", "branch": "pro"}, "parent",  # only branch steps are offered
     "Select a valid choice. That choice is not one of the available choices."),
    ({"parent": "by-plan", "branch": "gold"}, "branch",
     "Expected one of the branches of by-plan: pro, default."),
    ({"branch": "pro"}, "branch", "Only a step inside a branch step has a branch."),
    ({"type": "branch", "branches": "[]"}, "branches",
     'branches: Expected at least one branch: [{"name": "pro", "conditions": {…}, '
     '"steps": […]}].'),
    ({"type": "branch", "branches": json.dumps([{"name": "a"}])}, "branches",
     "branches[0].conditions: Each branch needs conditions; the default branch is taken when "
     "none holds."),
    ({"type": "branch", "branches": json.dumps([{"name": "a", "conditions": {"all": []}}])},
     "branches", "branches[0].conditions.all: Expected a non-empty list."),
    ({"type": "branch", "branches": json.dumps({"name": "a"})}, "branches",
     'Expected a list: [{"name": "pro", "conditions": {…}}].'),
    ({"branches": json.dumps([{"name": "a", "conditions": PRO}])}, "branches",
     "branches: Only approval and branch steps have branches."),
    ({"parent": "by-plan", "branch": "pro", "unless": json.dumps(
        {"step": "pro-hello", "is": "read"}), "position": 0},
     "unless", "unless.step: No step 'pro-hello' before this one: \"unless\" names an earlier "
               "channel step."),
])
def test_the_step_form_checks_parent_branch_and_branches(admin_client, nudge, fields, field,
                                                         error):
    refs = dict(Step.objects.values_list("ref", "pk"))
    if "parent" in fields:
        fields = {**fields, "parent": refs[fields["parent"]]}
    response = admin_client.post(url(Step, "add"), post_data(nudge, **fields))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field] == [error]
    assert not Step.objects.filter(ref="new").exists()


def test_unless_inside_a_branch_may_name_a_step_walked_before_it(admin_client, nudge):
    parent = Step.objects.get(ref="by-plan")
    response = admin_client.post(url(Step, "add"), post_data(
        nudge, parent=parent.pk, branch="pro", position=1,
        unless=json.dumps({"step": "pro-hello", "is": "read"})))
    assert response.status_code == 302, response.context["adminform"].form.errors


def test_a_step_cannot_be_put_inside_itself(admin_client, nudge):
    parent = Step.objects.get(ref="by-plan")
    response = admin_client.post(url(Step, "change", parent.pk), post_data(
        nudge, ref="by-plan", type="branch", parent=parent.pk, branch="pro",
        branches=json.dumps(parent.branches)))
    assert response.context["adminform"].form.errors["parent"] == [
        "A step cannot be inside itself."]


def test_the_run_page_shows_the_branch_taken(admin_client, nudge):
    _, runs = trigger_workflow(TriggerRequest(workflow=nudge, data={"plan": "pro"},
                                              recipients=[{"id": "u1", "name": "Ada"}]))
    OrmQ.objects.all().delete()
    run = advance_at(runs[0], datetime(2026, 3, 1, tzinfo=UTC))
    response = admin_client.get(url(Run, "change", run.pk))
    assert response.status_code == 200
    html = unescape(response.content.decode())
    assert ('<td>by-plan</td><td><a href="/admin/notifications/steplog/'
            in html)
    entry = html[html.index("<td>by-plan</td>"):]
    entry = entry[:entry.index("</tr>")]
    assert ">Branch taken</a>" in entry
    assert '<span class="clarion-key">branch</span>: <code>pro</code>' in entry
    assert '"path": "data.plan"' in entry
