"""A trigger's writes as one statement on PostgreSQL, sent outside any transaction (its own
implicit one; in a caller's transaction, in a savepoint): the idempotency record, the advance
lanes' hold, the recipients' upsert, the Trigger, its Runs with their first timeline entries,
the advance tasks' queue rows and the analytics delta, as data-modifying CTEs. One round trip
instead of five (BEGIN with the record, the lanes, the upsert, the insert, COMMIT);
services.trigger_workflow_idempotent says when it applies (else its transaction of several
statements writes the same rows).

What each part keeps:
- the record: `INSERT … ON CONFLICT DO NOTHING` waits, as before, for a transaction that holds
  the same key and then takes it (rolled back) or finds it taken; every other part reads
  `EXISTS (SELECT FROM idempotency)`, so a taken key writes nothing and the caller replays;
- the lanes: engine.lanes_hold_call in the statement, its advisory locks held until the
  statement's transaction commits with the runs, its reads with a snapshot taken after the
  locks (engine/claim.py: why no run is lost); a lane's task row is written unless the call
  says the lane was held;
- the runs' recipients: their keys from the upsert's RETURNING, in SQL (a scalar subquery:
  a run without its recipient would fail its NOT NULL, never be written without one);
- foreign keys are checked at the commit that ends the statement (deferred), as before.
"""

from collections.abc import Sequence

from django.db import connection
from django.utils import timezone

from clarion.db import InsertSelect, numbered_cursor, numbered_placeholders

from ..engine.claim import lanes_hold_call
from ..models import IdempotencyRecord, Recipient, Run

# (alias, with a record, the recipients' updated fields, per part its model and whether it is
# one row) → the statement and its parts; unnested arrays' text does not depend on their
# length, so a shape is prepared once.
_statements: dict[tuple, tuple[str, list[InsertSelect]]] = {}

ONLY_IF_RECORDED = "EXISTS (SELECT FROM idempotency)"


def _statement(*, recorded: bool, update_fields: tuple[str, ...],
               parts: tuple[tuple[type, bool], ...]) -> tuple[str, list[InsertSelect]]:
    """The statement for a shape (trigger_rows_write's parts: the recipients', the groups',
    the tasks'), with numbered placeholders (clarion.db.numbered_cursor), and its inserts."""
    shape = (connection.alias, recorded, update_fields, parts)
    if shape in _statements:
        return _statements[shape]
    q = connection.ops.quote_name
    where = ONLY_IF_RECORDED if recorded else ""
    ctes: list[tuple[str, InsertSelect | str]] = []
    if recorded:
        meta = IdempotencyRecord._meta
        unique = ", ".join(q(meta.get_field(name).column) for name in ("api_key", "key"))
        ctes.append(("idempotency", InsertSelect(
            IdempotencyRecord, alias="v", connection=connection, one_row=True,
            suffix=f"ON CONFLICT ({unique}) DO NOTHING RETURNING 1")))
    source = " FROM idempotency" if recorded else ""
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
        computed = {}
        if model is Run:  # its recipient's key from the upsert
            computed = {"recipient": (
                "text", f"(SELECT r.{pk} FROM recipients AS r WHERE r.{external_id} = {{}})")}
        ctes.append((f"rows_{number}", InsertSelect(
            model, alias="v", connection=connection, one_row=one, where=where,
            computed=computed)))
    held = "v.lane NOT IN (SELECT lane FROM held)"
    ctes.append(("tasks", InsertSelect(
        tasks_model, alias="v", connection=connection, one_row=tasks_one,
        where=f"{where} AND {held}" if where else held, extra=[("lane", "smallint")])))
    final = "SELECT count(*) FROM idempotency" if recorded else "SELECT 1"
    sql = ", ".join(f"{name} AS ({part if isinstance(part, str) else part.sql})"
                    for name, part in ctes)
    _statements[shape] = (numbered_placeholders(f"WITH {sql} {final}"),
                          [part for _, part in ctes if isinstance(part, InsertSelect)])
    return _statements[shape]


def trigger_rows_write(*, record: IdempotencyRecord | None, recipients: Sequence[Recipient],
                       update_fields: Sequence[str], groups: Sequence[tuple[type, Sequence]],
                       run_recipients: Sequence[str], tasks: Sequence, task_lanes: Sequence[int],
                       now) -> bool:
    """Write a trigger's rows in one statement (PostgreSQL, outside any transaction or in the
    caller's): `record` (an unsaved IdempotencyRecord, or None without a key), the recipients'
    upsert (`recipients`: new Recipient rows, `update_fields` set from them on a conflict), then
    `groups` ((model, rows), in order; the Run group's `recipient` from `run_recipients`, an
    external id per run, each one of `recipients`), then `tasks` (the ORM broker's rows, one per
    lane of `task_lanes`), each written unless its lane is held already. Every part must have
    rows.

    Returns False, having written nothing, when `record`'s key is taken (the caller replays),
    else True. Raises the database's errors (nothing written)."""
    recorded = record is not None
    sql, inserts = _statement(
        recorded=recorded, update_fields=tuple(update_fields),
        parts=((Recipient, len(recipients) == 1),
               *((model, len(rows) == 1) for model, rows in groups),
               (type(tasks[0]), len(tasks) == 1)))
    inserts = iter(inserts)
    params: list = []
    if recorded:
        params += next(inserts).params([record], connection)
    params += lanes_hold_call(list(task_lanes), now=now)[1]
    params += next(inserts).params(recipients, connection)
    for model, rows in groups:
        computed = {"recipient": list(run_recipients)} if model is Run else None
        params += next(inserts).params(rows, connection, computed=computed)
    params += next(inserts).params(tasks, connection, extra=[list(task_lanes)])
    with numbered_cursor() as cursor:
        cursor.execute(sql, params)
        (count,) = cursor.fetchone()
    return bool(count)
