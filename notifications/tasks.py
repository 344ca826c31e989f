"""django-q2 tasks. Thin: take ids, call a service. Each may run twice and must not send twice."""

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from clarion.logs import log_context

from . import delivery, engine, ratelimit, retention, schedules, services
from .models import (
    DeliveryAttempt,
    IdempotencyRecord,
    Message,
    Run,
    Step,
    StepLog,
    StepType,
    Trigger,
)
from .queue import enqueue, enqueue_grouped, enqueue_many

logger = logging.getLogger(__name__)


def advance_run(run_id: str) -> None:
    with log_context(run_id=run_id), transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("workflow", "recipient", "tenant", "trigger")
            .filter(pk=run_id)
            .first()
        )
        if run is not None:
            engine.advance(run, now=timezone.now())


def advance_runs(*run_ids: str) -> None:
    """Advance `run_ids` (a trigger's runs, or a fan-out chunk's) and, while the batch has room,
    other due runs (CLARION["ADVANCE_BATCH_SIZE"] in all), in one transaction: the runs are
    claimed with SELECT … FOR UPDATE SKIP LOCKED (engine.runs_claim: a run another worker holds
    is that worker's), walked together (engine.advance_batch: what the runs share read once, the
    timeline written once), and their deliveries queued as `deliver_messages` tasks of up to
    DELIVERY_BATCH_SIZE messages, all committed together. A task whose runs other batches took
    ends after one query. If the batch fails, it is rolled back and each of its runs goes through
    advance_run in its own transaction instead: a run that fails then is logged and left to the
    sweeper (it stays `running`, and this process takes it in no other batch); the others go on.
    """
    now = timezone.now()
    if not engine.runs_due_exist(list(run_ids), now=now):
        return
    _advance_batch(list(run_ids), now=now)


# An advance lane task that keeps finding full batches hands its lane to a new task after this
# long, well within Q_CLUSTER["timeout"].
LANE_BUDGET_SECONDS = 10.0
# A release that found its lane held by a long transaction is tried again after this pause.
LANE_RELEASE_PAUSE_SECONDS = 0.1


def advance_lane(lane: int, *run_ids: str) -> None:
    """The task of an advance lane (engine/claim.py, "Advance lanes"), queued by a trigger that
    found `lane` free: advance `run_ids` (that trigger's batch) and other due runs, a batch at a
    time as advance_runs does, while batches come up full (each full batch keeps the lane held,
    so the triggers meanwhile queue no task); then release the lane and claim once more (the
    runs of triggers that saw it held), ending when such a claim finds nothing. After
    LANE_BUDGET_SECONDS its last full batch queues a new task for the lane instead, as does a
    release that a long transaction keeps waiting (engine.lane_release) past it."""
    limit = settings.CLARION["ADVANCE_BATCH_SIZE"]
    deadline = time.monotonic() + LANE_BUDGET_SECONDS
    ids, released = list(run_ids), False
    while True:
        hand_over = time.monotonic() >= deadline
        claimed = _advance_batch(ids, now=timezone.now(), lane=lane, hand_over=hand_over)
        ids = []
        if claimed is None:  # the batch failed, its runs went one at a time: claim again
            released = False
        elif claimed >= limit:
            if hand_over:
                return
            released = False
            continue
        elif released and not claimed:
            return
        released = engine.lane_release(lane)
        if not released:  # a long transaction holds the lane: claim its runs as they commit
            if hand_over:
                enqueue("notifications.tasks.advance_lane", lane)
                return
            time.sleep(LANE_RELEASE_PAUSE_SECONDS)


def _advance_batch(run_ids: list[str], *, now: datetime, lane: int | None = None,
                   hand_over: bool = False) -> int | None:
    """advance_runs' batch of `run_ids` topped up with due runs; for an advance lane's task
    (`lane`), topped up even when none of `run_ids` is due, and a full batch holds the lane
    (engine.lane_touch) in its transaction and, with `hand_over`, queues a new task for it.
    Returns how many runs the batch claimed, or None when it failed and its runs went through
    advance_run one at a time (raises when it failed before claiming any and has no ids)."""
    conf = settings.CLARION
    claimed: list[str] = []
    try:
        with transaction.atomic(), enqueue_grouped(
                "notifications.tasks.deliver_message", into="notifications.tasks.deliver_messages",
                size=conf["DELIVERY_BATCH_SIZE"]):
            claimed = engine.runs_claim(run_ids, now=now, limit=conf["ADVANCE_BATCH_SIZE"],
                                        exclude=_failed_recently(now),
                                        top_up_alone=lane is not None)
            if claimed:
                engine.advance_batch(claimed, now=now)
            if lane is not None and len(claimed) >= conf["ADVANCE_BATCH_SIZE"]:
                engine.lane_touch(lane, now=now)
                if hand_over:
                    enqueue("notifications.tasks.advance_lane", lane)
        return len(claimed)
    except Exception:
        if not (claimed or run_ids):
            raise
        logger.warning("a batch of %d runs failed; advancing them one at a time",
                       len(claimed or run_ids), exc_info=True)
        _drop_broken_connection()
    for run_id in claimed or run_ids:
        try:
            advance_run(run_id)
        except Exception:
            logger.exception("run %s failed to advance; the sweeper will retry it", run_id)
            _FAILED[str(run_id)] = time.monotonic()
            _drop_broken_connection()
    return None


