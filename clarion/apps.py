"""The project: settings, URLs, the shared admin bases and how free text travels in paths."""

from django.apps import AppConfig
from django.urls import register_converter

from .paths import PathSegmentConverter


class ClarionConfig(AppConfig):
    name = "clarion"
    verbose_name = "Clarion"

    def ready(self):
        # `<segment:name>` in any URLconf: one percent-encoded path segment (clarion/paths.py).
        register_converter(PathSegmentConverter, "segment")
        # The audit log names the API key that made a change (clarion/audit.py).
        from auditlog import get_logentry_model
        from django.db.models.signals import pre_save

        from .audit import log_entry_api_key

        pre_save.connect(log_entry_api_key, sender=get_logentry_model(),
                         dispatch_uid="clarion-audit-api-key")
        # qcluster: queues whose locks a killed worker lets go of (clarion/worker_queues.py).
        from . import worker_preload, worker_queues

        worker_queues.install()
        # qcluster: what each worker would load on its first task, loaded once before the
        # fork (clarion/worker_preload.py).
        worker_preload.install()
