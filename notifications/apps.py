from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from anymail.signals import tracking
        from django.core import checks
        from django.db.models.signals import post_delete, post_save
        from django_q.signals import post_spawn

        from clarion.collector import freeze_loaded

        from .addresses import check_default_from_email
        from .checks import task_timing_check
        from .delivery.status import anymail_tracking_received
        from .models import ApiKey, Tenant
        from .services.keys import api_keys_forget

        post_spawn.connect(freeze_loaded, dispatch_uid="clarion-worker-gc-freeze")
        tracking.connect(anymail_tracking_received, dispatch_uid="clarion-anymail-tracking")
        checks.register(check_default_from_email, "email")
        checks.register(task_timing_check, "queue")
        # A key or its tenant changed in this process: its web requests read them again.
        for name, signal in (("saved", post_save), ("deleted", post_delete)):
            for model in (ApiKey, Tenant):
                signal.connect(api_keys_forget, sender=model,
                               dispatch_uid=f"clarion-api-keys-{model.__name__}-{name}")
