"""Publishers approve and publish workflow versions; everyone who authors reads them."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from notifications.roles import roles_sync

    # Not strict: a permission of a model added by a later migration is left out here, and
    # the migration that adds it syncs again (the tests call roles_sync() strictly).
    roles_sync(apps, strict=False)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0033_workflow_versions")]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
