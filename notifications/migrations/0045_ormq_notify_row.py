"""The queue table's NOTIFY (migration 0043) as a row trigger with a WHEN clause instead of a
statement trigger with a transition table: PostgreSQL fires a statement trigger once for every
statement that names the table, rows or not, and keeps every inserted row in the transition
table for it, so each trigger's one statement (services/trigger_statement.py, whose queue row is
mostly not written: its advance lane is held) paid for the trigger's call and its query. A row
trigger whose WHEN is false is not queued at all. What is notified is the same: `clarion_queue`
when a transaction that adds a task due now (or within a second) commits, nothing if it rolls
back (or the row's savepoint does); NOTIFY folds a transaction's identical notifications into
one, so several rows still wake the pusher once. PostgreSQL only."""

from django.db import migrations

ROW = """
DROP TRIGGER notifications_ormq_notify ON django_q_ormq;
CREATE OR REPLACE FUNCTION notifications_ormq_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
PERFORM pg_notify('clarion_queue', '');
RETURN NULL;
END
$$;
CREATE TRIGGER notifications_ormq_notify AFTER INSERT ON django_q_ormq FOR EACH ROW
WHEN (NEW.lock <= clock_timestamp() + interval '1 second')
EXECUTE FUNCTION notifications_ormq_notify();
"""


def _row(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(ROW)


def _statement(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        notify = import_module("notifications.migrations.0043_ormq_notify").NOTIFY
        schema_editor.execute("DROP TRIGGER notifications_ormq_notify ON django_q_ormq; " +
                              notify.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0044_trigger_indexes"),
    ]

    operations = [migrations.RunPython(_row, _statement)]
