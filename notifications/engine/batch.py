"""Advancing a batch of runs (a trigger's, or a fan-out chunk's new runs: advance_new_runs) in
one transaction, each walked by `advance`.

What is the same for every run of the batch is read once: the runs and their row locks (one
SELECT … FOR UPDATE, in primary-key order), each workflow's steps with their templates and
published versions, the runs' messages, the preference sets of the batch's recipients and each
workflow's defaults. What the passes write is written a table at a time for the whole batch
(writes.py): one INSERT each for the Messages, the InboxItems, the delivery and wake-up tasks,
the timeline, outbound events and analytics facts, one UPDATE for the runs; a step that reads
what earlier ones wrote has it written first. Everything commits with the batch: a worker
killed mid-batch commits nothing, and the runs are advanced again (the sweeper) from where they
stood; a replayed batch finds its rows there and writes none twice."""

from datetime import datetime

from clarion.logs import log_context

from ..models import Recipient, Run, Tenant, Trigger, Workflow
from .context import Batch
from .walk import advance


def advance_batch(run_ids: list[str], *, now: datetime) -> int:
    """Advance the runs `run_ids` in the caller's transaction (see the module's docstring).
    Returns how many runs were found. Any error (walk.RunMovedOn included) propagates: the
    caller rolls the whole batch back and advances its runs one at a time."""
    runs = list(Run.objects.select_for_update(of=("self",)).select_related("recipient")
                .filter(pk__in=run_ids).order_by("pk"))
    # The workflows, tenants and triggers the runs share (a fan-out's: one each), read once and
    # shared, rather than a copy of each (and of the trigger's data) per run. Unordered: the
    # models' Meta.ordering cost its compiling (~0.15 ms a statement) and a sort for nothing.
    for name, model in (("workflow", Workflow), ("tenant", Tenant), ("trigger", Trigger)):
        rows = model.objects.order_by().in_bulk(
            {getattr(run, f"{name}_id") for run in runs} - {None})
        for run in runs:
            setattr(run, name, rows.get(getattr(run, f"{name}_id")))
    _walk(Batch(runs), now)
    return len(runs)


def advance_new_runs(runs: list[Run], *, now: datetime) -> None:
    """Write and advance `runs`, new Run objects not written yet (a fan-out chunk's, in the
    caller's transaction, `created_at` and `updated_at` set), as advance_batch does, without
    reading them back: no other transaction sees them before the caller commits (so none holds
    or walks them) and they have no messages yet. Each run is inserted once, with the batch's
    other rows, in the state its walk leaves it: no UPDATE of each run after its walk. The rows
    that refer to a run (its timeline, messages, a digest event) may be written before it in
    the transaction (foreign keys are checked at commit), and no step reads the run's own row:
    a digest's close locks and ends the other runs of its batch, which are one recipient's and
    so of other, committed triggers, and treats the closing run in memory. Each run's
    `workflow`, `tenant` and `trigger` must be loaded (shared objects, as a fan-out creates
    them); their recipients are read here, in one query. Errors propagate as advance_batch's;
    the runs are then not written."""
    recipients = Recipient.objects.in_bulk({run.recipient_id for run in runs})
    for run in runs:
        run.recipient = recipients[run.recipient_id]
    _walk(Batch(runs, new=True), now)


def _walk(batch: Batch, now: datetime) -> None:
    for run in batch.runs:
        with log_context(run_id=str(run.pk)):
            advance(run, now=now, batch=batch)
    batch.write()

