"""clarion.db.rows_insert and rows_upsert: each shape's SQL is compiled once and the statement
prepared (prepared_cursor), and what they store is what bulk_create stores, the first time and
from the kept SQL after it."""

import pytest
from django.db import connection
from django.utils import timezone

from clarion import db
from clarion.db import inserts
from clarion.db import params as db_params
from notifications.models import Recipient, Tenant, Topic


def _insert(tag: str, tenants: int, topics: int) -> None:
    db.rows_insert([
        (Tenant, [Tenant(key=f"{tag}-t{i}", name=f"T {i}", settings={"n": i})
                  for i in range(tenants)]),
        (Topic, [Topic(key=f"{tag}-p{i}", name=f"P {i}") for i in range(topics)]),
    ])


@pytest.mark.django_db
@pytest.mark.parametrize("tenants, topics", [(1, 1), (3, 2)])  # VALUES, and UNNEST from 2 rows
def test_rows_insert_stores_the_same_rows_from_its_kept_sql(tenants, topics):
    before = timezone.now()
    _insert("a", tenants, topics)
    _insert("b", tenants, topics)  # the kept SQL (on PostgreSQL), new parameters

    for tag in ("a", "b"):
        stored = list(Tenant.objects.filter(key__startswith=f"{tag}-").order_by("key"))
        assert [(t.key, t.name, t.settings) for t in stored] == [
            (f"{tag}-t{i}", f"T {i}", {"n": i}) for i in range(tenants)]
        assert all(t.created_at >= before for t in stored)
        assert sorted(Topic.objects.filter(key__startswith=f"{tag}-")
                      .values_list("key", flat=True)) == [f"{tag}-p{i}" for i in range(topics)]
    if connection.vendor == "postgresql":
        assert ("default", (Tenant, tenants), (Topic, topics)) in inserts._compiled_inserts


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 3])
def test_rows_upsert_inserts_new_rows_and_updates_only_the_given_fields(count):
    Recipient.objects.create(external_id="r0", name="Old", email="old@example.com",
                             phone="+15550001111")
    for round_ in range(2):  # the second time from the kept SQL (on PostgreSQL)
        rows = [Recipient(external_id=f"r{i}", name=f"Name {round_}", email=f"r{i}@example.com")
                for i in range(count)]
        db.rows_upsert(Recipient, rows, unique_fields=["external_id"],
                       update_fields=["name", "email", "updated_at"])

        stored = {r.external_id: r for r in Recipient.objects.all()}
        assert [row.pk for row in rows] == [stored[f"r{i}"].pk for i in range(count)]
        assert all(not row._state.adding for row in rows)
        assert {(r.external_id, r.name, r.email) for r in stored.values()} == {
            (f"r{i}", f"Name {round_}", f"r{i}@example.com") for i in range(count)}
        assert stored["r0"].phone == "+15550001111"  # not in update_fields: kept


@pytest.mark.django_db
def test_a_statement_run_often_through_prepared_cursor_is_prepared_on_the_connection():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    sql = "SELECT count(*) FROM notifications_tenant WHERE key = %s"
    for i in range(threshold + 1):
        with db.prepared_cursor() as cursor:
            cursor.execute(sql, [f"k{i}"])
            assert cursor.fetchone() == (0,)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert sql.replace("%s", "$1") in prepared


