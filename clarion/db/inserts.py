"""Rows written many at a time, each shape's SQL compiled once per process: COPY
(`rows_copy`), several models' INSERTs in one statement (`rows_insert`), and INSERT … ON
CONFLICT DO UPDATE (`rows_upsert`)."""

import json
from collections.abc import Callable, Sequence
from operator import attrgetter

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import (
    AutoField,
    BigAutoField,
    JSONField,
    Model,
    SmallAutoField,
)
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery

from .cursors import prepared_cursor


def rows_copy(model: type[Model], objs: Sequence[Model], *, using: str = DEFAULT_DB_ALIAS,
              returning_ids: bool = False, keep_times: bool = False) -> None:
    """Insert `objs` (new `model` instances) in the caller's transaction: on PostgreSQL by one
    COPY (no ON CONFLICT: a duplicate key raises IntegrityError), elsewhere by bulk_create.

    For rows known to be new (those of runs created in the same transaction) and timelines:
    COPY formats the rows in psycopg's C code, where bulk_create builds a VALUES/UNNEST
    statement through Django's compiler and quotes every value in Python (bench/fanout.py:
    most of a fan-out's CPU). What bulk_create would store is stored: each field's value as set
    on the object, `auto_now`/`auto_now_add` times set now (and on the objects), JSON fields
    encoded with their encoder. An auto-increment pk is taken from its sequence when
    `returning_ids` (one query; set on the objects, in order), else left to the default and
    not set on the objects. `keep_times`: the `auto_now`/`auto_now_add` fields are written as
    set on the objects (e.g. a run created before its walk and written after it), not stamped
    now; every value must then be set. No signals are sent (nor does bulk_create send them)."""
    if not objs:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        if keep_times:
            _insert_as_set(model, objs, connection)
        else:
            model._default_manager.using(using).bulk_create(objs)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using
        return
    auto = _auto_pk(model)
    fields = _insert_fields(model, with_auto_pk=returning_ids)
    with connection.cursor() as cursor:
        if auto and returning_ids:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) "
                           "FROM generate_series(1, %s)",
                           [model._meta.db_table, model._meta.pk.column, len(objs)])
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        fields, row = _copy_rows(fields, keep_times=keep_times)
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} "
                         f"({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row(row(obj))
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def rows_insert(groups: Sequence[tuple[type[Model], Sequence[Model]]], *,
                using: str = DEFAULT_DB_ALIAS) -> None:
    """Insert each group's `objs` (new instances of its model, in order: a row may refer to an
    earlier group's) in the caller's transaction: on PostgreSQL in one statement (the groups'
    INSERTs as data-modifying CTEs; foreign keys are checked at commit, Django makes them
    DEFERRABLE INITIALLY DEFERRED), elsewhere by one bulk_create per group.

    For the few rows of one trigger: each statement costs the web process a round trip and
    Django's bulk_create machinery (bench/README.md "Throughput": about 0.25 ms of CPU a
    statement saved). Stores what bulk_create stores (each field's value as its compiler
    prepares it, `auto_now`/`auto_now_add` times set now and on the objects). An auto-increment
    pk must be unset; it is left to the sequence and not set on the objects. No signals, no
    ON CONFLICT (a duplicate key raises IntegrityError)."""
    groups = [(model, objs) for model, objs in groups if objs]
    connection = connections[using]
    if connection.vendor != "postgresql" or len(groups) < 2:
        for model, objs in groups:
            model._default_manager.using(using).bulk_create(objs)
        return
    for model, objs in groups:
        if _auto_pk(model) and any(obj.pk is not None for obj in objs):
            raise ValueError(f"rows_insert: {model.__name__}'s auto-increment pk must be unset")
    shape = (using, *((model, len(objs)) for model, objs in groups))
    compiled = _compiled_inserts.get(shape)
    params = None
    if compiled is not None:
        params = _insert_params(compiled, groups, connection)
    if params is None:
        _, params, compiled = _compile_inserts(groups, connection)
        _keep_compiled(shape, compiled)
    with prepared_cursor(using) as cursor:
        cursor.execute(compiled.sql, params)
    for _, objs in groups:
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using


