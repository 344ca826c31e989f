"""Indexes that every trigger or message wrote and nothing read are gone (migrations 0044 and
0046), and the lookups they might have served are still served by an index."""

import pytest
from django.db import connection

from notifications.models import Message, Recipient

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif("connection.vendor != 'postgresql'")]


def indexes(model) -> dict[str, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s",
                       [model._meta.db_table])
        return dict(cursor.fetchall())


@pytest.mark.parametrize(("model", "field"), [(Message, "provider_message_id"),
                                              (Recipient, "external_id")])
def test_no_prefix_index_and_the_whole_value_still_indexed(model, field):
    column = model._meta.get_field(field).column
    found = indexes(model)
    assert not [name for name, sql in found.items() if "pattern_ops" in sql], found
    assert [name for name, sql in found.items() if sql.endswith(f"({column})")], found
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN SELECT 1 FROM {model._meta.db_table} WHERE {column} = %s", ["x"])
        plan = " ".join(row[0] for row in cursor.fetchall())
    assert "Index" in plan, plan
