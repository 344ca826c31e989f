"""Support reads the analytics page: the roles synced again once analytics' tables exist."""

from django.db import migrations


def sync_roles(apps, schema_editor):
    from notifications.roles import roles_sync

    roles_sync(apps, strict=False)  # later permissions come with later migrations (0034)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0031_roles"),
        ("analytics", "0003_latency_bucket_columns"),
    ]

    operations = [migrations.RunPython(sync_roles, migrations.RunPython.noop)]
