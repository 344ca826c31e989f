"""Claiming the runs one advance task walks: the ones it was given, topped up with other due runs.

Like the delivery's claim (delivery.claim_batch), a worker locks the runs it will walk with
SELECT … FOR UPDATE SKIP LOCKED in its own transaction: two workers never take the same run, a
run another worker holds is passed over (that worker walks it), and a worker killed mid-batch
holds nothing once PostgreSQL sees its connection close — its transaction rolls back, the runs
are due again and the next task's top-up, its own task (presented again after Q_CLUSTER
"retry") or the sweeper takes them. Each run's task stays queued until it ran, so a run is never
left without one: topping up only makes the other runs' own tasks find them done.

On SQLite (no row locks) writers are serialized by the IMMEDIATE transactions, so the same holds.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from ..models import Run


def run_is_due(now: datetime) -> Q:
    """The runs `engine.advance` would walk at `now`: running, or waiting with no wake-up time
    or one that has passed."""
    return Q(status=Run.Status.RUNNING) | Q(status=Run.Status.WAITING, wake_at__isnull=True) \
        | Q(status=Run.Status.WAITING, wake_at__lte=now)


def runs_claim(run_ids: list[str], *, now: datetime, limit: int,
               exclude: frozenset[str] = frozenset()) -> list[str]:
    """Lock, in the caller's transaction, those of `run_ids` that are due and that no other
    transaction holds; then, when at least one was, up to `limit` in all with other due runs
    (running and touched within STUCK_AFTER_SECONDS, or waiting with a wake-up time passed
    within it; older ones are the sweeper's, so a run that keeps failing is not taken again by
    every batch). `exclude`: ids never taken as a top-up (runs that failed in this process).

    Returns the locked run ids (str), `run_ids`' first, or [] when none of `run_ids` was
    claimable: they are done, or another worker is walking them, and this task is a no-op.
    """
    fresh_after = now - timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"])
    locked = Run.objects.select_for_update(skip_locked=True, of=("self",))
    mine = [str(pk) for pk in locked.filter(run_is_due(now), pk__in=run_ids)
            .values_list("pk", flat=True)]
    if not mine or len(mine) >= limit:
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
