"""A trigger's writes as one statement on PostgreSQL, sent outside any transaction (its own
implicit one; in a caller's transaction, in a savepoint): the idempotency record, the advance
lanes' hold, the recipients' upsert, the Trigger, its Runs with their first timeline entries,
the advance tasks' queue rows and the analytics delta, as data-modifying CTEs. One round trip
instead of five (BEGIN with the record, the lanes, the upsert, the insert, COMMIT);
services.trigger_workflow_idempotent says when it applies (else its transaction of several
statements writes the same rows).

What each part keeps:
- the workflow: with a copy the process kept (api.triggers.trigger_kept), every part writes
  only while the workflow's row is as it was read (workflow_unchanged's condition), else the
  caller reads it again and validates the request again;
- the record: `INSERT … ON CONFLICT DO NOTHING` waits, as before, for a transaction that holds
  the same key and then takes it (rolled back) or finds it taken; every other part reads
  `EXISTS (SELECT FROM idempotency)`, so a taken key writes nothing, and the statement's
  final SELECT returns the key's record for the caller's replay (read after the statement only
  when its snapshot does not show it: committed while the statement waited on the key);
- the lanes: engine.lanes_hold_call in the statement, its advisory locks held until the
  statement's transaction commits with the runs, its reads with a snapshot taken after the
  locks (engine/claim.py: why no run is lost); a lane's task row is written unless the call
  says the lane was held;
- the runs' recipients: their keys from the upsert's RETURNING, in SQL (a scalar subquery:
  a run without its recipient would fail its NOT NULL, never be written without one);
- foreign keys are checked at the commit that ends the statement (deferred), as before.
"""

from collections.abc import Sequence

from django.db import connection, connections
from django.utils import timezone

from clarion.db import InsertSelect, numbered_cursor, numbered_placeholders, prepared_cursor

from ..engine.claim import lanes_hold_call
from ..models import IdempotencyRecord, Recipient, Run, Workflow

# (alias, with a record, the recipients' updated fields, per part its model and whether it is
# one row) → the statement and its parts; unnested arrays' text does not depend on their
# length, so a shape is prepared once.
_statements: dict[tuple, tuple[str, list[InsertSelect]]] = {}

def _workflow_check(columns: str = "") -> str:
    """The kept workflow's check as a SELECT of `columns`: a row when the workflow's row is as
    it was read (workflow_check_params)."""
    meta, q = Workflow._meta, connection.ops.quote_name
    return (f"SELECT {columns} FROM {q(meta.db_table)} WHERE " + " AND ".join(
        f"{q(meta.get_field(name).column)} = %s" for name in WORKFLOW_CHECKED))


def workflow_unchanged(workflow: Workflow) -> bool:
    """Whether `workflow`'s row still has the `updated_at` this process read (every write to a
    workflow's row through its services sets it), and is still active with the same published
    version (also after a bulk UPDATE that left `updated_at` alone): one indexed read, no row
    built. A trigger sent as one statement checks the same in its statement."""
    with prepared_cursor() as cursor:
        cursor.execute(_workflow_check("1"), workflow_check_params(workflow))
        return cursor.fetchone() is not None


# The columns the kept workflow's check compares (its values: workflow_check_params).
WORKFLOW_CHECKED = ("id", "updated_at", "active", "published_version")


def workflow_check_params(workflow: Workflow) -> list:
    """The check's parameters for `workflow` as read: its id, `updated_at`, active (True),
    its published version (prepared once for each such row: every trigger of a kept workflow
    sends the same)."""
    read = (connection.alias, workflow.pk, workflow.updated_at, workflow.published_version_id)
    params = _workflow_checks.get(read)
    if params is None:
        meta = Workflow._meta
        values = {"id": workflow.pk, "updated_at": workflow.updated_at, "active": True,
                  "published_version": workflow.published_version_id}
        params = [meta.get_field(name).get_db_prep_value(values[name], connection)
                  for name in WORKFLOW_CHECKED]
        if len(_workflow_checks) >= 1024:  # rows since changed or deleted
            _workflow_checks.clear()
        _workflow_checks[read] = params
    return list(params)


