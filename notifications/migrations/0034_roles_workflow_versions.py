"""Publishers approve and publish workflow versions; everyone who authors reads them."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from notifications.roles import roles_sync

    roles_sync(apps)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0033_workflow_versions")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
