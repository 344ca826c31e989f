"""The walk loop: advances a run from its cursor until it waits or ends.

Deciding what a step does is pure (conditions, delay arithmetic, rendering); the loop writes the
decision (StepLog, Message, cursor) in the caller's transaction while the run's row is locked, so a
task that runs twice finds the cursor already moved and the (run, step) Message already there.
"""

import logging
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from .. import conditions
from ..models import Run, Step, StepLog, StepType
from ..rendering.variables import run_messages, run_variables
from . import approval_step, branches, channel_steps, digest, function_steps, route
from .context import END, NEXT, WAIT, Batch, Pass
from .writes import RunMovedOn, Writes, record

__all__ = ["RunMovedOn", "STEP_MOVED_BEHIND", "STEP_REMOVED", "advance"]

logger = logging.getLogger(__name__)


def advance(run: Run, *, now: datetime, batch: Batch | None = None) -> None:
    """Walk `run` from its cursor. The caller holds the run's row lock in a transaction.

    `batch`: when the caller advances several runs in one transaction (batch.advance_batch),
    what is the same for all of them (the workflow's steps, the run's messages read together)
    comes from it, and what the pass writes (writes.py) is written with the whole batch; a run
    that moved on raises RunMovedOn (when the batch writes) instead of undoing its pass alone."""
    if run.status not in (Run.Status.RUNNING, Run.Status.WAITING):
        return
    if run.status == Run.Status.WAITING and run.wake_at and run.wake_at > now:
        return
    from_status = run.status
    if batch is not None:
        every_step = batch.steps_of(run.workflow)
        messages = batch.messages_of(run)
    else:
        every_step = list(run.workflow.steps.prefetch_related("templates__published_version"))
        messages = run_messages(run)
    # The run's own sequence: the steps of the branches it took are spliced in (branches.py).
    steps = branches.effective_steps(every_step, branches.branch_choices(run))
    p = Pass(run=run, now=now, variables=run_variables(
                 run, messages, actor=batch.actor_of(run) if batch is not None else None,
                 links=batch.links_read(run.workflow) if batch is not None else True),
             done={message.step_ref for message in messages},
             preferences=batch.preference_memo(run) if batch is not None else {},
             writes=batch.writes if batch is not None else Writes(),
             shared=batch.shared if batch is not None else {})
    _find_resume_point(p, steps)
    run.step_refs = []
    while run.cursor < len(steps):
        step = steps[run.cursor]
        if step.ref in p.walked:  # walked before an edit moved it after the resume point
            run.cursor += 1
            continue
        taken = len(branches.branch_choices(run))
        outcome = _run_step(p, step)
        if len(branches.branch_choices(run)) != taken:  # it took a branch: walk its steps next
            steps = branches.effective_steps(every_step, branches.branch_choices(run))
        if outcome == WAIT:
            run.status = Run.Status.WAITING
            run.step_refs = [s.ref for s in steps]
            break
        run.cursor += 1
        if outcome == END:
            run.status = Run.Status.COMPLETED
            run.wake_at = None
            break
    else:
        run.status = Run.Status.COMPLETED
        run.wake_at = None
        p.log("", StepLog.Event.COMPLETED)
    # Guarded by the status read under the lock: a write that finds the run moved on (it cannot
    # while the lock is held) undoes this whole pass rather than overwrite, e.g., a cancellation.
    run.updated_at = timezone.now()
    p.writes.run(run, from_status)
    if batch is not None:  # written with the batch (Batch.write)
        batch.passes.append(p)
        return
    try:
        p.writes.flush()
    except RunMovedOn:
        logger.warning("run %s left %s during its pass; the pass is undone", run.pk, from_status)
        transaction.set_rollback(True)
        return
    record([p], p.writes)


STEP_REMOVED = "the step was removed from the workflow while the run waited on it"
STEP_MOVED_BEHIND = ("the workflow was edited while the run waited: the step moved before the "
                     "step the run waited at")


