"""Function steps: steps that send nothing but decide when or whether the run goes on."""

from ..models import Step, StepLog
from ..queue import enqueue_at
from .context import NEXT, WAIT, Pass
from .validation import delay_until


def delay(p: Pass, step: Step) -> str:
    run, now = p.run, p.now
    if run.wake_at is not None:
        if run.wake_at > now:
            return WAIT
        p.log(step.ref, StepLog.Event.RESUMED, waited_until=run.wake_at.isoformat())
        run.wake_at = None
        return NEXT
    wake_at, problem = delay_until(step.config, p.variables, now)
    if wake_at is None:
        p.log(step.ref, StepLog.Event.SKIPPED, reason=problem)
        return NEXT
    if wake_at <= now:
        p.log(step.ref, StepLog.Event.SKIPPED, reason="the delay has already passed",
              until=wake_at.isoformat())
        return NEXT
    run.wake_at = wake_at
    p.log(step.ref, StepLog.Event.DELAYED, until=wake_at.isoformat())
    enqueue_at("notifications.tasks.advance_run", str(run.id), at=wake_at,
               name=f"run:{run.id}@{int(wake_at.timestamp())}")
    return WAIT

