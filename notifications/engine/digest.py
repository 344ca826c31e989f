"""The digest step: runs for the same (workflow, step, recipient, tenant, key value) gather in one
batch while its window is open; when it closes, one run goes on carrying the batch and every
other run ends `digested`.

- Joining: under the batch's row lock. The database holds at most one open batch per key (the
  partial unique constraint digestbatch_one_open), so two runs that open one at once cannot
  both succeed: the second's INSERT fails and it joins the first's batch.
- Closing (`batch_close`): by the precise wake-up at the window's end (tasks.flush_digest), by
  the run that brings it to `max_events`, or by a late run or the sweeper when the wake-up was
  lost. One transaction under the batch's row lock: the live runs are locked (id order), the
  carrier chosen (the closing run when it is in the batch, else the oldest event's run), the
  others ended, every event marked (included, cancelled, read). A worker killed in it commits
  nothing; the task runs again.
- Carrying: the carrier's pass writes `steps.<ref>` = {count, events (oldest first, at most
  EVENTS_RENDERED), actors (distinct), batch} for the later steps' templates and conditions.

Lock order: a run's lock, then its batch's. A run already in a batch only takes the batch's
lock with SKIP LOCKED, so a closer that holds the batch and waits on that run's lock never
deadlocks with it.
"""

import hashlib
import json
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F

from .. import conditions, recurrence
from ..models import DigestBatch, DigestEvent, Message, Run, Step, StepLog, StepType
from ..queue import enqueue, enqueue_at
from .context import END, NEXT, WAIT, Pass
from .validation import WEEKDAYS, duration_seconds

EVENTS_RENDERED = 100  # events a template sees in steps.<ref>.events; `count` has them all
JOIN_ATTEMPTS = 5

NOTHING_LEFT = "every event of the digest was read in-app before its window closed"


def window_closes_at(window: dict, opened_at: datetime, timezone_name: str) -> datetime:
    """When a batch opened at aware `opened_at` closes (UTC): a duration after it, or the next
    daily / weekly local time strictly after it in `timezone_name` (the recipient's; UTC when
    blank or unknown). Local times follow notifications.recurrence: a repeated local time closes
    at its first occurrence, a skipped one at the moment the clocks jump."""
    tz = recurrence.zone(timezone_name)
    if "daily" in window:
        rule = {"frequency": "daily", "at": window["daily"]}
    elif "weekly" in window:
        weekly = window["weekly"]
        rule = {"frequency": "weekly", "at": weekly["time"], "days": [weekly["day"]]}
    else:
        return opened_at + timedelta(seconds=duration_seconds(window))
    return recurrence.occurrences(rule, tz, after=opened_at, count=1)[0]


def batch_key(run: Run, step: Step, value) -> str:
    """The SHA-256 naming a batch: (workflow, step, recipient, tenant, key value)."""
    bucket = json.dumps([run.workflow_id, step.ref, run.recipient_id, run.tenant_id, value],
                        sort_keys=True, default=str)
    return hashlib.sha256(bucket.encode()).hexdigest()


def digest(p: Pass, step: Step) -> str:
    """The digest step's handler, for a run arriving at it or woken while in a batch."""
    run = p.run
    p.flush()  # a close reads and ends other runs, and their in-app messages
    event = (DigestEvent.objects.filter(run=run, step_ref=step.ref)
             .select_related("batch").first())
    if event is None:
        return _join(p, step)
    batch = event.batch
    if batch.status == DigestBatch.Status.CLOSED:
        if batch.carrier_id == run.pk:
            return _carry(p, step, batch)
        p.run.wake_at = None  # ended by the close; a stray task finds it so
        p.log(step.ref, StepLog.Event.DIGESTED, batch=str(batch.pk),
              carrier=str(batch.carrier_id) if batch.carrier_id else None)
        return END
    if batch.closes_at > p.now:
        run.wake_at = batch.closes_at
        return WAIT
    # Due, and its wake-up has not closed it yet (lost, or running now): close it here, unless
    # another process holds it (then that one will, and end or carry this run).
    locked = (DigestBatch.objects.select_for_update(skip_locked=True)
              .filter(pk=batch.pk, status=DigestBatch.Status.OPEN).first())
    if locked is None:
        run.wake_at = batch.closes_at
        return WAIT
    batch_close(batch=locked, now=p.now, reason=DigestBatch.CloseReason.WINDOW, current=run)
    return _carry(p, step, locked)


