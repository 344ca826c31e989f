"""The branch step (issue 12 point 4): ordered branches, the first whose conditions hold is taken,
else the default; each branch holds its own steps (delays, channel steps, other branches);
conditions read data, recipient, tenant, actor and earlier steps (`steps.<ref>.read`…); a run
waiting inside a branch resumes there after an edit, or logs `skipped` when its step is gone."""

from datetime import UTC, datetime, timedelta

import pytest
from django_q.models import OrmQ

from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications.models import Message, Run, Step
from notifications.services import TriggerRequest, trigger_workflow
from notifications.workflow_json import BranchSpec, StepSpec

from ..conftest import advance_at, delay_step, email_step, in_app_step
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=16)


def when(path, op, value=None) -> dict:
    leaf = {"path": path, "op": op}
    if op not in ("exists", "not_exists"):
        leaf["value"] = value
    return {"all": [leaf]}


def branch_step(ref, branches, default=()) -> StepSpec:
    """branch_step("by-plan", [("pro", conditions, [steps]), …], default=[steps])."""
    return StepSpec(ref=ref, type="branch",
                    branches=[BranchSpec(name=name, conditions=tree, steps=list(steps))
                              for name, tree, steps in branches],
                    default=list(default))


def by_plan(**extra_default) -> StepSpec:
    return branch_step("by-plan", [
        ("enterprise", when("data.plan", "eq", "enterprise"), [in_app_step("ent")]),
        ("paid", when("data.plan", "in", ["pro", "enterprise"]), [in_app_step("paid")]),
    ], default=[in_app_step("free")])


def trigger(workflow, data=None, recipient=None) -> Run:
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, data=data or {},
        recipients=[recipient or {"id": "u1", "name": "Ada", "email": "ada@example.com"}]))
    OrmQ.objects.all().delete()  # the test drives the engine with its own clock
    return runs[0]


def sent_refs(run) -> list[str]:
    return list(Message.objects.filter(run=run).order_by("created_at")
                .values_list("step_ref", flat=True))


@pytest.mark.parametrize(("plan", "branch", "sent"), [
    ("enterprise", "enterprise", ["ent", "after"]),  # both branches hold: the first wins
    ("pro", "paid", ["paid", "after"]),
    ("free", "default", ["free", "after"]),
    (None, "default", ["free", "after"]),
])
def test_the_first_branch_whose_conditions_hold_is_taken_else_the_default(
        make_workflow, plan, branch, sent):
    workflow = make_workflow("w", steps=[by_plan(), in_app_step("after")])
    run = advance_at(trigger(workflow, {"plan": plan} if plan else {}), T0)
    assert run.status == Run.Status.COMPLETED
    assert sent_refs(run) == sent
    assert events(run)[:2] == [("", "triggered"), ("by-plan", "branched")]
    assert run.state["branches"] == {"by-plan": branch}


def test_the_branched_entry_names_the_branch_and_explains_each_branch_tried(make_workflow):
    workflow = make_workflow("w", steps=[by_plan()])
    run = advance_at(trigger(workflow, {"plan": "pro"}), T0)
    assert run.step_logs.get(event="branched").detail == {
        "branch": "paid",
        "checked": [
            {"branch": "enterprise", "held": False, "conditions": [
                {"path": "data.plan", "op": "eq", "value": "enterprise", "actual": "pro",
                 "held": False}]},
            {"branch": "paid", "held": True, "conditions": [
                {"path": "data.plan", "op": "in", "value": ["pro", "enterprise"],
                 "actual": "pro", "held": True}]},
        ],
    }


def test_the_default_entry_shows_every_branch_that_did_not_hold(make_workflow):
    workflow = make_workflow("w", steps=[by_plan()])
    run = advance_at(trigger(workflow, {"plan": "free"}), T0)
    detail = run.step_logs.get(event="branched").detail
    assert detail["branch"] == "default"
    assert [(item["branch"], item["held"]) for item in detail["checked"]] == [
        ("enterprise", False), ("paid", False)]


