"""A run that waits while its workflow is edited resumes at the right step (issue 11 point 10):
steps removed before, at and after the step it waits at, steps added, steps reordered. No step
it still had ahead is passed without a timeline entry, and no step it walked is walked again."""

from datetime import UTC, datetime, timedelta

import pytest
from django_q.models import OrmQ

from inbox.models import InboxItem
from notifications import engine
from notifications.models import Run, StepLog
from notifications.services import TriggerRequest, trigger_workflow

from ..conftest import advance_at as advance
from ..conftest import delay_step, in_app_step
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(seconds=61)
PROFILE = {"id": "u1", "name": "Ada", "email": "ada@example.com"}


@pytest.fixture
def waiting_run(make_workflow):
    """waiting_run(steps) → a run of workflow "w" with `steps`, advanced at T0 until it waits
    at the delay "wait" (60 s)."""

    def make(steps):
        workflow = make_workflow("w", steps=steps)
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[dict(PROFILE)]))
        OrmQ.objects.all().delete()
        run = advance(runs[0], T0)
        assert run.status == Run.Status.WAITING
        return run

    return make


def wait():
    return delay_step("wait", seconds=60)


def pause(ref):
    """A delay whose `until` is missing: every walk of it logs `skipped`, so a second walk would
    show in the timeline."""
    return delay_step(ref, until="data.pause_until")


def after_edit(run, make_workflow, steps) -> list[tuple[str, str]]:
    """Edit workflow "w" to `steps`, wake the run; its timeline from the wake-up on."""
    before = len(events(run))
    make_workflow("w", steps=steps)
    run = advance(run, LATER)
    return events(run)[before:]


def sent(*refs) -> list[tuple[str, str]]:
    return [(ref, "sent") for ref in refs]


def test_a_waiting_run_remembers_the_steps_as_they_were_and_forgets_them_when_done(
        waiting_run):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    assert (run.cursor, run.step_refs) == (1, ["a", "wait", "c"])
    run = advance(run, LATER)
    assert run.status == Run.Status.COMPLETED
    assert run.step_refs == []


def test_steps_removed_before_the_waiting_step_do_not_move_the_run(waiting_run, make_workflow):
    run = waiting_run([in_app_step("a"), in_app_step("b"), wait(), in_app_step("c")])
    new = after_edit(run, make_workflow, [in_app_step("b"), wait(), in_app_step("c")])
    assert new == [("wait", "resumed"), *sent("c"), ("", "completed")]


def test_the_waiting_step_and_steps_before_it_removed_skip_nothing_ahead(waiting_run,
                                                                         make_workflow):
    # The fault: the kept cursor (2) pointed at "d" in [b, c, d], and "c" had no record.
    run = waiting_run([in_app_step("a"), in_app_step("b"), wait(), in_app_step("c"),
                       in_app_step("d")])
    new = after_edit(run, make_workflow, [in_app_step("b"), in_app_step("c"), in_app_step("d")])
    assert new == [("wait", "skipped"), *sent("c", "d"), ("", "completed")]
    assert StepLog.objects.get(step_ref="wait", event="skipped").detail == {
        "reason": "the step was removed from the workflow while the run waited on it"}
    assert set(InboxItem.objects.values_list("message__step_ref", flat=True)) == {
        "a", "b", "c", "d"}