def _join(p: Pass, step: Step) -> str:
    run, config = p.run, step.config
    value = conditions.resolve(config["key"], p.variables) if config.get("key") else None
    value = None if value is conditions.MISSING else value
    key, opened = batch_key(run, step, value), False
    for _ in range(JOIN_ATTEMPTS):
        batch = (DigestBatch.objects.select_for_update(of=("self",))
                 .filter(key=key, status=DigestBatch.Status.OPEN).first())
        if batch is not None and batch.closes_at <= p.now:
            # Its window is over but its wake-up has not run: close it, then open a new one.
            batch_close(batch=batch, now=p.now, reason=DigestBatch.CloseReason.WINDOW)
            continue
        if batch is not None:
            break
        closes_at = window_closes_at(config["window"], p.now, run.recipient.timezone)
        try:
            with transaction.atomic():  # a savepoint: a lost race leaves the pass usable
                batch = DigestBatch.objects.create(
                    workflow_id=run.workflow_id, step_ref=step.ref, recipient_id=run.recipient_id,
                    tenant_id=run.tenant_id, key=key, key_value=value, opened_at=p.now,
                    closes_at=closes_at)
        except IntegrityError:
            continue  # another run opened it first (and has committed): join that one
        opened = True
        enqueue_at("notifications.tasks.flush_digest", str(batch.pk), at=closes_at,
                   name=f"digest:{batch.pk}")
        break
    else:
        raise RuntimeError(f"no open digest batch for key {key} after {JOIN_ATTEMPTS} attempts")
    at_once = opened and bool(config.get("first_at_once"))
    event = DigestEvent.objects.create(
        batch=batch, run=run, step_ref=step.ref, data=p.variables.get("data", {}),
        actor=p.variables.get("actor", {}), at=run.trigger.created_at,
        outcome=DigestEvent.Outcome.SENT_AT_ONCE if at_once else DigestEvent.Outcome.PENDING)
    DigestBatch.objects.filter(pk=batch.pk).update(event_count=F("event_count") + 1)
    batch.event_count += 1
    detail = {"batch": str(batch.pk), "opened": opened, "events": batch.event_count,
              "closes_at": batch.closes_at.isoformat()}
    if config.get("key"):
        detail["key"] = {"path": config["key"], "value": value}
    if at_once:
        p.log(step.ref, StepLog.Event.PASSED, first_at_once=True, **detail)
        _expose(p, step, batch, [event])
        return NEXT
    max_events = config.get("max_events")
    if max_events and batch.event_count >= max_events:
        p.log(step.ref, StepLog.Event.BATCHED, **detail)
        batch_close(batch=batch, now=p.now, reason=DigestBatch.CloseReason.MAX_EVENTS,
                    current=run)
        return _carry(p, step, batch)
    run.wake_at = batch.closes_at
    p.log(step.ref, StepLog.Event.BATCHED, **detail)
    return WAIT


def batch_close(*, batch: DigestBatch, now: datetime, reason: str,
                current: Run | None = None) -> Run | None:
    """Close `batch` (row-locked by the caller, open): mark each event, end every live run but
    the carrier with a `digested` entry, and wake the carrier (or, when `current` — the run
    whose pass closes it — is in the batch, leave it to that pass). Returns the carrier, None
    when no run in it is live (all cancelled, or only a first_at_once event). `reason`: a
    DigestBatch.CloseReason."""
    events = list(batch.events.order_by("at", "id")
                  .values_list("id", "run_id", "outcome"))
    members = [run_id for _, run_id, outcome in events
               if outcome != DigestEvent.Outcome.SENT_AT_ONCE]
    current_id = current.pk if current is not None and current.pk in members else None
    locked = (Run.objects.select_for_update(of=("self",))
              .filter(pk__in=[pk for pk in members if pk != current_id],
                      status=Run.Status.WAITING)
              .order_by("pk").values_list("pk", "cursor", "step_refs"))
    live = {pk for pk, cursor, refs in locked
            if cursor < len(refs or []) and refs[cursor] == batch.step_ref}
    if current_id is not None:
        live.add(current_id)
    cutoff = now if reason == DigestBatch.CloseReason.MAX_EVENTS else min(now, batch.closes_at)
    skip_read = bool(_config(batch).get("skip_read"))
    read = set()
    if skip_read and live:
        read = set(Message.objects.filter(run_id__in=live, channel=StepType.IN_APP,
                                          read_at__lte=cutoff).values_list("run_id", flat=True))
    outcomes: dict[str, list[int]] = {}
    for event_id, run_id, outcome in events:
        if outcome == DigestEvent.Outcome.SENT_AT_ONCE:
            continue
        if run_id not in live:
            outcome = DigestEvent.Outcome.CANCELLED
        elif run_id in read:
            outcome = DigestEvent.Outcome.READ
        else:
            outcome = DigestEvent.Outcome.INCLUDED
        outcomes.setdefault(outcome, []).append(event_id)
    for outcome, ids in outcomes.items():
        DigestEvent.objects.filter(pk__in=ids).update(outcome=outcome)
    ordered_live = [run_id for _, run_id, _ in events if run_id in live]
    carrier_id = current_id or (ordered_live[0] if ordered_live else None)
    if carrier_id is None and members:
        reason = DigestBatch.CloseReason.CANCELLED
    batch.status, batch.closed_at = DigestBatch.Status.CLOSED, now
    batch.close_reason, batch.carrier_id = reason, carrier_id
    batch.save(update_fields=["status", "closed_at", "close_reason", "carrier"])
    others = [pk for pk in ordered_live if pk != carrier_id]
    Run.objects.filter(pk__in=others, status=Run.Status.WAITING).update(
        status=Run.Status.COMPLETED, wake_at=None, updated_at=now)
    StepLog.objects.bulk_create([
        StepLog(run_id=pk, step_ref=batch.step_ref, event=StepLog.Event.DIGESTED,
                detail={"batch": str(batch.pk), "carrier": str(carrier_id)})
        for pk in others])
    if carrier_id is not None and carrier_id != current_id:
        Run.objects.filter(pk=carrier_id).update(wake_at=now, updated_at=now)
        enqueue("notifications.tasks.advance_run", str(carrier_id))
    return carrier_id


