"""On PostgreSQL, the `varchar_pattern_ops` index Django adds beside Message.provider_message_id's
index for LIKE 'prefix%': nothing looks messages up by a prefix of it (status callbacks, the
recovery sweep and the admin's search compare it whole, served by the plain index), and every
message's INSERT and every update that moves its status (the claim, the outcome: never HOT, the
status being indexed) wrote an entry into it, one of the table's eleven. Django would add it
again only with a change of the column's type. Like 0044 for the recipient's external id."""

from django.db import migrations


def _like_index(apps, schema_editor) -> tuple[str, str, str]:
    message = apps.get_model("notifications", "Message")
    column = message._meta.get_field("provider_message_id").column
    table = message._meta.db_table
    return table, column, schema_editor._create_index_name(table, [column], suffix="_like")


def _drop_like(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        _, _, name = _like_index(apps, schema_editor)
        schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")


def _create_like(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        q = schema_editor.quote_name
        table, column, name = _like_index(apps, schema_editor)
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {q(name)} ON {q(table)} ({q(column)} varchar_pattern_ops)")


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0045_ormq_notify_row"),
    ]

    operations = [
        migrations.RunPython(_drop_like, _create_like, elidable=False),
    ]
