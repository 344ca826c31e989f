"""Support reads a trigger's idempotency record, linked from the trigger's page."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from notifications.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0035_message_send_number")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
