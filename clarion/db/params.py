"""Statement parameters as Django's fields prepare them, by shorter ways where the value's
type allows: `InsertSelect` (an INSERT of rows as a SELECT of one parameter per column) and the
per-field tables its parameters and `rows_insert`'s are prepared by."""

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter

from django.db import connections
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
from django.utils.connection import ConnectionProxy

from .inserts import _insert_fields


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