def test_the_waiting_step_removed_resumes_at_the_next_step(waiting_run, make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    new = after_edit(run, make_workflow, [in_app_step("a"), in_app_step("c")])
    assert new == [("wait", "skipped"), *sent("c"), ("", "completed")]


def test_steps_removed_after_the_waiting_step_are_not_walked(waiting_run, make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c"), in_app_step("d")])
    new = after_edit(run, make_workflow, [in_app_step("a"), wait(), in_app_step("d")])
    assert new == [("wait", "resumed"), *sent("d"), ("", "completed")]


def test_the_waiting_step_and_the_next_removed_resumes_at_the_first_left(waiting_run,
                                                                         make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c"), in_app_step("d"),
                       in_app_step("e")])
    new = after_edit(run, make_workflow, [in_app_step("a"), in_app_step("e")])
    assert new == [("wait", "skipped"), *sent("e"), ("", "completed")]


def test_everything_ahead_removed_runs_the_steps_added_after_what_it_walked(waiting_run,
                                                                            make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    new = after_edit(run, make_workflow, [in_app_step("x"), in_app_step("a"), in_app_step("y")])
    assert new == [("wait", "skipped"), *sent("y"), ("", "completed")]


def test_everything_ahead_removed_and_nothing_added_completes(waiting_run, make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    new = after_edit(run, make_workflow, [in_app_step("a")])
    assert new == [("wait", "skipped"), ("", "completed")]


def test_steps_added_after_the_waiting_step_run_and_those_added_before_do_not(waiting_run,
                                                                              make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    new = after_edit(run, make_workflow, [in_app_step("n1"), in_app_step("a"), wait(),
                                          in_app_step("n2"), in_app_step("c")])
    assert new == [("wait", "resumed"), *sent("n2", "c"), ("", "completed")]


def test_reordered_steps_after_the_waiting_step_removed_are_all_walked_once(waiting_run,
                                                                          make_workflow):
    run = waiting_run([pause("a"), wait(), in_app_step("c"), in_app_step("d")])
    # "a" was walked (it logged `skipped` at T0); moved after "d" it is not walked again.
    new = after_edit(run, make_workflow, [in_app_step("d"), in_app_step("c"), pause("a")])
    assert new == [("wait", "skipped"), *sent("d", "c"), ("", "completed")]


def test_a_step_moved_before_the_waiting_step_is_logged_not_silently_passed(waiting_run,
                                                                          make_workflow):
    run = waiting_run([pause("a"), wait(), in_app_step("c"), in_app_step("d")])
    new = after_edit(run, make_workflow, [in_app_step("c"), wait(), pause("a"),
                                          in_app_step("d")])
    assert new == [("c", "skipped"), ("wait", "resumed"), *sent("d"), ("", "completed")]
    assert StepLog.objects.get(step_ref="c").detail == {"reason": engine.STEP_MOVED_BEHIND}
    assert not InboxItem.objects.filter(message__step_ref="c").exists()


def test_a_run_that_began_waiting_before_step_refs_existed_still_resumes(waiting_run,
                                                                        make_workflow):
    run = waiting_run([in_app_step("a"), wait(), in_app_step("c")])
    # As rows written by the previous version: the waited-at ref in `state`, no step_refs.
    Run.objects.filter(pk=run.pk).update(step_refs=[], state={"waiting_at": "wait"})
    make_workflow("w", steps=[in_app_step("n"), in_app_step("a"), wait(), in_app_step("c")])
    run = advance(run, LATER)
    assert events(run)[-3:] == [("wait", "resumed"), *sent("c"), ("", "completed")]
    assert run.state == {}


def test_an_edit_through_the_api_while_a_run_waits_skips_no_step(api, run_tasks):
    inbox = {"templates": {"en": {"body": "Hi"}}, "type": "in_app"}
    steps = [{"ref": "a", **inbox}, {"ref": "b", **inbox},
             {"ref": "wait", "type": "delay", "config": {"seconds": 60}},
             {"ref": "c", **inbox}, {"ref": "d", **inbox}]
    assert api.put("/api/v1/workflows/w", {"name": "W", "steps": steps}).status_code == 201
    trigger = api.post("/api/v1/workflows/w/trigger", {"recipients": ["u1"]})
    run_id = trigger.json()["runs"][0]["id"]
    run_tasks()
    assert Run.objects.get(pk=run_id).status == Run.Status.WAITING

    edited = {"name": "W", "steps": [steps[1], steps[3], steps[4]]}  # "a" and "wait" removed
    assert api.put("/api/v1/workflows/w", edited).status_code == 200
    advance(Run.objects.get(pk=run_id), datetime.now(UTC) + timedelta(seconds=61))

    timeline = api.get(f"/api/v1/runs/{run_id}").json()["steps"]
    assert [(entry["step"], entry["event"]) for entry in timeline][-4:] == [
        ("wait", "skipped"), ("c", "sent"), ("d", "sent"), ("", "completed")]
