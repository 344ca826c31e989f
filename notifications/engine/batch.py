"""Advancing a batch of runs (a topic fan-out's) in one transaction, each walked by `advance`.

What is the same for every run of the batch is read once: the runs and their row locks (one
SELECT … FOR UPDATE, in primary-key order), each workflow's steps with their templates and
published versions, the runs' messages, the preference sets of the batch's recipients and each
workflow's defaults. What every pass writes at its end (the timeline, outbound events, analytics
facts) is written once for the batch. Each run's Messages, InboxItems and queued deliveries are
written by its own pass, in the engine's order, and commit with the whole batch: a worker killed
mid-batch commits nothing, and the runs are advanced again (the sweeper) from where they stood.
"""

from datetime import datetime

from clarion.logs import log_context

from ..models import Run
from .context import Batch
from .walk import advance


def advance_batch(run_ids: list[str], *, now: datetime) -> int:
    """Advance the runs `run_ids` in the caller's transaction (see the module's docstring).
    Returns how many runs were found. Any error (walk.RunMovedOn included) propagates: the
    caller rolls the whole batch back and advances its runs one at a time."""
    runs = list(Run.objects.select_for_update(of=("self",))
                .select_related("workflow", "recipient", "tenant", "trigger")
                .filter(pk__in=run_ids).order_by("pk"))
    batch = Batch(runs)
    for run in runs:
        with log_context(run_id=str(run.pk)):
            advance(run, now=now, batch=batch)
    batch.write()
    return len(runs)

