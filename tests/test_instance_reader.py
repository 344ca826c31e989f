"""clarion.db.instance_reader and instance_maker made once and used for the life of the
process: a reader used by another thread gives its converters that thread's connection; a
receiver connected, or a model's `__init__`/`__setattr__` replaced, after they were made is
honoured (the instance made as Model.__init__ makes it)."""

import threading

import pytest
from django.db import connection, models
from django.db.models import JSONField
from django.db.models.signals import pre_init
from django.test.utils import isolate_apps

from clarion.db import instance_maker, instance_reader, model_columns
from notifications.models import Tenant


@pytest.fixture
def readers_made_anew():
    """instance_reader's and instance_maker's cached functions forgotten before and after."""
    instance_reader.cache_clear()
    instance_maker.cache_clear()
    yield
    instance_reader.cache_clear()
    instance_maker.cache_clear()


def _tenant_row(tenant: Tenant) -> tuple:
    table = connection.ops.quote_name(Tenant._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {model_columns(Tenant, 't')} FROM {table} AS t WHERE id = %s",
                       [tenant.pk])
        return cursor.fetchone()


@pytest.mark.django_db
def test_a_reader_used_by_another_thread_gives_its_converters_that_threads_connection(
        readers_made_anew, monkeypatch):
    given = []
    decode = JSONField.from_db_value

    def from_db_value(field, value, expression, connection):
        connection.validate_thread_sharing()  # raises for another thread's connection
        given.append(threading.get_ident())
        return decode(field, value, expression, connection)

    monkeypatch.setattr(JSONField, "from_db_value", from_db_value)
    tenant = Tenant.objects.create(key="t", name="T", settings={"plan": [1, None]})
    row = _tenant_row(tenant)
    read = instance_reader(Tenant)
    assert read(row).settings == {"plan": [1, None]}  # on this thread, which made the reader

    outcome = []

    def other_thread():
        try:
            outcome.append(read(row).settings)
        except Exception as error:  # reported below  # noqa: BLE001
            outcome.append(error)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(timeout=10)
    assert outcome == [{"plan": [1, None]}]
    assert given[0] == threading.get_ident() and given[1] == thread.ident


@pytest.mark.django_db
def test_a_receiver_connected_after_a_reader_was_made_hears_of_its_instances(
        readers_made_anew):
    tenant = Tenant.objects.create(key="t", name="T")
    row = _tenant_row(tenant)
    read = instance_reader(Tenant)
    read(row)
    heard = []

    def receiver(sender, args, kwargs, **extra):
        heard.append(sender)

    pre_init.connect(receiver, sender=Tenant)
    try:
        read(row)
        instance_maker(Tenant)(key="u", name="U")
    finally:
        pre_init.disconnect(receiver, sender=Tenant)
    assert heard == [Tenant, Tenant]


@isolate_apps("notifications")
def test_a_models_setattr_replaced_after_a_reader_was_made_sets_each_value(readers_made_anew):
    class Traced(models.Model):
        name = models.CharField(max_length=10)
        data = models.JSONField(default=dict)

        class Meta:
            app_label = "notifications"

        def __str__(self):
            return self.name

    read, make = instance_reader(Traced), instance_maker(Traced)
    assert read([1, "a", '{"k": 1}']).data == {"k": 1}
    make(name="b")
    traced = []

    def tracing_setattr(obj, name, value):
        if name != "_state":  # Model.__init__ sets its state so too
            traced.append(name)
        models.Model.__setattr__(obj, name, value)

    Traced.__setattr__ = tracing_setattr
    read_back = read([1, "a", '{"k": 1}'])
    assert (read_back.pk, read_back.name, read_back.data) == (1, "a", {"k": 1})
    assert traced == ["id", "name", "data"]
    traced.clear()
    assert make(name="b").name == "b" and traced == ["id", "name", "data"]


@isolate_apps("notifications")
def test_a_model_with_a_field_set_through_a_descriptor_is_read_through_it(readers_made_anew):
    class Upper:
        def __init__(self, field):
            self.field = field

        def __get__(self, obj, owner=None):
            return self if obj is None else obj.__dict__[self.field.attname]

        def __set__(self, obj, value):
            obj.__dict__[self.field.attname] = value.upper()

    class UpperField(models.CharField):
        descriptor_class = Upper

    class Shouting(models.Model):
        name = UpperField(max_length=10)

        class Meta:
            app_label = "notifications"

        def __str__(self):
            return self.name

    assert instance_reader(Shouting)([1, "a"]).name == "A"
    assert instance_maker(Shouting)(name="b").name == "B"