# Runs that failed on their own in this process (id → time.monotonic()), taken in no batch's
# top-up for STUCK_AFTER_SECONDS: a run that keeps failing does not undo every batch meanwhile.
_FAILED: dict[str, float] = {}


def _failed_recently(now: datetime) -> frozenset[str]:
    horizon = time.monotonic() - settings.CLARION["STUCK_AFTER_SECONDS"]
    for run_id in [run_id for run_id, at in _FAILED.items() if at < horizon]:
        del _FAILED[run_id]
    return frozenset(_FAILED)


def flush_digest(batch_id: str) -> None:
    """The wake-up at a digest batch's window end: close it and wake the run that carries it."""
    with transaction.atomic():
        engine.batch_close_due(batch_id=batch_id, now=timezone.now())


def deliver_message(message_id: str) -> None:
    """Deliver this message, and up to DELIVERY_BATCH_SIZE - 1 other due ones concurrently."""
    with log_context(message_id=message_id):
        delivery.deliver_batch(message_id)


def deliver_messages(*message_ids: str) -> None:
    """Deliver `message_ids` (the messages a batch of runs queued, advance_runs) and other due
    ones up to DELIVERY_BATCH_SIZE, concurrently; the messages other workers took are theirs."""
    delivery.deliver_batch(list(message_ids))


def fanout_trigger(trigger_id: str) -> None:
    services.trigger_fanout(trigger_id=trigger_id)


def apply_retention() -> dict:
    """Hourly: delete what is past its retention period (notifications/retention.py)."""
    report = retention.retention_apply()
    logger.info("retention deleted %s%s", report.deleted or "nothing",
                "" if report.finished else " (time budget spent; the next pass goes on)")
    return report.deleted


def fire_schedule(zone_id: int) -> None:
    schedules.schedule_fire(zone_id=zone_id)


SWEEP_CHUNK = 500  # ids read, and tasks enqueued with one INSERT, at a time


def sweep(now: datetime | None = None) -> dict:
    """Re-enqueue what is due or stuck; runs every minute on the scheduler. The backstop for
    every crash, so each part runs on its own: one that fails is logged (and named in
    `failed_parts`) and the others still run.

    - schedule occurrences that are due (their wake-up was lost);
    - topic fan-outs that made no progress for STUCK_AFTER_SECONDS (their task was lost or
      killed part-way; they resume after their last committed chunk);
    - waiting runs whose wake-up time has passed;
    - running runs untouched for STUCK_AFTER_SECONDS (their task was lost);
    - queued messages whose retry is due, or that were never picked up;
    - messages stuck in `sending`: marked sent when their latest provider call succeeded (the
      worker stopped before recording it), re-queued when no provider call started, else of
      unknown outcome (see delivery.message_mark_outcome_unknown: sent when the provider has
      reported on it since or lists it, sent again where the provider's list proves it never
      arrived or where it de-duplicates on the idempotency key);
    - idempotency records past their 24 hours;
    - rate-limit and throttle counters no limit can read again.

    Takes the current time (aware, UTC) or None for now. Returns how many of each were handled
    ({"fanouts", "schedules", "runs", "messages", "recovered", "unknown", "counters": int}) and
    "failed_parts" (names).
    """
    now = now or timezone.now()
    stuck_before = now - timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"])
    counts = {"runs": 0, "messages": 0, "unknown": 0, "recovered": 0, "fanouts": 0,
              "schedules": 0, "counters": 0}
    failed = []
    for name, part in (("fanouts", _sweep_fanouts), ("schedules", _sweep_schedules),
                       ("runs", _sweep_runs),
                       ("queued", _sweep_queued), ("sending", _sweep_sending),
                       ("idempotency", _sweep_idempotency), ("counters", _sweep_counters)):
        try:
            part(now, stuck_before, counts)
        except Exception:
            logger.exception("The sweeper's %r part failed; its other parts go on.", name)
            failed.append(name)
            _drop_broken_connection()
    return {**counts, "failed_parts": failed}


def _drop_broken_connection() -> None:
    """After a failed part: close the connection if it is broken (Django reconnects on the next
    query), so the next part does not inherit the failure. Only between parts, when no cursor
    is open."""
    if transaction.get_autocommit():
        connection.close_if_unusable_or_obsolete()


def _enqueue_ids(func: str, ids: QuerySet) -> int:
    """Enqueue `func(id)` for each id of the values_list queryset `ids`, a chunk at a time."""
    total, chunk = 0, []
    for pk in ids.iterator(chunk_size=SWEEP_CHUNK):
        chunk.append((str(pk),))
        if len(chunk) == SWEEP_CHUNK:
            enqueue_many(func, chunk)
            total, chunk = total + len(chunk), []
    enqueue_many(func, chunk)
    return total + len(chunk)


