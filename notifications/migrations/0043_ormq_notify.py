"""A queued task wakes the cluster's pusher (clarion.queue_broker): on PostgreSQL, each INSERT
into django-q2's queue table that adds a task due now (or within a second) notifies
`clarion_queue` when its transaction commits (nothing if it rolls back), once per statement and,
NOTIFY folding identical ones, once per transaction. Tasks for later (enqueue_at) notify
nothing: the broker's poll finds them. PostgreSQL only (SQLite's embedded mode polls)."""

from django.db import migrations

NOTIFY = """
CREATE FUNCTION notifications_ormq_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
IF EXISTS (SELECT 1 FROM queued WHERE lock <= clock_timestamp() + interval '1 second') THEN
    PERFORM pg_notify('clarion_queue', '');
END IF;
RETURN NULL;
END
$$;
CREATE TRIGGER notifications_ormq_notify AFTER INSERT ON django_q_ormq
REFERENCING NEW TABLE AS queued FOR EACH STATEMENT EXECUTE FUNCTION notifications_ormq_notify();
"""

DROP = """
DROP TRIGGER notifications_ormq_notify ON django_q_ormq;
DROP FUNCTION notifications_ormq_notify();
"""


def _create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(NOTIFY)


def _drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0042_advance_lanes_hold_plpgsql"),
    ]

    operations = [migrations.RunPython(_create, _drop)]
