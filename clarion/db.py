"""Database helpers shared by the apps."""

import json
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from operator import attrgetter

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.models import (
    AutoField,
    BigAutoField,
    BigIntegerField,
    BooleanField,
    CharField,
    DateTimeField,
    EmailField,
    ForeignKey,
    IntegerField,
    JSONField,
    Model,
    PositiveBigIntegerField,
    PositiveIntegerField,
    PositiveSmallIntegerField,
    SmallAutoField,
    SmallIntegerField,
    TextField,
    UUIDField,
)
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils.connection import ConnectionProxy


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


class InsertSelect:
    """An INSERT of `model`'s rows as a SELECT of their values, one parameter per column: an
    array per column unnested (`one_row` False: the text is the same for any number of rows,
    so it is prepared once) or, for one row, a value per column (cheaper to send than arrays).
    To be composed by the caller into a larger statement (a data-modifying CTE): `where` filters
    the rows (e.g. on an earlier CTE), `computed` gives a column an SQL expression of its value
    instead of the value itself ({field name: (the value's type, expression with "{}" for
    it)}), `extra` adds values that are not columns ((name, type), read as `<alias>.<name>`),
    `suffix` follows (ON CONFLICT …, RETURNING …). What is stored is what bulk_create stores
    (every concrete field but an auto-increment pk, each value as its field prepares it,
    `auto_now`/`auto_now_add` times set now and on the objects). PostgreSQL only."""

    __slots__ = ("sql", "fields", "one_row", "preparing", "_read", "_kinds", "_stamped",
                 "_numbers")

    def __init__(self, model: type[Model], *, alias: str, connection, one_row: bool = False,
                 where: str = "", computed: dict[str, tuple[str, str]] | None = None,
                 extra: Sequence[tuple[str, str]] = (), suffix: str = ""):
        computed = computed or {}
        self.fields, self.one_row = _insert_fields(model, with_auto_pk=False), one_row
        self.preparing = [(field, _stamped(field), _plain_types(field), _short_cut(field))
                          for field in self.fields]
        # params' plan: every attribute read at once (C code), then each value looked up by
        # its type in its field's table (_value_kinds) rather than through _prepared's tests.
        self._read = _attribute_reader([field.attname for field in self.fields])
        self._kinds = [_value_kinds(*plan) for plan in self.preparing]
        self._stamped = [(number, field) for number, (field, stamped, _, _)
                         in enumerate(self.preparing) if stamped]
        self._numbers = {field.name: number for number, field in enumerate(self.fields)}
        if any(hasattr(field, "get_placeholder") for field in self.fields):
            raise ValueError(f"InsertSelect: a field of {model.__name__} places its own values")
        ops, kinds, values = connection.ops, [], []
        for number, field in enumerate(self.fields):
            kind, expression = computed.get(field.name, (None, "{}"))
            kinds.append(kind or field.db_type(connection).split("(")[0])
            values.append(expression.format(f"{alias}.c{number}"))
        kinds += [kind for _, kind in extra]
        names = [f"c{number}" for number in range(len(self.fields))] + [name for name, _ in extra]
        if one_row:
            source = "(SELECT " + ", ".join(f"(%s)::{kind} AS {name}"
                                            for kind, name in zip(kinds, names, strict=True))
            source += f") AS {alias}"
        else:
            source = (f"UNNEST({', '.join(f'(%s)::{kind}[]' for kind in kinds)}) "
                      f"AS {alias}({', '.join(names)})")
        self.sql = (f"INSERT INTO {ops.quote_name(model._meta.db_table)} "
                    f"({', '.join(ops.quote_name(field.column) for field in self.fields)}) "
                    f"SELECT {', '.join(values)} FROM {source}"
                    + (f" WHERE {where}" if where else "") + (f" {suffix}" if suffix else ""))

    def params(self, objs: Sequence[Model], connection, *, computed: dict[str, list] | None = None,
               extra: Sequence[list] = ()) -> list:
        """The statement's parameters for `objs` (one row if `one_row`), a column's at a time:
        each field's prepared value, or for a `computed` field the values given here ({field
        name: a value per object}), then the `extra` values (a list each, a value per object).
        Raises ValueError for a value that is an expression (it has no place in a
        parameter)."""
        if isinstance(connection, ConnectionProxy):  # its every attribute a thread-local read
            connection = connections[connection.alias]
        given = [(self._numbers[name], list(values)) for name, values in (computed or {}).items()]
        rows = [self._row(obj, connection, given, index) for index, obj in enumerate(objs)]
        if self.one_row:
            (row,) = rows
            return row + [value for (value,) in extra]
        columns = [list(column) for column in zip(*rows, strict=True)] if rows else \
            [[] for _ in self.fields]
        return columns + [list(values) for values in extra]

    def _row(self, obj: Model, connection, given: list[tuple[int, list]], index: int) -> list:
        """`obj`'s values as params gives them (`given`: (column number, a value per object)
        for the computed fields, whose attributes are not prepared)."""
        values = list(self._read(obj))
        for number, _ in given:
            values[number] = None
        for number, field in self._stamped:
            values[number] = field.pre_save(obj, True)
        row = []
        for value, kinds, plan in zip(values, self._kinds, self.preparing, strict=True):
            kind = kinds.get(type(value), _UNKNOWN)
            if kind is None:
                row.append(value)
            elif kind is _UNKNOWN:
                field = plan[0]
                if type(field) in _TEXT_FIELDS and isinstance(value, str):
                    kinds[type(value)] = None  # a str subclass (choices): kept as it is
                    row.append(value)
                else:
                    row.append(_prepared(field, value, connection, plan[2], plan[3]))
            else:
                row.append(kind(value, connection))
        for number, values_given in given:
            row[number] = values_given[index]
        return row