class _CompiledInsert:
    """rows_insert's statement for one shape (models and row counts): its SQL, and per group the
    fields whose prepared values are its parameters, row by row or (`unnest`, Django's
    PostgreSQL compiler for several rows) as one array per field."""

    __slots__ = ("sql", "groups")

    def __init__(self, sql: str, groups: list[tuple[list, bool]] | None):
        self.sql, self.groups = sql, groups


# shape → _CompiledInsert: Django's insert compiler builds the same SQL text for the same
# models and row counts (and, from two rows on, UNNEST's text whatever the count); building it
# is most of a small INSERT's CPU in the web process.
_compiled_inserts: dict[tuple, _CompiledInsert] = {}
_COMPILED_MAX = 512  # shapes kept per process (row counts vary with the audience)


def _keep_compiled(shape: tuple, compiled: _CompiledInsert) -> None:
    if len(_compiled_inserts) >= _COMPILED_MAX:
        _compiled_inserts.clear()
    _compiled_inserts[shape] = compiled


def _compile_insert(model, objs, connection, *, on_conflict=None, update_fields=None,
                    unique_fields=None, returning_fields=None) -> tuple[str, list, tuple | None]:
    """Django's INSERT of `objs` (as bulk_create compiles it): (sql, params, (fields, unnest)
    for _insert_params, or None when a field's placeholder depends on its value)."""
    fields = _insert_fields(model, with_auto_pk=False)
    query = InsertQuery(model, on_conflict=on_conflict, update_fields=update_fields,
                        unique_fields=unique_fields)
    query.insert_values(fields, objs)
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = returning_fields
    [(sql, params)] = compiler.as_sql()
    plain = not any(hasattr(field, "get_placeholder") for field in fields)
    return sql, list(params), (fields, "UNNEST(" in sql) if plain else None


def _compile_inserts(groups, connection) -> tuple[str, list, _CompiledInsert]:
    """Compile the groups' INSERTs with Django's compiler into one statement (the CTEs);
    returns (sql, params, what _insert_params needs to give the params of the same shape
    again, or with None groups when the values' placeholders depend on the values)."""
    statements, params, compiled = [], [], []
    for model, objs in groups:
        sql, sql_params, group = _compile_insert(model, objs, connection)
        statements.append(sql)
        params.extend(sql_params)
        compiled.append(group)
    ctes = ", ".join(f"inserted_{i} AS ({sql})" for i, sql in enumerate(statements[:-1]))
    sql = f"WITH {ctes} {statements[-1]}"
    return sql, params, _CompiledInsert(sql, None if None in compiled else compiled)


def rows_upsert(model: type[Model], objs: Sequence[Model], *, unique_fields: Sequence[str],
                update_fields: Sequence[str], using: str = DEFAULT_DB_ALIAS) -> None:
    """`bulk_create(objs, update_conflicts=True, unique_fields=…, update_fields=…)` in the
    caller's transaction, each object's pk set from the statement's RETURNING (the row
    inserted or updated). On PostgreSQL its SQL is compiled once per shape (model, fields, row
    count) and the statement prepared (prepared_cursor); elsewhere bulk_create itself. `objs`
    must have no pk (an auto-increment one, left to the sequence)."""
    if not objs:
        return
    connection = connections[using]
    if connection.vendor != "postgresql" or not _auto_pk(model) or any(
            obj.pk is not None for obj in objs):
        model._default_manager.using(using).bulk_create(
            objs, update_conflicts=True, unique_fields=unique_fields,
            update_fields=update_fields)
        return
    shape = ("upsert", using, model, len(objs), tuple(unique_fields), tuple(update_fields))
    compiled = _compiled_inserts.get(shape)
    params = None
    if compiled is not None:
        params = _insert_params(compiled, [(model, objs)], connection)
    if params is None:
        meta = model._meta
        sql, params, group = _compile_insert(
            model, objs, connection, on_conflict=OnConflict.UPDATE,
            update_fields=[meta.get_field(name) for name in update_fields],
            unique_fields=[meta.get_field(name) for name in unique_fields],
            returning_fields=[meta.pk])
        compiled = _CompiledInsert(sql, None if group is None else [group])
        _keep_compiled(shape, compiled)
    with prepared_cursor(using) as cursor:
        cursor.execute(compiled.sql, params)
        pks = cursor.fetchall()
    for obj, (pk,) in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding = False
        obj._state.db = using