def _sweep_fanouts(now: datetime, stuck_before: datetime, counts: dict) -> None:
    stalled = Trigger.objects.filter(
        Q(fanout_at__lt=stuck_before) | Q(fanout_at__isnull=True, created_at__lt=stuck_before),
        fanout=Trigger.Fanout.PENDING,
    ).values_list("id", flat=True)
    counts["fanouts"] += _enqueue_ids("notifications.tasks.fanout_trigger", stalled)


def _sweep_schedules(now: datetime, stuck_before: datetime, counts: dict) -> None:
    counts["schedules"] += _enqueue_ids("notifications.tasks.fire_schedule",
                                        schedules.schedules_due(now))


def _sweep_runs(now: datetime, stuck_before: datetime, counts: dict) -> None:
    due = Run.objects.filter(
        Q(status=Run.Status.WAITING, wake_at__lte=now)
        | Q(status=Run.Status.RUNNING, updated_at__lt=stuck_before)
    ).values_list("id", flat=True)
    counts["runs"] += _enqueue_ids("notifications.tasks.advance_run", due)


def _sweep_queued(now: datetime, stuck_before: datetime, counts: dict) -> None:
    due = Message.objects.filter(
        Q(status=Message.Status.QUEUED, next_attempt_at__lte=now)
        | Q(status=Message.Status.QUEUED, next_attempt_at__isnull=True,
            updated_at__lt=stuck_before)
    ).values_list("id", flat=True)
    counts["messages"] += _enqueue_ids("notifications.tasks.deliver_message", due)


def _sweep_sending(now: datetime, stuck_before: datetime, counts: dict) -> None:
    """Each stuck message on its own (its own transaction): one that fails is logged, and the
    part fails after the others were handled."""
    stuck = list(Message.objects.filter(
        status=Message.Status.SENDING, updated_at__lt=stuck_before
    ).values_list("id", flat=True))
    failures = 0
    for message_id in stuck:
        try:
            with transaction.atomic():
                counts_for_one = _sweep_one_sending(message_id, now)
        except Exception:
            logger.exception("The sweeper could not handle message %s stuck in sending.",
                             message_id)
            failures += 1
            continue
        for key, value in counts_for_one.items():
            counts[key] += value
    if failures:
        raise RuntimeError(f"{failures} of {len(stuck)} messages stuck in sending failed")


def _sweep_one_sending(message_id, now: datetime) -> dict:
    """One message found stuck in `sending`, in the caller's transaction: its row stays locked
    while it is decided on (a provider lookup included), so the worker finishing it, a resend
    or another sweep waits or skips it. Re-read as still stuck: one queued again and claimed
    since it was found is its new worker's, whose call may be on the wire."""
    stuck_before = now - timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"])
    message = (Message.objects.select_for_update(skip_locked=True, of=("self",))
               .select_related("run")
               .filter(pk=message_id, status=Message.Status.SENDING,
                       updated_at__lt=stuck_before).first())
    if message is None:  # finished or claimed again meanwhile, or another sweep has it
        return {}
    # Only the current send's attempts: a success before a resend says nothing about this one.
    current = message.delivery_attempts.filter(send_number=message.send_number)
    latest = current.order_by("-started_at", "-id").first()
    started = current.filter(outcome=DeliveryAttempt.Outcome.STARTED).exists()
    if latest is not None and latest.outcome == DeliveryAttempt.Outcome.SUCCEEDED:
        delivery.message_mark_sent_from_ledger(message, latest)  # accepted: never again
        return {"recovered": 1}
    if started:
        if delivery.message_mark_outcome_unknown(message, now=now) == "sent":
            return {"recovered": 1}  # the provider reported on it, or lists it: accepted
        return {"unknown": 1}
    if Message.objects.filter(pk=message.pk, status=Message.Status.SENDING,
                              send_number=message.send_number,
                              updated_at=message.updated_at).update(
        status=Message.Status.QUEUED, attempts=max(message.attempts - 1, 0), updated_at=now
    ):
        # On the run's timeline, so support sees why it went out later than its neighbours.
        StepLog.objects.create(
            run_id=message.run_id, step_ref=message.step_ref, event=StepLog.Event.RETRYING,
            detail={"message_id": str(message.id),
                    "reason": "the worker delivering it stopped before its provider call "
                              "started; queued again by the sweeper"})
        enqueue("notifications.tasks.deliver_message", str(message.pk))
        return {"messages": 1}
    return {}


def _sweep_counters(now: datetime, stuck_before: datetime, counts: dict) -> None:
    windows = [engine.duration_seconds(config["window"]) for config in Step.objects.filter(
        type=StepType.THROTTLE).values_list("config", flat=True)
        if isinstance(config, dict) and isinstance(config.get("window"), dict)]
    counts["counters"] = ratelimit.counters_prune(
        now=now, throttle_window_seconds=max(windows, default=0))


def _sweep_idempotency(now: datetime, stuck_before: datetime, counts: dict) -> None:
    ttl = timedelta(seconds=settings.CLARION["IDEMPOTENCY_TTL_SECONDS"])
    IdempotencyRecord.objects.filter(created_at__lt=now - ttl).delete()