# (alias, id, updated_at, published version) → workflow_check_params' parameters
_workflow_checks: dict[tuple, list] = {}


def recipient_from_upsert(model: type, pk: str, external_id: str) -> dict:
    """InsertSelect's `computed` for a group of `model`'s rows: a Run's `recipient_id` is its
    recipient's key from the `recipients` part's RETURNING (`pk`, `external_id`: quoted
    columns), looked up by the external id passed for it; other models compute nothing."""
    if model is not Run:
        return {}
    return {"recipient": (
        "text", f"(SELECT r.{pk} FROM recipients AS r WHERE r.{external_id} = {{}})")}


def _statement(*, recorded: bool, checked: bool, update_fields: tuple[str, ...],
               parts: tuple[tuple[type, bool], ...]) -> tuple[str, list[InsertSelect]]:
    """The statement for a shape (trigger_rows_write's parts: the recipients', the groups',
    the tasks'), with numbered placeholders (clarion.db.numbered_cursor), and its inserts."""
    shape = (connection.alias, recorded, checked, update_fields, parts)
    if shape in _statements:
        return _statements[shape]
    q = connection.ops.quote_name
    ctes: list[tuple[str, InsertSelect | str]] = []
    if checked:
        ctes.append(("workflow", _workflow_check()))
    gate = "idempotency" if recorded else "workflow" if checked else ""
    if recorded:
        meta = IdempotencyRecord._meta
        unique = ", ".join(q(meta.get_field(name).column) for name in ("api_key", "key"))
        ctes.append(("idempotency", InsertSelect(
            IdempotencyRecord, alias="v", connection=connection, one_row=True,
            where="EXISTS (SELECT FROM workflow)" if checked else "",
            suffix=f"ON CONFLICT ({unique}) DO NOTHING RETURNING 1")))
    where = f"EXISTS (SELECT FROM {gate})" if gate else ""
    source = f" FROM {gate}" if gate else ""
    ctes.append(("held", f"SELECT {lanes_hold_call([], now=timezone.now())[0]} AS lane{source}"))
    meta = Recipient._meta
    external_id, pk = q(meta.get_field("external_id").column), q(meta.pk.column)
    columns = [q(meta.get_field(name).column) for name in update_fields]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in columns)
    (_, one), *groups, (tasks_model, tasks_one) = parts
    ctes.append(("recipients", InsertSelect(
        Recipient, alias="v", connection=connection, one_row=one, where=where,
        suffix=f"ON CONFLICT ({external_id}) DO UPDATE SET {updates} "
               f"RETURNING {pk}, {external_id}")))
    for number, (model, one) in enumerate(groups):
        ctes.append((f"rows_{number}", InsertSelect(
            model, alias="v", connection=connection, one_row=one, where=where,
            computed=recipient_from_upsert(model, pk, external_id))))
    held = "v.lane NOT IN (SELECT lane FROM held)"
    ctes.append(("tasks", InsertSelect(
        tasks_model, alias="v", connection=connection, one_row=tasks_one,
        where=f"{where} AND {held}" if where else held, extra=[("lane", "smallint")])))
    final = "SELECT " + ("(SELECT count(*) FROM idempotency)" if recorded else "1") + \
        (", EXISTS (SELECT FROM workflow)" if checked else ", true")
    if recorded:  # a taken key's record as this statement sees it, for its replay
        meta = IdempotencyRecord._meta
        columns = ", ".join(f"r.{q(field.column)}" for field in meta.concrete_fields)
        final += (f", {columns} FROM (SELECT) AS one LEFT JOIN (SELECT * FROM "
                  f"{q(meta.db_table)} WHERE NOT EXISTS (SELECT FROM idempotency) AND " +
                  " AND ".join(f"{q(meta.get_field(name).column)} = %s"
                               for name in ("api_key", "key")) + ") AS r ON true")
    sql = ", ".join(f"{name} AS ({part if isinstance(part, str) else part.sql})"
                    for name, part in ctes)
    _statements[shape] = (numbered_placeholders(f"WITH {sql} {final}"),
                          [part for _, part in ctes if isinstance(part, InsertSelect)])
    return _statements[shape]


