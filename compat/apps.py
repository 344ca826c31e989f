from django.apps import AppConfig


class CompatConfig(AppConfig):
    name = "compat"
    verbose_name = "Knock and Novu compatibility"
