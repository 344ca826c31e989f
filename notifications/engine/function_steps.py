"""Function steps: steps that send nothing but decide when or whether the run goes on."""

import hashlib
import json

from .. import conditions
from ..models import Step, StepLog
from ..ratelimit import throttle_hit
from .context import END, NEXT, WAIT, Pass
from .validation import delay_until, duration_seconds


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
    p.writes.wake("notifications.tasks.advance_run", str(run.id), at=wake_at,
                  name=f"run:{run.id}@{int(wake_at.timestamp())}")
    return WAIT



def throttle(p: Pass, step: Step) -> str:
    """Let the run through if its bucket (this step, the recipient, the tenant and the value at
    `config.key`) let fewer than `limit` runs through within `window`; else end the run with a
    `throttled` entry."""
    run, config = p.run, step.config
    value = conditions.resolve(config["key"], p.variables) if config.get("key") else None
    value = None if value is conditions.MISSING else value
    bucket = json.dumps([run.workflow_id, step.ref, run.recipient_id, run.tenant_id, value],
                        sort_keys=True, default=str)
    window = duration_seconds(config["window"])
    allowed, count = throttle_hit(key=hashlib.sha256(bucket.encode()).hexdigest(),
                                  limit=config["limit"], window_seconds=window, now=p.now)
    detail = {"limit": config["limit"], "window_seconds": window, "count": count}
    if config.get("key"):
        detail["key"] = {"path": config["key"], "value": value}
    if allowed:
        p.log(step.ref, StepLog.Event.PASSED, **detail)
        return NEXT
    p.log(step.ref, StepLog.Event.THROTTLED, **detail)
    return END