def batch_close_due(*, batch_id: str, now: datetime) -> str | None:
    """The wake-up at a batch's window end: close it if it is still open (under its row lock;
    a second run of the task finds it closed). Returns the carrier's id, or None."""
    batch = (DigestBatch.objects.select_for_update(of=("self",))
             .filter(pk=batch_id, status=DigestBatch.Status.OPEN).first())
    if batch is None:
        return None
    if batch.closes_at > now:  # woken early (a clock skew between processes): wake again
        enqueue_at("notifications.tasks.flush_digest", str(batch.pk), at=batch.closes_at,
                   name=f"digest:{batch.pk}")
        return None
    carrier = batch_close(batch=batch, now=now, reason=DigestBatch.CloseReason.WINDOW)
    return str(carrier) if carrier else None


def _config(batch: DigestBatch) -> dict:
    step = batch.workflow.steps.filter(ref=batch.step_ref, type=StepType.DIGEST).first()
    return dict(step.config or {}) if step is not None else {}


def _carry(p: Pass, step: Step, batch: DigestBatch) -> str:
    """The carrier's part: expose the batch's included events to the later steps and go on,
    or end when none is left."""
    p.run.wake_at = None
    included = list(batch.events.filter(outcome=DigestEvent.Outcome.INCLUDED)
                    .order_by("at", "id"))
    left_out = {outcome: n for outcome, n in (
        (DigestEvent.Outcome.READ, batch.events.filter(outcome=DigestEvent.Outcome.READ).count()),
        (DigestEvent.Outcome.CANCELLED,
         batch.events.filter(outcome=DigestEvent.Outcome.CANCELLED).count())) if n}
    detail = {"batch": str(batch.pk), "closed_by": batch.close_reason, "count": len(included),
              **({"left_out": left_out} if left_out else {})}
    if not included:
        p.log(step.ref, StepLog.Event.SKIPPED, reason=NOTHING_LEFT, **detail)
        return END
    p.log(step.ref, StepLog.Event.RESUMED, **detail)
    _expose(p, step, batch, included)
    return NEXT


def _expose(p: Pass, step: Step, batch: DigestBatch, events: list[DigestEvent]) -> None:
    actors, seen = [], set()
    for event in events:
        actor = event.actor or {}
        ident = json.dumps(actor.get("id", actor) if isinstance(actor, dict) else actor,
                           sort_keys=True, default=str)
        if actor and ident not in seen:
            seen.add(ident)
            actors.append(actor)
    value = {
        "count": len(events),
        "events": [{"data": event.data, "actor": event.actor, "at": event.at.isoformat()}
                   for event in events[:EVENTS_RENDERED]],
        "actors": actors,
        "batch": str(batch.pk),
    }
    state = dict(p.run.state or {})
    state["steps"] = {**state.get("steps", {}), step.ref: value}
    p.run.state = state
    p.variables["steps"] = {**p.variables.get("steps", {}), step.ref: value}


__all__ = ["EVENTS_RENDERED", "WEEKDAYS", "batch_close", "batch_close_due", "digest",
           "window_closes_at"]