def _insert_params(compiled: _CompiledInsert, groups, connection) -> list | None:
    """The parameters of `compiled`'s statement for `groups`' objects, each value as Django's
    insert compiler prepares it (the field's pre_save, then get_db_prep_save); None when a
    value is an expression (the compiler then places it in the SQL)."""
    if compiled.groups is None:
        return None
    params = []
    for (fields, unnest), (_, objs) in zip(compiled.groups, groups, strict=True):
        rows = []
        for obj in objs:
            row = []
            for field in fields:
                value = field.pre_save(obj, True)
                if hasattr(value, "resolve_expression"):
                    return None
                row.append(field.get_db_prep_save(value, connection=connection))
            rows.append(row)
        if unnest:
            params.extend(list(column) for column in zip(*rows, strict=True))
        else:
            for row in rows:
                params.extend(row)
    return params



def _auto_pk(model: type[Model]) -> bool:
    return isinstance(model._meta.pk, (AutoField, BigAutoField, SmallAutoField))


def _insert_fields(model: type[Model], *, with_auto_pk: bool) -> list:
    """The columns an INSERT or COPY of `model` writes: its concrete fields but generated ones,
    and but an auto-increment pk unless `with_auto_pk` (its values then set on the objects)."""
    auto = _auto_pk(model)
    return [f for f in model._meta.concrete_fields
            if not f.generated and not (f.primary_key and auto and not with_auto_pk)]


def _insert_as_set(model: type[Model], objs: Sequence[Model], connection) -> None:
    """INSERT `objs` with every field's value as set on the objects (a raw insert: no field's
    pre_save runs, so auto_now times are not stamped), in batches the backend accepts."""
    fields = _insert_fields(model, with_auto_pk=not _auto_pk(model) or objs[0].pk is not None)
    size = connection.ops.bulk_batch_size(fields, objs) or len(objs)
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            query = InsertQuery(model)
            query.insert_values(fields, objs[start:start + size], raw=True)
            for sql, params in query.get_compiler(connection=connection).as_sql():
                cursor.execute(sql, params)


def _copy_rows(fields: list, *, keep_times: bool) -> tuple[list, Callable[[Model], tuple]]:
    """(the fields in the order COPY writes them, a function of an object giving its row):
    the values stored as they are read in one `attrgetter` (C code), then those that need a
    function of their own (_copy_value: times stamped now, JSON encoded)."""
    values = [(f, _copy_value(f, keep_times=keep_times)) for f in fields]
    plain = [f for f, get in values if get is None]
    special = [f for f, get in values if get is not None]
    getters = [get for _, get in values if get is not None]
    read = attrgetter(*[f.attname for f in plain]) if plain else (lambda obj: ())
    if len(plain) == 1:
        one = read
        read = lambda obj: (one(obj),)  # noqa: E731 (attrgetter of one name gives no tuple)
    return plain + special, lambda obj: (*read(obj), *[get(obj) for get in getters])


def _copy_value(field, *, keep_times: bool = False) -> Callable[[Model], object] | None:
    """A function of an object that gives `field`'s value as COPY writes it, or None when that
    is the attribute's value as it is (`keep_times`: an auto_now/auto_now_add time as set on
    the object, else now)."""
    if not keep_times and (getattr(field, "auto_now", False)
                           or getattr(field, "auto_now_add", False)):
        return lambda obj: field.pre_save(obj, True)
    if isinstance(field, JSONField):
        encoder = field.encoder
        return lambda obj: (None if (value := getattr(obj, field.attname)) is None
                            else json.dumps(value, cls=encoder))
    return None
