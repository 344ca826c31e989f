"""engine.lanes_hold's statement as a function, so that a trigger still sends one: it takes the
lanes' shared advisory locks, then reads and marks the lanes with a snapshot taken after them
(a VOLATILE SQL function takes one per statement). Read in one statement, the snapshot would be
older than the locks: a trigger that waited for a release would still see the deleted row.
PostgreSQL only (SQLite serializes the trigger and the release: nothing to create there)."""

from django.db import migrations

HOLD = """
CREATE FUNCTION notifications_advance_lanes_hold(
    lock_key integer, lanes smallint[], fresh_after timestamptz, at timestamptz)
RETURNS SETOF smallint LANGUAGE sql VOLATILE AS $$
SELECT count(pg_advisory_xact_lock_shared(lock_key, wanted)) FROM unnest(lanes) AS wanted;
WITH held AS (SELECT lane FROM notifications_advancelane
              WHERE lane = ANY(lanes) AND touched_at >= fresh_after),
marked AS (INSERT INTO notifications_advancelane AS lane_row (lane, touched_at)
           SELECT free.lane, at FROM unnest(lanes) AS free(lane)
           WHERE free.lane NOT IN (SELECT lane FROM held)
           ON CONFLICT (lane) DO UPDATE SET touched_at = EXCLUDED.touched_at
           WHERE lane_row.touched_at < fresh_after)
SELECT lane FROM held;
$$
"""

DROP = "DROP FUNCTION notifications_advance_lanes_hold(integer, smallint[], timestamptz, timestamptz)"


def _create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(HOLD)


def _drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):

    dependencies = [
        ('notifications', '0040_advance_lanes'),
    ]

    operations = [
        migrations.RunPython(_create, _drop),
    ]