def trigger_rows_write(*, record: IdempotencyRecord | None, recipients: Sequence[Recipient],
                       update_fields: Sequence[str], groups: Sequence[tuple[type, Sequence]],
                       run_recipients: Sequence[str], tasks: Sequence, task_lanes: Sequence[int],
                       now, workflow: Workflow | None = None
                       ) -> tuple[bool, bool, IdempotencyRecord | None]:
    """Write a trigger's rows in one statement (PostgreSQL, outside any transaction or in the
    caller's): `record` (an unsaved IdempotencyRecord, or None without a key), the recipients'
    upsert (`recipients`: new Recipient rows, `update_fields` set from them on a conflict), then
    `groups` ((model, rows), in order; the Run group's `recipient` from `run_recipients`, an
    external id per run, each one of `recipients`), then `tasks` (the ORM broker's rows, one per
    lane of `task_lanes`), each written unless its lane is held already. Every part must have
    rows.

    With `workflow` (a workflow as a process kept it, not read again for this trigger), all
    of it only while the workflow's row is as it was read (workflow_check_params).

    Returns (written, the workflow unchanged, the key's record): (False, True, its record),
    having written nothing, when `record`'s key is taken (the caller replays; the record as the
    statement saw it, None when its snapshot does not show it: taken by a transaction that
    committed while the statement waited on the key), (False, False, None) when `workflow`
    changed. Raises the database's errors (nothing written)."""
    sql, params = _statement_params(
        record=record, recipients=recipients, update_fields=update_fields, groups=groups,
        run_recipients=run_recipients, tasks=tasks, task_lanes=task_lanes, now=now,
        workflow=workflow)
    with numbered_cursor() as cursor:
        cursor.execute(sql, params)
        count, unchanged, *taken = cursor.fetchone()
    written = bool(count) and unchanged
    if written or not taken or taken[0] is None:
        return written, unchanged, None
    return written, unchanged, record_read(taken)


def _statement_params(*, record: IdempotencyRecord | None, recipients: Sequence[Recipient],
                      update_fields: Sequence[str], groups: Sequence[tuple[type, Sequence]],
                      run_recipients: Sequence[str], tasks: Sequence, task_lanes: Sequence[int],
                      now, workflow: Workflow | None) -> tuple[str, list]:
    """trigger_rows_write's statement (numbered placeholders) and its parameters."""
    recorded, checked = record is not None, workflow is not None
    sql, inserts = _statement(
        recorded=recorded, checked=checked, update_fields=tuple(update_fields),
        parts=((Recipient, len(recipients) == 1),
               *((model, len(rows) == 1) for model, rows in groups),
               (type(tasks[0]), len(tasks) == 1)))
    wrapper = connections[connection.alias]  # not the proxy: each attribute read is a lookup
    inserts = iter(inserts)
    params: list = workflow_check_params(workflow) if checked else []
    if recorded:
        params += next(inserts).params([record], wrapper)
    params += lanes_hold_call(list(task_lanes), now=now)[1]
    params += next(inserts).params(recipients, wrapper)
    for model, rows in groups:
        computed = {"recipient": list(run_recipients)} if model is Run else None
        params += next(inserts).params(rows, wrapper, computed=computed)
    params += next(inserts).params(tasks, wrapper, extra=[list(task_lanes)])
    if recorded:
        params += [record.api_key_id, record.key]
    return sql, params


def record_read(values: list) -> IdempotencyRecord:
    """The IdempotencyRecord of a row's `values` (its concrete fields' columns, in order), as
    the ORM reads it (its JSON decoded as the field decodes it)."""
    fields = IdempotencyRecord._meta.concrete_fields
    values = [field.from_db_value(value, None, connection)
              if hasattr(field, "from_db_value") else value
              for field, value in zip(fields, values, strict=True)]
    return IdempotencyRecord.from_db(connection.alias, [field.attname for field in fields],
                                     values)
