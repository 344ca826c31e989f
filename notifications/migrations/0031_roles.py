"""The admin's roles (Editor, Publisher, Support, Administrator) as groups: notifications/roles.py."""

from django.db import migrations


def create_roles(apps, schema_editor):
    from notifications.roles import roles_sync

    roles_sync(apps, strict=False)  # later permissions come with later migrations (0034)


def remove_roles(apps, schema_editor):
    from notifications.roles import roles_remove

    roles_remove(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("notifications", "0030_permissions_publish_resend"),
        ("inbox", "0002_count_indexes"),
        ("preferences", "0001_preference_sets"),
        ("events", "0002_sweeper_schedule"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
