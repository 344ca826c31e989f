"""Drop the single-column indexes of foreign keys whose column is the first of another index,
which serves every lookup by it (EXPLAIN: bench/README.md, "Fan-out, same rows"): one index
less to write per row. Only the indexes go; the foreign key constraints stay as they are (an
AlterField would drop and re-add them, checking every row again)."""

import django.db.models.deletion
from django.db import migrations, models

# (table, column, index): each index's column leads message_once_per_step_channel,
# message_recipient_idx, message_log_tenant_idx, run_recipient_idx and run_once_per_recipient.
COVERED = [
    ("notifications_message", "recipient_id", "notifications_message_recipient_id_f5c7dd5a"),
    ("notifications_message", "run_id", "notifications_message_run_id_a8b6891c"),
    ("notifications_message", "tenant_id", "notifications_message_tenant_id_c6430145"),
    ("notifications_run", "recipient_id", "notifications_run_recipient_id_02092652"),
    ("notifications_run", "trigger_id", "notifications_run_trigger_id_5ce37999"),
]


def index_dropped(table: str, column: str, index: str) -> migrations.RunSQL:
    return migrations.RunSQL(f'DROP INDEX IF EXISTS "{index}"',
                             reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("{column}")')


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0038_field_names_translatable"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message", name="recipient",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages", to="notifications.recipient",
                        verbose_name="recipient")),
                migrations.AlterField(
                    model_name="message", name="run",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages", to="notifications.run", verbose_name="run")),
                migrations.AlterField(
                    model_name="message", name="tenant",
                    field=models.ForeignKey(
                        blank=True, db_index=False, null=True,
                        on_delete=django.db.models.deletion.PROTECT, related_name="messages",
                        to="notifications.tenant", verbose_name="tenant")),
                migrations.AlterField(
                    model_name="run", name="recipient",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs", to="notifications.recipient",
                        verbose_name="recipient")),
                migrations.AlterField(
                    model_name="run", name="trigger",
                    field=models.ForeignKey(
                        db_index=False, on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs", to="notifications.trigger",
                        verbose_name="trigger")),
            ],
            database_operations=[index_dropped(*covered) for covered in COVERED],
        ),
    ]
