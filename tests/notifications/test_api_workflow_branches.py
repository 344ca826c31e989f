"""Branch steps in the workflow JSON of `PUT/GET /api/v1/workflows/{key}`: nested steps round
trip, refs are unique across the whole workflow, and a bad body is a 400 naming the field path."""

import copy

import pytest

from notifications.models import Step, Template, TemplateVersion

from ..conftest import invalid

PRO = {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}
READ = {"all": [{"path": "steps.inbox.read", "op": "eq", "value": True}]}


def in_app(ref, body="Hi"):
    return {"ref": ref, "type": "in_app", "templates": {"en": {"body": body}}}


def email(ref):
    return {"ref": ref, "type": "email",
            "templates": {"en": {"subject": "Hello", "html": "<p>Hi</p>"}}}


WORKFLOW = {
    "name": "Upgrade nudge", "category": "billing", "critical": False, "active": True,
    "default_locale": "en", "data_schema": None,
    "steps": [
        in_app("inbox"),
        {"ref": "wait", "type": "delay", "config": {"hours": 1}},
        {"ref": "by-plan", "type": "branch", "branches": [
            {"name": "pro", "conditions": PRO, "steps": [
                {"ref": "engaged", "type": "branch", "branches": [
                    {"name": "read", "conditions": READ, "steps": [in_app("thanks")]},
                ], "default": {"steps": [
                    {"ref": "pause", "type": "delay", "config": {"minutes": 30}},
                    email("pro-mail"),
                ]}},
            ]},
            {"name": "trial", "conditions": {"any": [
                {"path": "data.plan", "op": "eq", "value": "trial"},
                {"all": [{"path": "tenant.key", "op": "exists"},
                         {"path": "recipient.data.trial", "op": "eq", "value": True}]}]},
             "steps": [email("trial-mail")]},
        ], "default": {"steps": []}},
        in_app("done"),
    ],
}


def test_put_then_get_of_a_workflow_with_nested_branches_is_what_was_put(api, db):
    response = api.put("/api/v1/workflows/nudge", WORKFLOW)
    assert response.status_code == 201, response.content
    assert response.json() == {"key": "nudge", **WORKFLOW}
    assert api.get("/api/v1/workflows/nudge").json() == {"key": "nudge", **WORKFLOW}
    rows = {step.ref: step for step in Step.objects.select_related("parent")}
    assert [(ref, rows[ref].parent and rows[ref].parent.ref, rows[ref].branch,
             rows[ref].position) for ref in ("by-plan", "engaged", "thanks", "pause",
                                             "pro-mail", "trial-mail", "done")] == [
        ("by-plan", None, "", 2), ("engaged", "by-plan", "pro", 0),
        ("thanks", "engaged", "read", 0), ("pause", "engaged", "default", 0),
        ("pro-mail", "engaged", "default", 1), ("trial-mail", "by-plan", "trial", 0),
        ("done", None, "", 3)]


def test_put_of_what_get_returned_changes_nothing_nested_steps_included(api, db):
    api.put("/api/v1/workflows/nudge", WORKFLOW)
    exported = api.get("/api/v1/workflows/nudge").json()
    steps = list(Step.objects.order_by("id").values_list(
        "id", "ref", "parent", "branch", "position", "config", "conditions", "branches"))
    versions = list(TemplateVersion.objects.values_list("id", flat=True))
    templates = list(Template.objects.values_list("id", "updated_at"))

    response = api.put("/api/v1/workflows/nudge", exported)

    assert response.status_code == 200, response.content
    assert response.json() == exported
    assert list(Step.objects.order_by("id").values_list(
        "id", "ref", "parent", "branch", "position", "config", "conditions", "branches")) == steps
    assert list(TemplateVersion.objects.values_list("id", flat=True)) == versions
    assert list(Template.objects.values_list("id", "updated_at")) == templates


