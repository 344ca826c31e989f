"""Database helpers shared by the apps."""

import json
from collections.abc import Callable, Sequence
from operator import attrgetter

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import AutoField, BigAutoField, JSONField, Model, SmallAutoField
from django.db.models.sql import InsertQuery


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached (refused, down, restarting, the
    connection lost, no pooled connection in time) rather than a bad query. The API answers
    those with a 503 and Retry-After, never a 500."""
    if isinstance(exc, InterfaceError):  # the connection is closed or unusable
        return True
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    if not type(cause).__module__.startswith("psycopg"):
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    # psycopg: no SQLSTATE when the connection failed or was lost (and psycopg_pool's
    # PoolTimeout); class 08 is connection exception, 57P01-57P03 are admin shutdown, crash
    # shutdown, cannot connect now.
    return sqlstate is None or sqlstate.startswith("08") or \
        sqlstate in {"57P01", "57P02", "57P03"}


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
    statements, params = [], []
    for model, objs in groups:
        if _auto_pk(model) and any(obj.pk is not None for obj in objs):
            raise ValueError(f"rows_insert: {model.__name__}'s auto-increment pk must be unset")
        fields = _insert_fields(model, with_auto_pk=False)
        query = InsertQuery(model)
        query.insert_values(fields, objs)
        [(sql, sql_params)] = query.get_compiler(connection=connection).as_sql()
        statements.append(sql)
        params.extend(sql_params)
    ctes = ", ".join(f"inserted_{i} AS ({sql})" for i, sql in enumerate(statements[:-1]))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {statements[-1]}", params)
    for _, objs in groups:
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using


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
