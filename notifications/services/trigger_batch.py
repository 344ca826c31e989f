"""Several triggers' writes as one statement on PostgreSQL, sent outside any transaction (its
own implicit one: one commit, one WAL flush for all of them): what trigger_statement.py writes
for one trigger, for each trigger of a batch that services/group_commit.py gathered from the
concurrent requests of a web process. Every part is an array per column unnested
(clarion.db.InsertSelect, with each row's trigger as `ord`, its number in the batch), and is
gated per trigger as the one-trigger statement gates it:

- `checked`: the triggers whose kept workflow's row is as it was read (trigger_statement's
  workflow_check_params), each trigger its own workflow;
- `idempotency`: their records, `INSERT … ON CONFLICT DO NOTHING RETURNING` the keys written
  (a key taken, or held by a transaction the statement waits for, writes nothing), in the
  order of their (API key, key) (two processes' batches with keys in common wait on each other
  in one order: no deadlock);
- `ok`: the triggers whose record was written; every other part writes only their rows, so a
  trigger whose key is taken or whose workflow changed writes nothing and the others are
  unaffected;
- `held`: the advance lanes' hold called once, for the lanes of the `ok` triggers only (a lane
  marked held must get its task), its locks in ascending order; a lane's task row is written
  by the first `ok` trigger with that lane, unless the call says it was held;
- the recipients' upsert: no two triggers of a batch share a recipient (ON CONFLICT DO UPDATE
  may touch a row once a statement; group_commit.py keeps them apart), rows in the order of
  their external ids (two batches lock shared rows in the same order);
- the final SELECT: per trigger, whether it was written, whether its workflow was unchanged,
  and for a taken key its record as the statement saw it (for the replay).

Any error (a deadlock, a foreign key failing at the commit, a bug) fails the whole statement,
nothing written: the caller then writes each trigger on its own (trigger_statement.py).
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection, connections
from django.utils import timezone

from clarion.db import InsertSelect, numbered_cursor, numbered_placeholders

from ..engine.claim import lanes_hold_call
from ..models import IdempotencyRecord, Recipient, Run, Workflow
from .trigger_statement import (
    WORKFLOW_CHECKED,
    recipient_from_upsert,
    record_read,
    workflow_check_params,
)


@dataclass
class TriggerRows:
    """One trigger's rows, as trigger_statement.trigger_rows_write takes them (its keyword
    arguments: a record and a kept workflow both given)."""

    record: IdempotencyRecord
    recipients: Sequence[Recipient]
    update_fields: Sequence[str]
    groups: Sequence[tuple[type, Sequence]]
    run_recipients: Sequence[str]
    tasks: Sequence
    task_lanes: Sequence[int]
    now: object
    workflow: Workflow

    def shape(self) -> tuple:
        """What must be equal for triggers to share a statement: the database, the recipients'
        updated fields and the models of the groups and tasks."""
        return (connection.alias, tuple(self.update_fields),
                tuple(model for model, _ in self.groups), type(self.tasks[0]))

    def key(self) -> tuple:
        return (self.record.api_key_id, self.record.key)

    def external_ids(self) -> set[str]:
        return {recipient.external_id for recipient in self.recipients}


# shape → (the statement, its InsertSelects in the order of their parameters)
_statements: dict[tuple, tuple[str, list[InsertSelect]]] = {}


def _kind(model, name: str) -> str:
    return model._meta.get_field(name).db_type(connection).split("(")[0]


def _statement(shape: tuple) -> tuple[str, list[InsertSelect]]:
    """The batch statement of `shape` (TriggerRows.shape) with numbered placeholders."""
    if shape in _statements:
        return _statements[shape]
    _, update_fields, group_models, tasks_model = shape
    q = connection.ops.quote_name
    ok = "v.ord IN (SELECT ord FROM ok)"
    meta = IdempotencyRecord._meta
    api_key, key = (q(meta.get_field(name).column) for name in ("api_key", "key"))
    ctes: list[tuple[str, InsertSelect | str]] = [
        ("batch", f"SELECT * FROM UNNEST(%s::integer[], %s::{_kind(IdempotencyRecord, 'api_key')}"
                  f"[], %s::{_kind(IdempotencyRecord, 'key')}[]) AS b(ord, api_key, key)")]
    wmeta = Workflow._meta
    columns = [f"c{number}" for number in range(len(WORKFLOW_CHECKED))]
    kinds = [_kind(Workflow, name) for name in WORKFLOW_CHECKED]
    ctes.append(("checked", (
        "SELECT c.ord FROM UNNEST(%s::integer[], "
        + ", ".join(f"%s::{kind}[]" for kind in kinds) + f") AS c(ord, {', '.join(columns)}) "
        f"JOIN {q(wmeta.db_table)} AS w ON " + " AND ".join(
            f"w.{q(wmeta.get_field(name).column)} = c.{column}"
            for name, column in zip(WORKFLOW_CHECKED, columns, strict=True))
        # Every part that takes a lock is gated on `checked`, so its one-time filter sets the
        # statement's lock_timeout (for its implicit transaction, the commit's deferred
        # foreign-key checks included) before any lock is waited for.
        + " WHERE (SELECT set_config('lock_timeout', %s, true)) IS NOT NULL")))
    ctes.append(("idempotency", InsertSelect(
        IdempotencyRecord, alias="v", connection=connection, extra=[("ord", "integer")],
        where="v.ord IN (SELECT ord FROM checked)",
        suffix=f"ON CONFLICT ({api_key}, {key}) DO NOTHING RETURNING {api_key}, {key}")))
    # One trigger per record written (group_commit.py never batches a key twice; if it did,
    # the first would be written and the other replay it).
    ctes.append(("ok", f"SELECT min(b.ord) AS ord FROM batch AS b JOIN idempotency AS i "
                       f"ON i.{api_key} = b.api_key AND i.{key} = b.key "
                       f"GROUP BY b.api_key, b.key"))
    ctes.append(("lanes", "SELECT * FROM UNNEST(%s::integer[], %s::smallint[]) AS l(ord, lane)"))
    hold = lanes_hold_call([], now=timezone.now(), lanes_sql=(
        "ARRAY(SELECT DISTINCT l.lane FROM lanes AS l WHERE l.ord IN (SELECT ord FROM ok) "
        "ORDER BY l.lane)"))[0]
    ctes.append(("held", f"SELECT {hold} AS lane FROM (SELECT FROM ok LIMIT 1) AS one"))
    rmeta = Recipient._meta
    external_id, pk = q(rmeta.get_field("external_id").column), q(rmeta.pk.column)
    updated = [q(rmeta.get_field(name).column) for name in update_fields]
    ctes.append(("recipients", InsertSelect(
        Recipient, alias="v", connection=connection, extra=[("ord", "integer")], where=ok,
        suffix=f"ON CONFLICT ({external_id}) DO UPDATE SET "
               + ", ".join(f"{column} = EXCLUDED.{column}" for column in updated)
               + f" RETURNING {pk}, {external_id}")))
    for number, model in enumerate(group_models):
        ctes.append((f"rows_{number}", InsertSelect(
            model, alias="v", connection=connection, where=ok,
            computed=recipient_from_upsert(model, pk, external_id),
            extra=[("ord", "integer")])))
    ctes.append(("tasks", InsertSelect(
        tasks_model, alias="v", connection=connection,
        extra=[("lane", "smallint"), ("ord", "integer")],
        where=f"{ok} AND v.lane NOT IN (SELECT lane FROM held) AND v.ord = (SELECT min(l.ord) "
              f"FROM lanes AS l WHERE l.lane = v.lane AND l.ord IN (SELECT ord FROM ok))")))
    record_columns = ", ".join(f"r.{q(field.column)}" for field in meta.concrete_fields)
    final = (f"SELECT b.ord IN (SELECT ord FROM ok), b.ord IN (SELECT ord FROM checked), "
             f"{record_columns} FROM batch AS b LEFT JOIN LATERAL (SELECT * FROM "
             f"{q(meta.db_table)} AS t WHERE b.ord NOT IN (SELECT ord FROM ok) AND "
             f"t.{api_key} = b.api_key AND t.{key} = b.key) AS r ON true ORDER BY b.ord")
    sql = ", ".join(f"{name} AS ({part if isinstance(part, str) else part.sql})"
                    for name, part in ctes)
    _statements[shape] = (numbered_placeholders(f"WITH {sql} {final}"),
                          [part for _, part in ctes if isinstance(part, InsertSelect)])
    return _statements[shape]


def triggers_rows_write(batch: Sequence[TriggerRows], *, lock_timeout: float
                        ) -> list[tuple[bool, bool, IdempotencyRecord | None]]:
    """Write the triggers of `batch` (of one shape, no two with the same key or a shared
    recipient) in one statement outside any transaction, giving up any lock it waits for
    longer than `lock_timeout` seconds (PostgreSQL's `lock_timeout`, for this statement's
    transaction only). Returns, per trigger in order, what trigger_statement.trigger_rows_write
    returns for it alone: (written, the workflow unchanged, the taken key's record as the
    statement saw it, or None). Raises the database's errors (a lock given up:
    OperationalError, SQLSTATE 55P03), nothing written for any of them."""
    sql, inserts = _statement(batch[0].shape())
    wrapper = connections[connection.alias]  # not the proxy: each attribute read is a lookup
    ords = list(range(len(batch)))
    params: list = [ords, [rows.record.api_key_id for rows in batch],
                    [rows.record.key for rows in batch]]
    checks = [workflow_check_params(rows.workflow) for rows in batch]
    params += [ords, *(list(column) for column in zip(*checks, strict=True)),
               f"{max(1, round(lock_timeout * 1000))}ms"]
    inserts = iter(inserts)
    # The records in the order of their keys: two processes' batches with keys in common take
    # them in the same order (in their arrival order, each could hold one the other waits for).
    keyed = sorted(ords, key=lambda ord_: batch[ord_].key())
    params += next(inserts).params([batch[ord_].record for ord_ in keyed], wrapper,
                                   extra=[keyed])
    lane_ords = [ord_ for ord_, rows in enumerate(batch) for _ in rows.task_lanes]
    params += [lane_ords, [lane for rows in batch for lane in rows.task_lanes]]
    params += lanes_hold_call([], now=timezone.now(), lanes_sql="-")[1]
    recipients = sorted(((recipient.external_id, ord_, recipient)
                         for ord_, rows in enumerate(batch) for recipient in rows.recipients),
                        key=lambda item: item[0])
    params += next(inserts).params([recipient for _, _, recipient in recipients], wrapper,
                                   extra=[[ord_ for _, ord_, _ in recipients]])
    for number, (model, _) in enumerate(batch[0].groups):
        objs, of, computed = [], [], None
        for ord_, rows in enumerate(batch):
            group = rows.groups[number][1]
            objs += group
            of += [ord_] * len(group)
        if model is Run:
            computed = {"recipient": [external_id for rows in batch
                                      for external_id in rows.run_recipients]}
        params += next(inserts).params(objs, wrapper, computed=computed, extra=[of])
    params += next(inserts).params(
        [task for rows in batch for task in rows.tasks], wrapper,
        extra=[[lane for rows in batch for lane in rows.task_lanes], lane_ords])
    with numbered_cursor() as cursor:
        cursor.execute(sql, params)
        results = cursor.fetchall()
    answers = []
    for written, unchanged, *taken in results:
        record = None
        if not written and taken[0] is not None:
            record = record_read(taken)
        answers.append((written, unchanged, record))
    return answers