def test_numbered_placeholders_number_each_placeholder_in_order_and_keep_a_literal_percent():
    assert db.numbered_placeholders("SELECT %s, %s LIKE 'a%%' || %s") == \
        "SELECT $1, $2 LIKE 'a%' || $3"


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 3])  # a value per column, and arrays unnested
def test_insert_select_stores_what_bulk_create_stores(count):
    if connection.vendor != "postgresql":
        pytest.skip("InsertSelect composes PostgreSQL statements")
    Tenant.objects.create(key="t", name="T")
    tenant = Tenant.objects.get(key="t")
    insert = db.InsertSelect(Topic, alias="v", connection=connection, one_row=count == 1)
    statement = f"WITH inserted AS ({insert.sql}) SELECT 1"
    before = timezone.now()
    rows = [Topic(key=f"k{i}", name=f"Topic {i}", tenant=tenant if i % 2 else None)
            for i in range(count)]
    with db.numbered_cursor() as cursor:
        cursor.execute(db.numbered_placeholders(statement), insert.params(rows, connection))
    Topic.objects.bulk_create([Topic(key=f"b{i}", name=f"Topic {i}",
                                     tenant=tenant if i % 2 else None) for i in range(count)])

    def stored(prefix):
        return [(t.key[1:], t.name, t.tenant_id) for t in
                Topic.objects.filter(key__startswith=prefix).order_by("key")]
    assert stored("k") == stored("b") and len(stored("k")) == count
    assert all(t.created_at >= before for t in Topic.objects.filter(key__startswith="k"))


def test_a_fields_short_cut_prepares_a_value_as_its_get_db_prep_save_does():
    # Every concrete field of the trigger's rows, with values of the types a short cut takes
    # (and of others, which take the long way): the same value, of the same type.
    from analytics.models import RollupDelta
    from notifications.models import IdempotencyRecord, Run, StepLog, Trigger

    values = [0, 7, 2**40, True, {"a": [1, {"b": None}]}, [1, "x"], [], {}, "s", None]
    covered = set()
    for model in (Trigger, Run, StepLog, RollupDelta, IdempotencyRecord, Recipient):
        for field in model._meta.concrete_fields:
            short_cut = db_params._short_cut(field)
            for value in values:
                try:
                    expected = field.get_db_prep_save(value, connection)
                except Exception:  # a value the field refuses  # noqa: BLE001
                    continue
                got = db_params._prepared(field, value, connection, db_params._plain_types(field),
                                         short_cut)
                assert type(got) is type(expected), (field, value)
                if hasattr(expected, "obj"):  # psycopg's JSON wrappers
                    assert (got.obj, got.dumps) == (expected.obj, expected.dumps), (field, value)
                else:
                    assert got == expected, (field, value)
                if short_cut is not None and type(value) in short_cut[0]:
                    covered.add(type(field).__name__)
    assert {"ForeignKey", "JSONField", "PositiveIntegerField"} <= covered, covered


def test_insert_select_params_prepare_each_value_as_its_fields_get_db_prep_save_does():
    # InsertSelect.params looks a value's type up in its field's table (_value_kinds) rather
    # than calling _prepared: every concrete field of the trigger's rows, with values of the
    # types the tables name (and of others): the same value, of the same type.
    import uuid
    from datetime import UTC, datetime

    from django_q.models import OrmQ

    from analytics.models import RollupDelta
    from notifications.models import IdempotencyRecord, Run, StepLog, Trigger

    if connection.vendor != "postgresql":
        pytest.skip("InsertSelect composes PostgreSQL statements")
    values = [0, 7, 2**40, True, {"a": [1, {"b": None}]}, [1, "x"], [], {}, "s", None,
              uuid.uuid4(), Run.Status.RUNNING, datetime(2026, 12, 3, 15, 0, tzinfo=UTC)]
    compared = 0
    for model in (Trigger, Run, StepLog, RollupDelta, IdempotencyRecord, Recipient, OrmQ):
        insert = db.InsertSelect(model, alias="v", connection=connection, one_row=True)
        for number, field in enumerate(insert.fields):
            if db_params._stamped(field):
                continue
            for value in values:
                try:
                    expected = field.get_db_prep_save(value, connection)
                except Exception:  # a value the field refuses  # noqa: BLE001
                    continue
                row = model()
                setattr(row, field.attname, value)
                got = insert.params([row], connection)[number]
                assert type(got) is type(expected), (field, value)
                if hasattr(expected, "obj"):  # psycopg's JSON wrappers
                    assert (got.obj, got.dumps) == (expected.obj, expected.dumps), (field, value)
                else:
                    assert got == expected, (field, value)
                compared += 1
    assert compared > 200, compared