def test_a_branch_step_without_a_default_reads_back_with_an_empty_one(api, db):
    body = {"name": "B", "steps": [{"ref": "b", "type": "branch", "branches": [
        {"name": "pro", "conditions": PRO, "steps": [in_app("x")]}]}]}
    response = api.put("/api/v1/workflows/b", body)
    assert response.status_code == 201, response.content
    assert response.json()["steps"] == [{"ref": "b", "type": "branch", "branches": [
        {"name": "pro", "conditions": PRO, "steps": [in_app("x")]}], "default": {"steps": []}}]


def test_steps_move_in_and_out_of_branches_keeping_their_rows(api, db):
    api.put("/api/v1/workflows/nudge", WORKFLOW)
    ids = dict(Step.objects.values_list("ref", "id"))
    body = copy.deepcopy(WORKFLOW)
    # by-plan is removed; "trial-mail" (was inside it) moves to the top level, "done" moves in
    # to a new branch step.
    body["steps"] = [
        in_app("inbox"), email("trial-mail"),
        {"ref": "again", "type": "branch", "branches": [
            {"name": "pro", "conditions": PRO, "steps": [in_app("done")]}],
         "default": {"steps": []}}]
    response = api.put("/api/v1/workflows/nudge", body)
    assert response.status_code == 200, response.content
    assert response.json()["steps"] == body["steps"]
    rows = {step.ref: step for step in Step.objects.all()}
    assert set(rows) == {"inbox", "trial-mail", "again", "done"}
    assert rows["trial-mail"].id == ids["trial-mail"]
    assert rows["trial-mail"].parent_id is None
    assert rows["done"].id == ids["done"]
    assert (rows["done"].parent_id, rows["done"].branch) == (rows["again"].id, "pro")


def with_change(path, value):
    """WORKFLOW with the value at `path` (a list of keys and indexes) set to `value`."""
    body = copy.deepcopy(WORKFLOW)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


BY_PLAN = ["steps", 2]
PRO_STEPS = [*BY_PLAN, "branches", 0, "steps"]
ENGAGED_DEFAULT = [*PRO_STEPS, 0, "default", "steps"]


@pytest.mark.parametrize(("body", "fields"), [
    (with_change([*ENGAGED_DEFAULT, 0, "config"], {"weeks": 1}),
     {"steps[2].branches[0].steps[0].default.steps[0].config": [
         'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.']}),
    (with_change([*PRO_STEPS, 0, "branches", 0, "conditions"],
                 {"all": [{"path": "steps.inbox.read", "op": "is", "value": True}]}),
     {"steps[2].branches[0].steps[0].branches[0].conditions.all[0].op": [
         "Expected one of: eq, neq, gt, gte, lt, lte, in, contains, exists, not_exists."]}),
    (with_change([*BY_PLAN, "branches", 1, "conditions"], None),
     {"steps[2].branches[1].conditions": [
         "Each branch needs conditions; the default branch is taken when none holds."]}),
    (with_change([*BY_PLAN, "branches", 1, "name"], "pro"),
     {"steps[2].branches[1].name": ["Branch names must be unique: pro."]}),
    (with_change([*BY_PLAN, "branches", 1, "name"], "default"),
     {"steps[2].branches[1].name": [
         '"default" is the default branch: give it as {"default": {"steps": […]}}.']}),
    (with_change([*BY_PLAN, "branches"], []),
     {"steps[2].branches": [
         'Expected at least one branch: [{"name": "pro", "conditions": {…}, "steps": […]}].']}),
    (with_change([*BY_PLAN, "config"], {"x": 1}),
     {"steps[2].config": [
         'Branch steps have no config: their branches are "branches" and "default".']}),
    (with_change(["steps", 0, "branches"], [{"name": "a", "conditions": PRO, "steps": []}]),
     {"steps[0].branches": ["Only approval and branch steps have branches."]}),
    (with_change(["steps", 1, "default"], {"steps": []}),
     {"steps[1].default": ["Only approval and branch steps have branches."]}),
    (with_change([*ENGAGED_DEFAULT, 1, "ref"], "inbox"),
     {"steps": ["Step refs must be unique (nested steps included): inbox."]}),
    (with_change([*ENGAGED_DEFAULT, 1, "typo"], 1),
     {"steps[2].branches[0].steps[0].default.steps[1].typo": [
         "Unknown field; expected one of: ref, type, config, conditions, templates, unless, "
         "send_window, urgent, branches, default."]}),
    (with_change([*BY_PLAN, "branches", 0, "when"], PRO),
     {"steps[2].branches[0].when": [
         "Unknown field; expected one of: name, conditions, steps."]}),
    (with_change([*ENGAGED_DEFAULT, 1, "type"], "carrier_pigeon"),
     {"steps[2].branches[0].steps[0].default.steps[1].type": [
         '"carrier_pigeon" is not a valid choice.']}),
])
def test_a_bad_nested_step_is_a_400_naming_its_path(api, db, body, fields):
    response = api.put("/api/v1/workflows/nudge", body)
    assert response.status_code == 400, response.content
    assert response.json() == invalid(fields)
    assert not Step.objects.exists()


