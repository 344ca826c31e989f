"""An index for the ORM broker's dequeue (`key = … AND lock < now`): with precise wake-ups
(notifications.queue.enqueue_at) the queue table holds every waiting run's future task, and the
cluster asks for due ones every Q_CLUSTER["poll"] seconds."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0015_step_unless_send_window_urgent"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [
        migrations.RunSQL(
            "CREATE INDEX notifications_ormq_due ON django_q_ormq (key, lock)",
            "DROP INDEX notifications_ormq_due",
        ),
    ]