_UNKNOWN = object()  # a value's type that a field's _value_kinds table does not name


def _attribute_reader(attnames: list[str]) -> Callable[[Model], tuple]:
    """A function of an object giving the tuple of its `attnames` attributes."""
    if not attnames:
        return lambda obj: ()
    read = attrgetter(*attnames)
    if len(attnames) == 1:
        return lambda obj: (read(obj),)
    return read


def _value_kinds(field, stamped: bool, plain: tuple[type, ...],
                 short_cut: tuple[tuple[type, ...], Callable] | None
                 ) -> dict[type, Callable | None]:
    """{a value's type: None when `field` stores values of that type as they are, else a
    function (value, connection) → the prepared value}, for the types _prepared takes a short
    way with; a value of any other type goes through _prepared itself."""
    kinds: dict[type, Callable | None] = {type(None): None, **dict.fromkeys(plain)}
    if type(field) is DateTimeField:
        def aware(value, connection):
            if value.tzinfo is not None:
                return value
            return field.get_db_prep_save(value, connection=connection)
        kinds[datetime] = aware
    if short_cut is not None:
        kinds.update(dict.fromkeys(short_cut[0], short_cut[1]))
    return kinds


def _stamped(field) -> bool:
    """Whether `field`'s pre_save sets its value (auto_now, auto_now_add) rather than reads it."""
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False))


def _plain_types(field) -> tuple[type, ...]:
    """The types of the values that `field`'s get_db_prep_save gives back unchanged on
    PostgreSQL (InsertSelect.params then skips it): str for Django's own text fields, UUID
    (also for a foreign key to a UUID key), bool (and, in _prepared, an aware datetime); none
    for other fields (integers, for one, are wrapped in psycopg's sized types) and for
    subclasses, which may prepare values their own way."""
    if type(field) is ForeignKey and type(field.target_field) is UUIDField:
        return (uuid.UUID,)
    return _PLAIN_TYPES.get(type(field), ())


_PLAIN_TYPES = {CharField: (str,), TextField: (str,), EmailField: (str,),
                UUIDField: (uuid.UUID,), BooleanField: (bool,)}
# Django's own text fields: their get_db_prep_save gives any str back as it is, a subclass's
# too (a TextChoices member: CharField.to_python keeps a str)
_TEXT_FIELDS = frozenset((CharField, TextField, EmailField))


# Django's own integer fields (their exact classes): get_db_prep_save of an int is the backend's
# adapt_integerfield_value of it (psycopg's sized types on PostgreSQL).
_INTEGER_FIELDS = frozenset((IntegerField, SmallIntegerField, BigIntegerField,
                             PositiveIntegerField, PositiveSmallIntegerField,
                             PositiveBigIntegerField))
_AUTO_FIELDS = frozenset((AutoField, BigAutoField, SmallAutoField))