def test_a_branch_with_no_default_steps_goes_on_after_the_branch_step(make_workflow):
    workflow = make_workflow("w", steps=[
        branch_step("b", [("vip", when("recipient.data.vip", "eq", True), [in_app_step("v")])]),
        in_app_step("after")])
    run = advance_at(trigger(workflow), T0)
    assert sent_refs(run) == ["after"]
    assert run.state["branches"] == {"b": "default"}


def test_conditions_read_recipient_tenant_and_actor(make_workflow):
    workflow = make_workflow("w", steps=[branch_step("b", [
        ("tenant", when("tenant.key", "eq", "acme"), [in_app_step("t")]),
        ("actor", when("actor.id", "eq", "boss"), [in_app_step("a")]),
        ("person", when("recipient.locale", "eq", "fr"), [in_app_step("r")]),
    ])])
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, actor="boss",
        recipients=[{"id": "u1", "name": "Ada", "locale": "fr"}]))
    run = advance_at(runs[0], T0)
    assert sent_refs(run) == ["a"]


def test_a_branch_step_whose_own_conditions_fail_takes_no_branch(make_workflow):
    spec = by_plan()
    spec.conditions = when("data.skip", "not_exists")
    workflow = make_workflow("w", steps=[spec, in_app_step("after")])
    run = advance_at(trigger(workflow, {"plan": "pro", "skip": 1}), T0)
    assert sent_refs(run) == ["after"]
    assert ("by-plan", "condition_false") in events(run)
    assert "branches" not in run.state


def test_a_branch_nested_in_a_branch_with_a_delay_between(make_workflow):
    inner = branch_step("by-region", [
        ("eu", when("data.region", "eq", "eu"), [email_step("eu-mail")]),
    ], default=[in_app_step("world")])
    workflow = make_workflow("w", steps=[
        branch_step("by-plan", [("pro", when("data.plan", "eq", "pro"),
                                 [in_app_step("hello"), delay_step("pause", minutes=5), inner])]),
        in_app_step("after")])
    run = advance_at(trigger(workflow, {"plan": "pro", "region": "eu"}), T0)
    assert run.status == Run.Status.WAITING
    assert run.step_refs == ["by-plan", "hello", "pause", "by-region", "after"]
    run = advance_at(run, T0 + timedelta(minutes=6))
    assert run.status == Run.Status.COMPLETED
    assert run.state["branches"] == {"by-plan": "pro", "by-region": "eu"}
    assert sent_refs(run) == ["hello", "eu-mail", "after"]
    assert events(run) == [
        ("", "triggered"), ("by-plan", "branched"), ("hello", "sent"), ("pause", "delayed"),
        ("pause", "resumed"), ("by-region", "branched"), ("eu-mail", "queued"),
        ("after", "sent"), ("", "completed")]


@pytest.mark.parametrize(("action", "branch", "sent"), [
    ("read", "read", ["inbox", "thanks"]),
    ("seen", "default", ["inbox", "mail"]),
    (None, "default", ["inbox", "mail"]),
])
def test_a_branch_on_whether_an_earlier_message_was_read(make_workflow, action, branch, sent):
    workflow = make_workflow("w", steps=[
        in_app_step("inbox"), delay_step("wait", minutes=15),
        branch_step("engaged", [("read", when("steps.inbox.read", "eq", True),
                                 [in_app_step("thanks")])], default=[email_step("mail")])])
    run = advance_at(trigger(workflow), T0)
    if action:
        inbox_item_mark(item=InboxItem.objects.get(), action=action)
    run = advance_at(run, LATER)
    assert run.state["branches"] == {"engaged": branch}
    assert sent_refs(run) == sent
    checked = run.step_logs.get(event="branched").detail["checked"][0]["conditions"][0]
    assert checked["actual"] is (action == "read")


