"""Property tests of nested branches: any tree of steps saved and read back
(notifications/workflow_json.py) is what was saved; saving any tree over any other (steps moving
in and out of branches, branch steps removed with steps that live on elsewhere) leaves exactly
the second tree, keeping the rows of the steps both name; and a run sends exactly what its
branches choose, however deep they nest."""

from datetime import UTC, datetime

from django.db import transaction
from django_q.models import OrmQ
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from notifications.models import Run, Step, Workflow
from notifications.selectors import workflow_export
from notifications.services import TriggerRequest, trigger_workflow, workflow_put
from notifications.workflow_json import StepSpec

from ..conftest import advance_at
from ..conftest import timeline_events as events

REFS = [f"s{index}" for index in range(12)]
PRO = {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}


@st.composite
def step_trees(draw, max_steps=8):
    """A list of step JSON objects (delays, in-app steps, branch steps nesting more), with refs
    drawn from REFS, unique across the tree."""
    refs = draw(st.permutations(REFS))[:draw(st.integers(1, max_steps))]
    pool = list(refs)

    def steps(depth):
        out = []
        for _ in range(draw(st.integers(0 if depth else 1, 3))):
            if not pool:
                break
            ref = pool.pop()
            kind = draw(st.sampled_from(["in_app", "delay", "branch"] if depth < 2
                                        else ["in_app", "delay"]))
            if kind == "in_app":
                out.append({"ref": ref, "type": "in_app",
                            "templates": {"en": {"body": f"Hi from {ref}"}}})
            elif kind == "delay":
                out.append({"ref": ref, "type": "delay",
                            "config": {"minutes": draw(st.integers(1, 9))}})
            else:
                names = draw(st.lists(st.sampled_from(["pro", "trial", "eu"]), min_size=1,
                                      max_size=3, unique=True))
                out.append({"ref": ref, "type": "branch",
                            "branches": [{"name": name, "conditions": PRO,
                                          "steps": steps(depth + 1)} for name in names],
                            "default": {"steps": steps(depth + 1)}})
        return out

    return steps(0) or [{"ref": "only", "type": "delay", "config": {"minutes": 1}}]


def put(steps) -> Workflow:
    workflow, _ = workflow_put(key="w", name="W", steps=[StepSpec.from_json(s) for s in steps])
    return workflow


SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(tree=step_trees())
def test_any_tree_of_steps_reads_back_as_it_was_saved(db, tree):
    with transaction.atomic():
        workflow = put(tree)
        assert workflow_export(workflow)["steps"] == tree
        rows = list(Step.objects.order_by("id").values_list("id", "parent", "branch",
                                                            "position"))
        put(workflow_export(workflow)["steps"])  # saving what was read changes nothing
        assert list(Step.objects.order_by("id").values_list("id", "parent", "branch",
                                                            "position")) == rows
        transaction.set_rollback(True)


@SETTINGS
@given(first=step_trees(), second=step_trees())
def test_saving_one_tree_over_another_leaves_exactly_the_second(db, first, second):
    with transaction.atomic():
        put(first)
        ids = dict(Step.objects.values_list("ref", "id"))
        workflow = put(second)
        assert workflow_export(workflow)["steps"] == second
        after = dict(Step.objects.values_list("ref", "id"))
        # A step both trees name is the same row (its messages stay linked to it).
        assert {ref: after[ref] for ref in after if ref in ids} == {
            ref: ids[ref] for ref in after if ref in ids}
        transaction.set_rollback(True)


def expected_sends(steps, plan) -> list[str]:
    """What a run with data.plan = `plan` sends: a plain reading of the branch rules."""
    sent = []
    for step in steps:
        if step["type"] == "in_app":
            sent.append(step["ref"])
        elif step["type"] == "branch":
            taken = next((branch["steps"] for branch in step["branches"]
                          if branch["conditions"]["all"][0]["value"] == plan),
                         step["default"]["steps"])
            sent += expected_sends(taken, plan)
    return sent


@st.composite
def plan_trees(draw):
    """Trees of in-app and branch steps whose branches test data.plan against their own name."""
    tree = draw(step_trees())

    def rewrite(steps):
        out = []
        for step in steps:
            if step["type"] == "delay":
                continue
            if step["type"] == "branch":
                step = {**step, "branches": [
                    {**branch, "conditions": {"all": [
                        {"path": "data.plan", "op": "eq", "value": branch["name"]}]},
                     "steps": rewrite(branch["steps"])} for branch in step["branches"]],
                    "default": {"steps": rewrite(step["default"]["steps"])}}
            out.append(step)
        return out

    return rewrite(tree)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=plan_trees(), plan=st.sampled_from(["pro", "trial", "eu", "free"]))
def test_a_run_sends_what_its_branches_choose_however_deep(db, tree, plan):
    with transaction.atomic():
        workflow = put(tree)
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, data={"plan": plan},
                                                  recipients=[{"id": "u1", "name": "Ada"}]))
        OrmQ.objects.all().delete()
        run = advance_at(runs[0], datetime(2026, 3, 1, tzinfo=UTC))
        assert run.status == Run.Status.COMPLETED
        assert [ref for ref, event in events(run) if event == "sent"] == expected_sends(
            tree, plan)
        transaction.set_rollback(True)
