"""Claiming the runs one advance task walks: the ones it was given, topped up with other due runs.

Like the delivery's claim (delivery.claim_batch), a worker locks the runs it will walk with
SELECT … FOR UPDATE SKIP LOCKED in its own transaction: two workers never take the same run, a
run another worker holds is passed over (that worker walks it), and a worker killed mid-batch
holds nothing once PostgreSQL sees its connection close — its transaction rolls back, the runs
are due again and the next task's top-up, its own task (presented again after Q_CLUSTER
"retry") or the sweeper takes them. Each run's task stays queued until it ran, so a run is never
left without one: topping up only makes the other runs' own tasks find them done.

On SQLite (no row locks) writers are serialized by the IMMEDIATE transactions, so the same holds.

Advance lanes (tasks.advance_lane) let a trigger queue no task when one will take its runs anyway:
a lane is held (an AdvanceLane row) from the trigger that queues its task until that task, having
claimed batches until one came up short, releases it. A trigger whose batch falls in a held lane
queues nothing; none of its runs is lost, because:

- the trigger takes the lane's advisory lock shared in its own transaction, then reads the
  lane's row (lanes_hold), and the task's release takes that lock exclusively before it
  DELETEs the row (lane_release), so it waits for every trigger that took the lock before it:
  once the release returns, every trigger that saw the lane held has committed, and the claim
  the task runs next sees its runs. A trigger that asks for the lock after the release waits
  for the release to commit, then reads the row (a snapshot taken after the lock) and finds
  it gone. An advisory lock rather than a row lock (FOR KEY SHARE): overlapping triggers on a
  row lock make a MultiXact each (ids and member space that VACUUM must freeze database-wide),
  and a row lock taken while the DELETE waits is granted at once, so a stream of overlapping
  triggers kept the release (and the runs waiting for it) waiting; the lock manager queues a
  shared lock behind a waiting exclusive one. So that a long transaction holding the lane (a
  schedule's occurrence writes its triggers in one) keeps no trigger waiting behind the
  release, the release gives up after RELEASE_LOCK_TIMEOUT_MS: the lane stays held, the task
  claims (the runs committed meanwhile) and tries again;
- a trigger that reads the row after the release sees none, holds the lane again and queues a
  task of its own (so two tasks may share a lane for a while: both claim with SKIP LOCKED);
- the task claims again after each release and ends only when a claim finds nothing due that no
  other worker holds (a run another worker holds is that worker's: its task, presented again if
  the worker dies, claims it again, as any advance task's top-up does);
- a task that is lost (with the Redis broker, a worker killed while running it) leaves its lane
  held: the lane counts as free once ADVANCE_LANE_STALE_SECONDS passed since its task last
  claimed a full batch (the next trigger in it holds it again and queues a task, whose claims
  take the runs left), and the sweeper re-enqueues any run left running STUCK_AFTER_SECONDS.

On SQLite the trigger's and the release's transactions are serialized, so the same holds.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import Q

from ..models import AdvanceLane, Run


def run_is_due(now: datetime) -> Q:
    """The runs `engine.advance` would walk at `now`: running, or waiting with no wake-up time
    or one that has passed."""
    return Q(status=Run.Status.RUNNING) | Q(status=Run.Status.WAITING, wake_at__isnull=True) \
        | Q(status=Run.Status.WAITING, wake_at__lte=now)


def runs_claim(run_ids: list[str], *, now: datetime, limit: int,
               exclude: frozenset[str] = frozenset(), top_up_alone: bool = False) -> list[str]:
    """Lock, in the caller's transaction, those of `run_ids` that are due and that no other
    transaction holds; then, when at least one was (or always, with `top_up_alone`: an advance
    lane's task), up to `limit` in all with other due runs (running and touched within
    STUCK_AFTER_SECONDS, or waiting with a wake-up time passed within it; older ones are the
    sweeper's, so a run that keeps failing is not taken again by every batch). `exclude`: ids
    never taken as a top-up (runs that failed in this process).

    Returns the locked run ids (str), `run_ids`' first, or [] when none of `run_ids` was
    claimable (without `top_up_alone`: they are done, or another worker is walking them, and
    this task is a no-op).
    """
    fresh_after = now - timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"])
    locked = Run.objects.select_for_update(skip_locked=True, of=("self",))
    mine = [str(pk) for pk in locked.filter(run_is_due(now), pk__in=run_ids)
            .values_list("pk", flat=True)] if run_ids else []
    if (not mine and not top_up_alone) or len(mine) >= limit:
        return mine
    others = (locked.filter(Q(status=Run.Status.RUNNING, updated_at__gte=fresh_after)
                            | Q(status=Run.Status.WAITING, wake_at__lte=now,
                                wake_at__gte=fresh_after))
              .exclude(pk__in=[*mine, *exclude])
              .values_list("pk", flat=True)[: limit - len(mine)])
    return mine + [str(pk) for pk in others]


def runs_due_exist(run_ids: list[str], *, now: datetime) -> bool:
    """Whether any of `run_ids` is due, read without a lock or transaction (one query): an
    advance task whose runs were all walked by other batches ends with this."""
    return Run.objects.filter(run_is_due(now), pk__in=run_ids).exists()


# The first key of the advisory lock of an advance lane (the second is the lane); any constant
# other Clarion locks do not use (inbox.services.ITEM_ORDER_LOCK is 7001).
ADVANCE_LANE_LOCK = 7_002
# PostgreSQL's SQLSTATE when lock_timeout passed (lock_not_available).
LOCK_NOT_AVAILABLE = "55P03"


def lanes_hold(lanes: list[int], *, now: datetime) -> set[int]:
    """In the caller's transaction (a trigger's), which of `lanes` an advance lane task already
    holds (held within ADVANCE_LANE_STALE_SECONDS): on PostgreSQL their advisory locks are held
    shared until the caller commits, so the task's release waits for it. The other lanes (free,
    or stale: their task was lost, or waits behind a long queue) are marked held as of `now`,
    and the caller queues a task for each; so a stale lane costs one new task, not one per
    trigger. One statement on PostgreSQL (the function of migration 0041, which takes the locks,
    then reads with a snapshot taken after them; no row is locked).

    Returns the lanes already held: the caller queues no task for those.
    """
    fresh_after = now - timedelta(seconds=settings.CLARION["ADVANCE_LANE_STALE_SECONDS"])
    lanes = sorted(set(lanes))
    if connection.vendor != "postgresql":  # the caller's IMMEDIATE transaction serializes it
        held = set(AdvanceLane.objects.filter(lane__in=lanes, touched_at__gte=fresh_after)
                   .values_list("lane", flat=True))
        AdvanceLane.objects.bulk_create(
            [AdvanceLane(lane=lane, touched_at=now) for lane in lanes if lane not in held],
            update_conflicts=True, unique_fields=["lane"], update_fields=["touched_at"])
        return held
    sql, params = lanes_hold_call(lanes, now=now)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        return {lane for (lane,) in cursor.fetchall()}


def lanes_hold_call(lanes: list[int], *, now: datetime,
                    lanes_sql: str = "") -> tuple[str, list]:
    """lanes_hold's work on PostgreSQL as an SQL expression and its parameters, for a caller
    that sends it inside a statement of its own (a trigger's one statement: services/
    trigger_statement.py): a set-returning call (smallint) giving the lanes already held, the
    others marked held as of `now`, their advisory locks taken shared until the transaction
    ends; its reads take their own snapshot after the locks (migration 0041), wherever the call
    sits in the statement. `lanes_sql`: the lanes as an SQL expression of the caller's (a
    smallint[], distinct and in ascending order: the locks' order) instead of `lanes`."""
    fresh_after = now - timedelta(seconds=settings.CLARION["ADVANCE_LANE_STALE_SECONDS"])
    if lanes_sql:
        return (f"notifications_advance_lanes_hold(%s, {lanes_sql}, %s, %s)",
                [ADVANCE_LANE_LOCK, fresh_after, now])
    return ("notifications_advance_lanes_hold(%s, %s::smallint[], %s, %s)",
            [ADVANCE_LANE_LOCK, sorted(set(lanes)), fresh_after, now])