def test_a_branch_in_the_same_pass_sees_the_message_just_made(make_workflow):
    # No wait between: the in-app message is written in this same pass.
    workflow = make_workflow("w", steps=[
        in_app_step("inbox"),
        branch_step("b", [
            ("delivered", {"all": [{"path": "steps.inbox.delivered", "op": "eq", "value": True},
                                   {"path": "steps.inbox.status", "op": "eq", "value": "sent"},
                                   {"path": "steps.inbox.seen", "op": "eq", "value": False}]},
             [in_app_step("yes")])],
            default=[in_app_step("no")])])
    run = advance_at(trigger(workflow), T0)
    assert sent_refs(run) == ["inbox", "yes"]


def test_a_step_never_reached_reads_as_missing(make_workflow):
    workflow = make_workflow("w", steps=[
        branch_step("b", [("sent", when("steps.nothing.status", "exists"), [in_app_step("x")])],
                    default=[in_app_step("y")])])
    run = advance_at(trigger(workflow), T0)
    assert sent_refs(run) == ["y"]


# --- edits while a run waits inside a branch ------------------------------------------------

def waiting_in_branch(make_workflow, tail=()) -> Run:
    workflow = make_workflow("w", steps=[
        in_app_step("a"),
        branch_step("by-plan", [("pro", when("data.plan", "eq", "pro"),
                                 [in_app_step("p1"), delay_step("wait", seconds=60),
                                  in_app_step("p2")])], default=[in_app_step("free")]),
        in_app_step("z"), *tail])
    run = advance_at(trigger(workflow, {"plan": "pro"}), T0)
    assert run.status == Run.Status.WAITING
    assert (run.cursor, run.step_refs) == (3, ["a", "by-plan", "p1", "wait", "p2", "z"])
    return run


def edit(make_workflow, pro_steps, default=(), top_after=("z",)):
    make_workflow("w", steps=[
        in_app_step("a"),
        branch_step("by-plan", [("pro", when("data.plan", "eq", "pro"), pro_steps)],
                    default=[in_app_step(ref) for ref in default] or [in_app_step("free")]),
        *[in_app_step(ref) for ref in top_after]])


def test_a_run_waiting_inside_a_branch_resumes_there_after_an_edit(make_workflow):
    run = waiting_in_branch(make_workflow)
    before = len(events(run))
    # Steps added before and after the delay inside the branch, and a new top-level step.
    edit(make_workflow, [in_app_step("p0"), in_app_step("p1"), delay_step("wait", seconds=60),
                         in_app_step("p1b"), in_app_step("p2")], top_after=("z", "z2"))
    run = advance_at(run, T0 + timedelta(seconds=61))
    assert run.status == Run.Status.COMPLETED
    assert events(run)[before:] == [
        ("wait", "resumed"), ("p1b", "sent"), ("p2", "sent"), ("z", "sent"), ("z2", "sent"),
        ("", "completed")]
    assert sent_refs(run) == ["a", "p1", "p1b", "p2", "z", "z2"]


def test_a_run_whose_waiting_step_was_removed_from_its_branch_logs_skipped(make_workflow):
    run = waiting_in_branch(make_workflow)
    before = len(events(run))
    edit(make_workflow, [in_app_step("p1"), in_app_step("p2")])
    run = advance_at(run, T0 + timedelta(seconds=61))
    assert run.status == Run.Status.COMPLETED
    new = events(run)[before:]
    assert new == [("wait", "skipped"), ("p2", "sent"), ("z", "sent"), ("", "completed")]
    assert run.step_logs.filter(step_ref="wait", event="skipped").get().detail == {
        "reason": "the step was removed from the workflow while the run waited on it"}


