"""Two indexes every trigger wrote and no query reads: the IdempotencyRecord's own index of
`api_key` (idempotency_unique, (api_key, key), leads with the same column and serves its lookups
and its key's cascade), and on PostgreSQL the recipient's `external_id` `varchar_pattern_ops`
index that Django adds beside a unique text column for LIKE 'prefix%' (nothing filters
recipients by a prefix; their lookups are by equality, served by the unique index). Django would
add the latter again only with a change of the column's type."""

import django.db.models.deletion
from django.db import migrations, models


def _like_index(apps, schema_editor) -> str:
    recipient = apps.get_model("notifications", "Recipient")
    column = recipient._meta.get_field("external_id").column
    return schema_editor._create_index_name(recipient._meta.db_table, [column], suffix="_like")


def _drop_like(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        name = schema_editor.quote_name(_like_index(apps, schema_editor))
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def _create_like(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        recipient = apps.get_model("notifications", "Recipient")
        q = schema_editor.quote_name
        column = recipient._meta.get_field("external_id").column
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {q(_like_index(apps, schema_editor))} ON "
            f"{q(recipient._meta.db_table)} ({q(column)} varchar_pattern_ops)")


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0043_ormq_notify"),
    ]

    operations = [
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="api_key",
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                    related_name="+", to="notifications.apikey",
                                    verbose_name="API key"),
        ),
        migrations.RunPython(_drop_like, _create_like, elidable=False),
    ]
