"""Database helpers shared by the apps."""

import json
from collections.abc import Sequence

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import AutoField, BigAutoField, JSONField, Model, SmallAutoField


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
              returning_ids: bool = False) -> None:
    """Insert `objs` (new `model` instances) in the caller's transaction: on PostgreSQL by one
    COPY (no ON CONFLICT: a duplicate key raises IntegrityError), elsewhere by bulk_create.

    For rows known to be new (those of runs created in the same transaction) and timelines:
    COPY formats the rows in psycopg's C code, where bulk_create builds a VALUES/UNNEST
    statement through Django's compiler and quotes every value in Python (bench/fanout.py:
    most of a fan-out's CPU). What bulk_create would store is stored: each field's value as set
    on the object, `auto_now`/`auto_now_add` times set now (and on the objects), JSON fields
    encoded with their encoder. An auto-increment pk is taken from its sequence when
    `returning_ids` (one query; set on the objects, in order), else left to the default and
    not set on the objects. No signals are sent (nor does bulk_create send them)."""
    if not objs:
        return
    connection = connections[using]
    if connection.vendor != "postgresql":
        model._default_manager.using(using).bulk_create(objs)
        return
    auto = isinstance(model._meta.pk, (AutoField, BigAutoField, SmallAutoField))
    fields = [f for f in model._meta.concrete_fields
              if not (f.primary_key and auto and not returning_ids)]
    with connection.cursor() as cursor:
        if auto and returning_ids:
            cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) "
                           "FROM generate_series(1, %s)",
                           [model._meta.db_table, model._meta.pk.column, len(objs)])
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        getters = [_copy_value(field, connection) for field in fields]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        with cursor.copy(f"COPY {connection.ops.quote_name(model._meta.db_table)} "
                         f"({columns}) FROM STDIN") as copy:
            for obj in objs:
                copy.write_row([get(obj) for get in getters])
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def _copy_value(field, connection):
    """A function of an object that gives `field`'s value as COPY writes it."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda obj: field.pre_save(obj, True)
    if isinstance(field, JSONField):
        encoder = field.encoder
        return lambda obj: (None if (value := getattr(obj, field.attname)) is None
                            else json.dumps(value, cls=encoder))
    attname = field.attname
    return lambda obj: getattr(obj, attname)
