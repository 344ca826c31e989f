from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from anymail.signals import tracking
        from django.core import checks

        from .addresses import check_default_from_email
        from .checks import task_timing_check
        from .delivery.status import anymail_tracking_received

        tracking.connect(anymail_tracking_received, dispatch_uid="clarion-anymail-tracking")
        checks.register(check_default_from_email, "email")
        checks.register(task_timing_check, "queue")