def _short_cut(field) -> tuple[tuple[type, ...], Callable] | None:
    """What `field`'s get_db_prep_save does to values of its commonest types, when it is one of
    Django's own classes, without the calls in between: (the types, (value, connection) → the
    prepared value) for an int in an integer field (the backend's sized integer) or a foreign
    key to an auto-increment key, a dict or list in a JSON field; None for other fields and for
    subclasses, which may prepare values their own way."""
    kind = type(field)
    if kind in _INTEGER_FIELDS:
        internal = field.get_internal_type()
        return (int,), lambda value, connection: connection.ops.adapt_integerfield_value(
            value, internal)
    if kind is ForeignKey and type(field.target_field) in _AUTO_FIELDS:
        return (int,), lambda value, connection: connection.ops.validate_autopk_value(value)
    if kind is JSONField:
        encoder = field.encoder
        return (dict, list), lambda value, connection: connection.ops.adapt_json_value(
            value, encoder)
    return None


def _prepared(field, value, connection, plain: tuple[type, ...],
              short_cut: tuple[tuple[type, ...], Callable] | None = None):
    """`value` as `field`'s get_db_prep_save prepares it, skipped for plain values, shorter
    for those `short_cut` (the field's _short_cut) covers."""
    if value is None or type(value) in plain:
        return value
    if type(value) is datetime and value.tzinfo is not None and type(field) is DateTimeField:
        return value
    if short_cut is not None and type(value) in short_cut[0]:
        return short_cut[1](value, connection)
    if hasattr(value, "resolve_expression"):
        raise ValueError(f"InsertSelect: {field.name} is an expression")
    return field.get_db_prep_save(value, connection=connection)


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


def _type_name(field, connection) -> str:
    """The PostgreSQL type a value for `field` is cast to in a statement: its column's type
    without a length or precision (``varchar(255)`` → ``varchar``, ``numeric(12, 6)`` →
    ``numeric``), so the column itself checks the value (PostgreSQL docs, "Character Types":
    an explicit cast to character varying(n) truncates; storing a longer value is an error)."""
    return _TYPE_MODIFIER.sub("", field.cast_db_type(connection))


_TYPE_MODIFIER = re.compile(r"\(\s*\d+(\s*,\s*\d+)?\s*\)")


