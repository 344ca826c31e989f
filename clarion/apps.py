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
