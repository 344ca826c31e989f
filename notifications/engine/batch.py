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

from django.db import DEFAULT_DB_ALIAS, connections

from clarion.db import instance_reader, model_columns, numbered_cursor, rows_by_pk
from clarion.logs import log_context

from ..models import Recipient, Run, Tenant, Trigger, Workflow
from .context import Batch
from .walk import advance


def advance_batch(run_ids: list[str], *, now: datetime) -> int:
    """Advance the runs `run_ids` in the caller's transaction (see the module's docstring).
    Returns how many runs were found. Any error (walk.RunMovedOn included) propagates: the
    caller rolls the whole batch back and advances its runs one at a time."""
    runs = runs_locked(run_ids)
    # The workflows, tenants and triggers the runs share (a fan-out's: one each), read once and
    # shared, rather than a copy of each (and of the trigger's data) per run; unordered, by a
    # statement kept per model (rows_by_pk: no query set compiled per batch).
    for name, model in (("workflow", Workflow), ("tenant", Tenant), ("trigger", Trigger)):
        rows = rows_by_pk(model, {getattr(run, f"{name}_id") for run in runs} - {None})
        for run in runs:
            setattr(run, name, rows.get(getattr(run, f"{name}_id")))
    _walk(Batch(runs), now)
    return len(runs)


def runs_locked(run_ids: list[str]) -> list[Run]:
    """The runs `run_ids` with their recipients, locked (FOR UPDATE of the runs' rows), in
    primary-key order, as `Run.objects.select_for_update(of=("self",))
    .select_related("recipient").filter(pk__in=run_ids).order_by("pk")` reads them; on
    PostgreSQL by a statement kept per process (the ids one array parameter bound by the
    server, the rows read by `instance_reader`) rather than that query set compiled for each
    batch with its 100 ids quoted into the text. Errors: ValidationError for an id that is
    not a UUID (as the query set)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return list(Run.objects.select_for_update(of=("self",)).select_related("recipient")
                    .filter(pk__in=run_ids).order_by("pk"))
    global _runs_sql
    if _runs_sql is None:
        quote = connection.ops.quote_name
        run, recipient = Run._meta.db_table, Recipient._meta.db_table
        _runs_sql = (
            f"SELECT {model_columns(Run, run)}, {model_columns(Recipient, recipient)} "
            f"FROM {quote(run)} JOIN {quote(recipient)} "
            f"ON {quote(recipient)}.id = {quote(run)}.recipient_id "
            f"WHERE {quote(run)}.id = ANY($1) ORDER BY {quote(run)}.id FOR UPDATE OF {quote(run)}")
    pk = Run._meta.pk
    with numbered_cursor() as cursor:
        cursor.execute(_runs_sql, [[pk.to_python(value) for value in run_ids]])
        rows = cursor.fetchall()
    run_of, recipient_of = instance_reader(Run), instance_reader(Recipient)
    width, field = len(Run._meta.concrete_fields), Run._meta.get_field("recipient")
    runs = []
    for row in rows:
        run = run_of(row[:width])
        field.set_cached_value(run, recipient_of(row[width:]))
        runs.append(run)
    return runs


_runs_sql = None  # runs_locked's statement on PostgreSQL


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

