from django.apps import AppConfig


class ClarionConfig(AppConfig):
    name = "clarion"
    verbose_name = "Clarion"
