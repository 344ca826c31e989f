"""Model instances made as Model(**kwargs) makes them, without its per-call work
(`instance_maker`), and read from a statement's rows as a query set reads them
(`instance_reader`, `model_columns`; `rows_by_pk`, in_bulk's rows by a statement kept per
model)."""

from collections.abc import Callable
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import (
    ForeignKey,
    Model,
)
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.signals import post_init, pre_init
from django.utils.connection import ConnectionProxy

from .cursors import numbered_cursor


def _made_plainly(model: type[Model], *, read: bool = False) -> bool:
    """Whether a `model` instance may be made now without Model.__init__ (its values set in its
    `__dict__`) and be the same: `model` keeps Model's `__init__` and object's `__setattr__`
    (and Model's `from_db`, when `read` from the database), and no pre_init or post_init
    receiver listens to it. Asked for each instance, so that a receiver connected, or a method
    replaced, after a maker or reader was made is seen: identity tests, and has_listeners
    (~0.7 µs each) only while some receiver of that signal is connected at all."""
    return (model.__init__ is _MODEL_INIT and model.__setattr__ is _OBJECT_SETATTR
            and (not read or model.from_db.__func__ is _MODEL_FROM_DB)
            and not (pre_init.receivers and pre_init.has_listeners(model))
            and not (post_init.receivers and post_init.has_listeners(model)))


_MODEL_INIT, _MODEL_FROM_DB, _OBJECT_SETATTR = (Model.__init__, Model.from_db.__func__,
                                                object.__setattr__)


def _set_through_descriptors(model: type[Model], attnames) -> bool:
    """Whether setting one of `attnames` on a `model` instance runs a descriptor's `__set__`
    (a FileField's, a custom field's), which setting it in `__dict__` would skip; a foreign
    key's `_id` descriptor only forgets a cached object, which a new instance has not."""
    found = [getattr(model, name, None) for name in attnames]
    return any(hasattr(type(descriptor), "__set__")
               and not isinstance(descriptor, ForeignKeyDeferredAttribute)
               for descriptor in found)


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
    such field. A model with pre_init/post_init receivers, its own `__init__` or `__setattr__`,
    or a field set through a descriptor, is made through Model.__init__ (_made_plainly)."""
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

    descriptors = _set_through_descriptors(model, attnames)

    def make(related: dict | None = None, **values) -> Model:
        if descriptors or not _made_plainly(model):
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


def model_columns(model: type[Model], alias: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """`model`'s concrete fields' columns, qualified by the table's `alias`, in the order that
    `instance_reader` reads them (`_meta.concrete_fields`): for a statement written by hand
    whose rows become instances (an UPDATE … RETURNING, a join's second table)."""
    quote = connections[using].ops.quote_name
    return ", ".join(f"{quote(alias)}.{quote(field.column)}"
                     for field in model._meta.concrete_fields)


@cache
def instance_reader(model: type[Model], using: str = DEFAULT_DB_ALIAS) -> Callable[..., Model]:
    """A function that makes a `model` instance from its concrete fields' values as a cursor
    returns them (the columns of `model_columns`, in that order) as a query set makes it: each
    value through the converters that the ORM's compiler applies to the column (the backend's,
    then the field's: a JSON text decoded, a Decimal quantized…), then the instance as
    `model.from_db` makes it (`_state.db` set, `adding` false): its fields' values set in its
    `__dict__` at once where Model.__init__ would set each through `setattr` (~8 µs a Run),
    which is the same for a model that keeps Model's `__init__`, `from_db` and `__setattr__`,
    sets no field through a descriptor and has no pre_init/post_init receivers (asked at each
    read: _made_plainly); any other through `from_db`. The converters are given the reading
    thread's connection (django.db.connections is per thread): a proxy that looks it up when
    a converter reads one of its attributes, as django.db.connection does (JSONField's never
    does; a lookup per row would cost ~3 µs). One function per model and database alias
    (cached), for any thread. Errors: ValueError for a row of another length."""
    from django.db.models.base import ModelState

    connection = connections[using]  # the converters' lists: the same on every thread
    fields = model._meta.concrete_fields
    names = [field.attname for field in fields]
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(model._meta.db_table)
        found = (connection.ops.get_db_converters(column)
                 + column.get_db_converters(connection))
        if found:
            converters.append((index, column, found))
    current = ConnectionProxy(connections, using)
    descriptors = _set_through_descriptors(model, names)

    def read(values) -> Model:
        values = list(values)
        if len(values) != len(names):
            raise ValueError(f"{model.__name__}: {len(values)} values for {len(names)} fields")
        for index, column, found in converters:
            value = values[index]
            for converter in found:
                value = converter(value, column, current)
            values[index] = value
        if descriptors or not _made_plainly(model, read=True):
            return model.from_db(using, names, values)
        obj = model.__new__(model)
        state = obj._state = ModelState()
        state.adding, state.db = False, using
        obj.__dict__.update(zip(names, values, strict=True))
        return obj

    return read


def rows_by_pk(model: type[Model], pks, using: str = DEFAULT_DB_ALIAS) -> dict:
    """`model`'s rows of these primary keys, by primary key, as `_base_manager.in_bulk(pks)`
    gives them (no ordering, no manager's filter). On PostgreSQL one statement kept per model,
    `SELECT … WHERE pk = ANY($1)` with the keys as one array bound by the server, read by
    `instance_reader`: a query set compiled for each call, with each key quoted into its text
    in Python (and that text parsed again by psycopg over 50 keys), cost ~1-3 ms of CPU for the
    100 keys of a batch. Errors: ValidationError for a key that is not one (as in_bulk)."""
    pks = set(pks)
    if not pks:
        return {}
    connection = connections[using]
    if connection.vendor != "postgresql":
        return model._base_manager.using(using).in_bulk(pks)
    shape = ("by_pk", using, model)
    sql = _statements.get(shape)
    if sql is None:
        quote = connection.ops.quote_name
        table = model._meta.db_table
        sql = _statements[shape] = (
            f"SELECT {model_columns(model, table, using)} FROM {quote(table)} "
            f"WHERE {quote(model._meta.pk.column)} = ANY($1)")
    pk = model._meta.pk
    with numbered_cursor(using) as cursor:
        cursor.execute(sql, [[pk.to_python(value) for value in pks]])
        rows = cursor.fetchall()
    read = instance_reader(model, using)
    return {obj.pk: obj for obj in map(read, rows)}


_statements: dict[tuple, str] = {}  # rows_by_pk's, by (kind, alias, model): a few per process