def lane_touch(lane: int, *, now: datetime) -> None:
    """In the caller's transaction (an advance lane task's full batch): the lane is held as of
    `now`, its row written again if a release removed it meanwhile."""
    AdvanceLane.objects.bulk_create([AdvanceLane(lane=lane, touched_at=now)],
                                    update_conflicts=True, unique_fields=["lane"],
                                    update_fields=["touched_at"])


# How long a release waits for the triggers holding its lane (milliseconds): longer, it gives up
# and its task claims meanwhile, then tries again (lane_release).
RELEASE_LOCK_TIMEOUT_MS = 20


def lane_release(lane: int) -> bool:
    """Free `lane`, in a transaction of its own that first waits for every trigger that took the
    lane's advisory lock before it (those that saw it held) to commit; the caller claims once
    more after it, which sees their runs. Call it outside any transaction.

    Returns False, the lane still held, when those triggers did not all commit within
    RELEASE_LOCK_TIMEOUT_MS (a long transaction: a schedule's occurrence writes its triggers in
    one): while the release waits, every trigger after it in the lane waits behind it, so it
    gives up soon and the caller claims (their runs, once committed) and tries again."""
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('lock_timeout', %s, true)",
                                   [f"{RELEASE_LOCK_TIMEOUT_MS}ms"])
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)",
                                   [ADVANCE_LANE_LOCK, lane])
            AdvanceLane.objects.filter(lane=lane).delete()
    except OperationalError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        return False
    return True