def _find_resume_point(p: Pass, steps: list[Step]) -> None:
    """Put the cursor where a run that waited goes on, however the workflow was edited meanwhile.

    `run.step_refs` holds the refs as they were when the run began waiting and `run.cursor` the
    one it waited at: the refs before it were walked, the refs after it were still ahead. The
    run resumes at the step it waited at, wherever that step now stands. If it was removed, a
    `skipped` entry says so and the run resumes at the earliest (in the current order) of the
    steps it still had ahead; if none of those is left either, after the last step it had
    walked that is still there (so steps added at the end run), or from the start when none is.
    Steps it had walked are passed over wherever they now stand, and a step it had ahead that
    an edit moved before the step it waited at gets a `skipped` entry: no step it had ahead is
    passed without one. Steps added before the resume point are not walked by this run.
    """
    run = p.run
    plan = list(run.step_refs or [])
    legacy = (run.state or {}).get("waiting_at")  # runs that began waiting before step_refs
    if legacy is not None:
        run.state = {k: v for k, v in run.state.items() if k != "waiting_at"}
        waiting_at, ahead, walked = legacy, [], frozenset()
    elif plan and run.cursor < len(plan):
        waiting_at = plan[run.cursor]
        ahead, walked = plan[run.cursor + 1:], frozenset(plan[:run.cursor])
    else:
        return
    p.walked = walked
    position = {step.ref: index for index, step in enumerate(steps)}
    here = position.get(waiting_at)
    # A run waits at a delay or digest step, at a channel step during the person's quiet
    # hours, or at a route step between its channels.
    if here is not None and (steps[here].type in (StepType.DELAY, StepType.DIGEST,
                                                  StepType.ROUTE, StepType.APPROVAL)
                             or steps[here].is_channel):
        run.cursor = here
        for ref in ahead:
            if position.get(ref, here) < here:
                p.log(ref, StepLog.Event.SKIPPED, reason=STEP_MOVED_BEHIND)
        return
    run.wake_at = None
    p.log(waiting_at, StepLog.Event.SKIPPED, reason=STEP_REMOVED)
    if legacy is not None:
        return  # nothing is known of the steps around it: go on from where it stood
    still_ahead = [position[ref] for ref in ahead if ref in position]
    still_walked = [position[ref] for ref in walked if ref in position]
    if still_ahead:
        run.cursor = min(still_ahead)
    else:
        run.cursor = max(still_walked) + 1 if still_walked else 0


def _run_step(p: Pass, step: Step) -> str:
    resuming = p.run.wake_at is not None  # only the step the run waited at has a wake-up time
    # A delay's, digest's or route's conditions were asked before it started waiting; a
    # channel step back from quiet hours asks again (its conditions or the data may have
    # changed while it waited).
    ask = not (resuming and step.type in (StepType.DELAY, StepType.DIGEST, StepType.ROUTE,
                                             StepType.APPROVAL))
    if ask and step.conditions:
        branches.refresh_steps(p, step.conditions)
    if ask and step.conditions and not conditions.evaluate(step.conditions, p.variables):
        p.run.wake_at = None
        p.log(step.ref, StepLog.Event.CONDITION_FALSE,
              conditions=conditions.explain(step.conditions, p.variables))
        return NEXT
    if ask and step.is_channel and step.ref not in p.done:
        checked = channel_steps.unless_reached(p, step)
        if checked is not None:
            p.run.wake_at = None
            p.log(step.ref, StepLog.Event.CONDITION_FALSE, **checked)
            return NEXT
    if step.type == StepType.DELAY:
        return function_steps.delay(p, step)
    if step.type == StepType.THROTTLE:
        return function_steps.throttle(p, step)
    if step.type == StepType.DIGEST:
        return digest.digest(p, step)
    if step.type == StepType.BRANCH:
        return branches.branch(p, step)
    if step.type == StepType.ROUTE:
        return route.route(p, step)
    if step.type == StepType.APPROVAL:
        return approval_step.approval(p, step)
    if step.is_channel and step.ref not in p.done:
        gate = channel_steps.preferences_gate(p, step)
        if gate is not None:
            return gate
    if step.is_channel:
        if step.ref not in p.done:  # a re-run: this step's message exists already
            # Email renders into a layout, in-app writes the inbox; the others go to providers.
            channel_steps.send(p, step)
        return NEXT
    p.log(step.ref, StepLog.Event.SKIPPED, reason=f"step type {step.type!r} is not supported")
    return NEXT


