from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from anymail.signals import tracking

        from . import checks  # noqa: F401  (registers the system checks)
        from .delivery.status import anymail_tracking_received

        tracking.connect(anymail_tracking_received, dispatch_uid="clarion-anymail-tracking")