@pytest.mark.parametrize(("unless", "fields"), [
    # "trial-mail" is in another branch: a run in "pro" never walks it.
    ({"step": "trial-mail", "is": "read"},
     {"steps[2].branches[0].steps[0].default.steps[1].unless.step": [
         "No step 'trial-mail' before this one: \"unless\" names an earlier channel step."]}),
    ({"step": "done", "is": "read"},
     {"steps[2].branches[0].steps[0].default.steps[1].unless.step": [
         "No step 'done' before this one: \"unless\" names an earlier channel step."]}),
])
def test_unless_inside_a_branch_names_a_step_walked_before_it(api, db, unless, fields):
    response = api.put("/api/v1/workflows/nudge",
                       with_change([*ENGAGED_DEFAULT, 1, "unless"], unless))
    assert response.status_code == 400, response.content
    assert response.json() == invalid(fields)


def test_unless_inside_a_branch_may_name_a_step_before_the_branch(api, db):
    response = api.put("/api/v1/workflows/nudge", with_change(
        [*ENGAGED_DEFAULT, 1, "unless"], {"step": "inbox", "is": "read"}))
    assert response.status_code == 201, response.content
    assert Step.objects.get(ref="pro-mail").unless == {"step": "inbox", "is": "read"}


def test_a_run_shows_the_branch_it_took_in_its_timeline(api, run_tasks):
    api.put("/api/v1/workflows/plans", {"name": "Plans", "steps": [
        in_app("inbox"),
        {"ref": "by-plan", "type": "branch", "branches": [
            {"name": "pro", "conditions": PRO, "steps": [in_app("pro-hello")]},
            {"name": "unread", "conditions": {"all": [
                {"path": "steps.inbox.read", "op": "eq", "value": False}]},
             "steps": [in_app("reminder")]}],
         "default": {"steps": []}}]})
    response = api.post("/api/v1/workflows/plans/trigger",
                        {"recipients": ["u1"], "data": {"plan": "free"}})
    assert response.status_code == 202, response.content
    run_tasks()
    run = api.get(f"/api/v1/runs/{response.json()['runs'][0]['id']}").json()
    assert run["status"] == "completed"
    assert [(entry["step"], entry["event"]) for entry in run["steps"]] == [
        ("", "triggered"), ("inbox", "sent"), ("by-plan", "branched"), ("reminder", "sent"),
        ("", "completed")]
    assert run["steps"][2]["detail"] == {"branch": "unread", "checked": [
        {"branch": "pro", "held": False, "conditions": [
            {"path": "data.plan", "op": "eq", "value": "pro", "actual": "free", "held": False}]},
        {"branch": "unread", "held": True, "conditions": [
            {"path": "steps.inbox.read", "op": "eq", "value": False, "actual": False,
             "held": True}]}]}