def rows_update(model: type[Model], objs: list, fields: list[str], *, status: str | None = None,
                match: tuple[str, ...] = (), using: str = DEFAULT_DB_ALIAS) -> set | None:
    """UPDATE each object's `fields` by primary key in one statement: on PostgreSQL one
    UPDATE … FROM (VALUES …) for all of them, returning the primary keys of the rows it wrote;
    elsewhere an executemany (one statement per row), returning None. bulk_update's CASE
    expressions cost more Python than either; psycopg's executemany (pipelined, one round trip)
    still costs a statement's conversion and result per row. `status`: only rows still in that
    status are written; `match`: only rows whose columns of these fields still hold the
    object's values.

    On PostgreSQL the values are bound by the server (numbered_cursor: Django's cursor quotes
    each one into the text in Python, and psycopg parses a text of over 50 parameters again on
    every execute) and prepared as `_prepared` says (plain strings, UUIDs and aware times as
    they are): 100 messages' outcomes, 1,200 values, cost ~0.9 ms of CPU against ~5.5 ms."""
    if not objs:
        return set()
    connection = connections[using]
    opts = model._meta
    columns = [opts.get_field(name) for name in fields]
    matched = [opts.get_field(name) for name in match]
    quote = connection.ops.quote_name
    table, pk = quote(opts.db_table), quote(opts.pk.column)
    guard = [] if status is None else [status]
    if connection.vendor == "postgresql":
        listed = [opts.pk, *matched, *columns]
        shape = ("update", using, model, tuple(fields), tuple(match), status is None, len(objs))
        sql = _statements.get(shape)
        if sql is None:
            # Each value cast to its column's type (a VALUES list's literals are untyped),
            # without the length: an explicit cast to varchar(n) cuts a longer value short
            # silently, where the assignment to the column refuses it, as Model.save() does.
            row = "(" + ", ".join(f"%s::{_type_name(field, connection)}"
                                  for field in listed) + ")"
            names = [f"v{i}" for i in range(len(listed))]
            sql = (f"UPDATE {table} SET "
                   + ", ".join(f"{quote(c.column)} = v.{name}"
                               for c, name in zip(columns, names[1 + len(matched):], strict=True))
                   + f" FROM (VALUES {', '.join([row] * len(objs))}) "
                   + f"AS v({', '.join(names)}) WHERE {table}.{pk} = v.v0"
                   + "".join(f" AND {table}.{quote(m.column)} = v.{name}"
                             for m, name in zip(matched, names[1:], strict=False)))
            if status is not None:
                sql += f" AND {table}.{quote(opts.get_field('status').column)} = %s"
            sql = _keep_statement(shape, numbered_placeholders(f"{sql} RETURNING {table}.{pk}"))
        plans = [(field, field.attname, _plain_types(field), _short_cut(field))
                 for field in listed]
        params = [value if (value := getattr(obj, name)) is None or type(value) in plain
                  else _prepared(field, value, connection, plain, short_cut)
                  for obj in objs for field, name, plain, short_cut in plans]
        with numbered_cursor(using) as cursor:
            cursor.execute(sql, params + guard)
            return {written for (written,) in cursor.fetchall()}
    sql = (f"UPDATE {table} SET "
           + ", ".join(f"{quote(c.column)} = %s" for c in columns)
           + f" WHERE {pk} = %s" + "".join(f" AND {quote(m.column)} = %s" for m in matched))
    if status is not None:
        sql += f" AND {quote(opts.get_field('status').column)} = %s"
    params = [[c.get_db_prep_save(getattr(obj, c.attname), connection) for c in columns]
              + [opts.pk.get_db_prep_value(obj.pk, connection)]
              + [m.get_db_prep_save(getattr(obj, m.attname), connection) for m in matched]
              + guard for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
    return None


def rows_create(objs: list, using: str = DEFAULT_DB_ALIAS) -> None:
    """INSERT new model objects (of one model, primary keys chosen by the database) and set
    their primary keys: on PostgreSQL one INSERT … VALUES … RETURNING written here (no
    signals, as bulk_create, whose machinery costs a one-row INSERT ~0.09 ms more CPU, measured
    in a loop: most hand-overs of a lone call write one row; the same at 10 rows), its values
    bound by the server and prepared as rows_update's (`auto_now`/`auto_now_add` times set now
    and on the objects; no other field's pre_save runs, as for rows_copy and InsertSelect);
    elsewhere bulk_create."""
    if not objs:
        return
    connection = connections[using]
    model = type(objs[0])
    if connection.vendor != "postgresql":
        model.objects.using(using).bulk_create(objs)
        return
    opts = model._meta
    fields = [f for f in opts.concrete_fields if not f.primary_key]
    shape = ("create", using, model, len(objs))
    sql = _statements.get(shape)
    if sql is None:
        quote = connection.ops.quote_name
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = _keep_statement(shape, numbered_placeholders(
            f"INSERT INTO {quote(opts.db_table)} ("
            + ", ".join(quote(f.column) for f in fields)
            + f") VALUES {', '.join([row] * len(objs))} RETURNING {quote(opts.pk.column)}"))
    plans = [(field, _stamped(field), _plain_types(field), _short_cut(field)) for field in fields]
    params = [_prepared(field, field.pre_save(obj, True) if stamped
                        else getattr(obj, field.attname), connection, plain, short_cut)
              for obj in objs for field, stamped, plain, short_cut in plans]
    with numbered_cursor(using) as cursor:
        cursor.execute(sql, params)
        pks = [pk for (pk,) in cursor.fetchall()]
    for obj, pk in zip(objs, pks, strict=True):
        obj.pk = pk
        obj._state.adding, obj._state.db = False, connection.alias


# shape → rows_update's or rows_create's statement (numbered placeholders): the same text for
# the same model, fields and row count.
_statements: dict[tuple, str] = {}


def _keep_statement(shape: tuple, sql: str) -> str:
    if len(_statements) >= _COMPILED_MAX:
        _statements.clear()
    _statements[shape] = sql
    return sql


def prepared_cursor(using: str = DEFAULT_DB_ALIAS):
    """A cursor (Django's wrapper: execute_wrapper and query capture see its statements) whose
    statements PostgreSQL keeps prepared: parameters bound by the server rather than quoted
    into the text in Python, and a statement run `prepare_threshold` times on a connection
    (the database OPTIONS, set by DB_PREPARED_STATEMENTS) parsed and planned once, then
    executed by name (psycopg's prepared statements). For the few statements a hot path runs
    with the same SQL text again and again. Elsewhere, or without `prepare_threshold`, the
    connection's own cursor."""
    connection = connections[using]
    if (connection.vendor != "postgresql"
            or connection.settings_dict["OPTIONS"].get("prepare_threshold") is None):
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    return _wrapped_cursor(connection, ServerBindingCursor)


def _wrapped_cursor(connection, cursor_class):
    """A psycopg cursor of `cursor_class` on `connection`, opened as Django opens its own (a
    failed health check closes the connection first) and in Django's wrapper."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(cursor_class(connection.connection))


def numbered_cursor(using: str = DEFAULT_DB_ALIAS):
    """A PostgreSQL cursor (Django's wrapper) for statements written with numbered placeholders
    (`$1`, `$2` …; numbered_placeholders), bound by the server and prepared as prepared_cursor
    says (without `prepare_threshold`, bound but never prepared, as PgBouncer in transaction
    mode needs). For a long statement run again and again: psycopg converts `%s` to `$n` by
    parsing the text on every execute once a statement is over 4,096 characters or 50
    parameters (its cache's bounds), ~0.3 ms of CPU for a trigger's one statement."""
    global _numbered_cursor_class
    if _numbered_cursor_class is None:
        import psycopg
        from django.db.backends.postgresql.base import CursorMixin

        _numbered_cursor_class = type("NumberedCursor", (CursorMixin, psycopg.RawCursor), {})
    return _wrapped_cursor(connections[using], _numbered_cursor_class)


_numbered_cursor_class = None  # Django's psycopg cursor with psycopg's RawCursor (no %s)


def numbered_placeholders(sql: str) -> str:
    """`sql` with each `%s` numbered in order (`$1`, `$2` …), for numbered_cursor; `%%` is
    read as a literal `%`."""
    parts, number = sql.split("%%"), 0
    for index, part in enumerate(parts):
        pieces = part.split("%s")
        for piece in range(1, len(pieces)):
            number += 1
            pieces[piece] = f"${number}{pieces[piece]}"
        parts[index] = "".join(pieces)
    return "%".join(parts)


@contextmanager
def pipelined_cursor(using: str = DEFAULT_DB_ALIAS) -> Iterator:
    """prepared_cursor in psycopg's pipeline mode: its statements, and the BEGIN that psycopg
    sends on its own before a transaction's first statement, reach PostgreSQL together, one
    round trip instead of two. A result is read at its first fetch (which waits for it) or at
    the block's end; errors are raised then too (as Django's exceptions)."""
    connection = connections[using]
    with prepared_cursor(using) as cursor:
        if connection.vendor != "postgresql":
            yield cursor
            return
        with connection.wrap_database_errors, connection.connection.pipeline():
            yield cursor


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


@cache
def instance_maker(model: type[Model]) -> Callable[..., Model]:
    """A function that makes new `model` instances as `model(**kwargs)` does, for code that
    makes thousands (an advance batch: two Messages and three StepLogs a run): Model.__init__
    walks every field, asks each for its default and sets each related object through its
    descriptor (~25 µs a Message, ~10 with this). `make(related={"run": run, …}, **values)`:
    `related` the many-to-one and one-to-one fields given as objects (their `_id` set, the
    object cached as the descriptor would: no query to read it back), `values` the other
    fields by attname; the fields not given take their defaults (a callable default called for
    each instance). One function per model (cached). Errors: TypeError for a name that is no
    such field. A model with pre_init/post_init receivers is made through Model.__init__."""
    from django.db.models import ForeignKey, signals
    from django.db.models.base import ModelState

    constant, called, attnames, targets = {}, [], set(), {}
    for field in model._meta.concrete_fields:
        attnames.add(field.attname)
        if field.has_default() and callable(field.default):
            called.append((field.attname, field.get_default))
        else:
            constant[field.attname] = field.get_default()
        if isinstance(field, ForeignKey) and not field.remote_field.parent_link:
            targets[field.name] = (field.attname, field.target_field.attname,
                                   field.remote_field if field.one_to_one else None)

    def make(related: dict | None = None, **values) -> Model:
        if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
            return model(**(related or {}), **values)
        unknown = (values.keys() - attnames) | ((related or {}).keys() - targets.keys())
        if unknown:
            raise TypeError(f"{model.__name__} has no field named {sorted(unknown)}")
        obj = model.__new__(model)
        state = obj._state = ModelState()
        fields = obj.__dict__
        fields.update(constant)
        for attname, default in called:
            if attname not in values:  # as Model.__init__: a given value's default not made
                fields[attname] = default()
        if related:
            cache = state.fields_cache
            for name, value in related.items():
                attname, target, reverse = targets[name]
                fields[attname] = None if value is None else getattr(value, target)
                cache[name] = value
                if value is not None:
                    if state.db is None:
                        state.db = value._state.db
                    if reverse is not None:  # one-to-one: the object's reverse accessor too
                        reverse.set_cached_value(value, obj)
        fields.update(values)
        return obj

    return make