def test_a_run_whose_whole_branch_step_was_removed_goes_on_after_it(make_workflow):
    run = waiting_in_branch(make_workflow)
    before = len(events(run))
    make_workflow("w", steps=[in_app_step("a"), in_app_step("z")])
    assert not Step.objects.filter(ref__in=["by-plan", "p1", "wait", "p2"]).exists()
    run = advance_at(run, T0 + timedelta(seconds=61))
    assert run.status == Run.Status.COMPLETED
    assert events(run)[before:] == [("wait", "skipped"), ("z", "sent"), ("", "completed")]


def test_a_waiting_step_moved_to_the_top_level_is_where_the_run_resumes(make_workflow):
    run = waiting_in_branch(make_workflow)
    before = len(events(run))
    make_workflow("w", steps=[
        in_app_step("a"),
        branch_step("by-plan", [("pro", when("data.plan", "eq", "pro"),
                                 [in_app_step("p1"), in_app_step("p2")])]),
        delay_step("wait", seconds=60), in_app_step("z")])
    run = advance_at(run, T0 + timedelta(seconds=61))
    # p2 was ahead of the run and is now before the step it waited at: skipped, said so.
    assert events(run)[before:] == [
        ("p2", "skipped"), ("wait", "resumed"), ("z", "sent"), ("", "completed")]


def test_any_steps_conditions_read_earlier_steps_made_in_the_same_pass(make_workflow):
    workflow = make_workflow("w", steps=[
        in_app_step("inbox"),
        in_app_step("echo", conditions=when("steps.inbox.status", "eq", "sent")),
        in_app_step("never", conditions=when("steps.inbox.read", "eq", True))])
    run = advance_at(trigger(workflow), T0)
    assert sent_refs(run) == ["inbox", "echo"]
    assert run.step_logs.get(step_ref="never").detail["conditions"][0]["actual"] is False


# --- a step that picks one of its named branches by a decision of its own ---------------------

def test_a_step_with_fixed_branch_names_round_trips_and_walks_the_branch_it_chose(
        make_workflow, monkeypatch):
    """The mechanism an approval step builds on: its type lists its branch names in
    BRANCHING_STEP_TYPES and its handler calls branches.choose(p, step, name)."""
    from notifications import engine
    from notifications.engine import branches, validation, walk
    from notifications.selectors import workflow_export

    monkeypatch.setitem(validation.BRANCHING_STEP_TYPES, "approval",
                        ("approved", "rejected", "expired"))
    with pytest.raises(engine.StepConfigError, match="Expected one of: approved, rejected, "
                                                      "expired."):
        engine.validate_branches("approval", [{"name": "maybe"}], False)
    with pytest.raises(engine.StepConfigError, match="has no default branch"):
        engine.validate_branches("approval", [{"name": "approved"}], True)
    engine.validate_branches("approval", [{"name": "approved"}, {"name": "rejected"}], False)

    real_run_step = walk._run_step

    def run_step(p, step):  # stands in for the approval's handler: decided "rejected"
        if step.type == "approval":
            return branches.choose(p, step, "rejected", approval_id="a1")
        return real_run_step(p, step)

    monkeypatch.setattr(walk, "_run_step", run_step)
    workflow = make_workflow("w", steps=[
        StepSpec(ref="gate", type="approval", config={"question": "Ship it?"}, branches=[
            BranchSpec(name="approved", steps=[in_app_step("shipped")]),
            BranchSpec(name="rejected", steps=[in_app_step("sorry")])]),
        in_app_step("after")])
    body = {"en": {"body": "Hi {{ recipient.name }}"}}
    assert workflow_export(workflow)["steps"][0] == {
        "ref": "gate", "type": "approval", "config": {"question": "Ship it?"}, "branches": [
            {"name": "approved", "steps": [{"ref": "shipped", "type": "in_app",
                                            "templates": body}]},
            {"name": "rejected", "steps": [{"ref": "sorry", "type": "in_app",
                                            "templates": body}]}]}
    run = advance_at(trigger(workflow), T0)
    assert sent_refs(run) == ["sorry", "after"]
    assert run.step_logs.get(event="branched").detail == {"branch": "rejected",
                                                          "approval_id": "a1"}
