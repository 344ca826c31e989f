"""The analytics fold runs every minute on django-q2's scheduler."""

from django.db import migrations

NAME = "clarion.analytics.fold"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={"func": "analytics.tasks.fold", "schedule_type": "I", "minutes": 1,
                  "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0001_initial"),
        ("django_q", "0018_task_success_index"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
