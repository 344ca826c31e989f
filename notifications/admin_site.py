"""The admin site: navigation by task (Author, Audience, Delivery, Activity, Settings) and a home
page that is a dashboard of today (notifications/dashboard.py).

Ledgers and internals (idempotency records, step logs, template versions, delivery attempts,
the outbox) are left out of the navigation: the pages that own them link to them
(a run's timeline, a message's attempts, a template's versions). Each app's own index
(/admin/<app>/) still lists every model it registers.

Installed in place of django.contrib.admin (settings.INSTALLED_APPS); it imports no model at
import time, because Django loads it before the models.
"""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

# (label, group title, [entries]): the label names the group in the page's markup whatever the
# language; an entry is "app_label.model_name" (shown when registered and the person
# may view it), ("Title", "app_label.model_name") to show it under another name, or
# ("Title", url name, permission) for a page that is not a model's list.
TASKS: list[tuple[str, str, list]] = [
    # "Author" the task (writing workflows and templates); a version's "Author" is a person.
    ("author", pgettext_lazy("navigation", "Author"), [
        "notifications.workflow", "notifications.template", "notifications.layout",
        "preferences.category", "notifications.schedule"]),
    ("audience", _("Audience"), ["notifications.recipient", "notifications.topic",
                                 "notifications.tenant"]),
    ("delivery", _("Delivery"), ["notifications.providerconfig", "events.eventendpoint"]),
    ("activity", _("Activity"), [(pgettext_lazy("navigation", "Search"), "admin-find", None),
                                 "notifications.run", "notifications.message",
                                 (_("Analytics"), "analytics.hourlyrollup")]),
    ("settings", _("Settings"), ["notifications.apikey", "auth.user", "auth.group",
                                 (_("Audit log"), "auditlog.logentry")]),
]


class ClarionAdminSite(admin.AdminSite):
    site_header = "Clarion"
    site_title = "Clarion"
    index_title = _("Today")
    index_template = "admin/clarion/index.html"

    def get_app_list(self, request, app_label=None):
        """The home page's and sidebar's groups, by task; an app's own index is Django's."""
        if app_label is not None:
            return super().get_app_list(request, app_label)
        by_key = {f"{app['app_label']}.{model['object_name'].lower()}": model
                  for app in self._build_app_dict(request).values() for model in app["models"]}
        groups, home = [], reverse("admin:index", current_app=self.name)
        for label, title, entries in TASKS:
            models = []
            for entry in entries:
                if isinstance(entry, str):
                    if entry in by_key:
                        models.append(by_key[entry])
                    continue
                if len(entry) == 2:
                    if entry[1] in by_key:
                        models.append({**by_key[entry[1]], "name": entry[0]})
                    continue
                page = _page(request, *entry)
                if page and not any(m["name"] == page["name"] for m in models):
                    models.append(page)
            if models:
                groups.append({"name": title, "app_label": label, "app_url": home,
                               "has_module_perms": True, "models": models})
        return groups

    def index(self, request, extra_context=None):
        from . import dashboard  # models are loaded by the time a page is served

        context = {**self.each_context(request), "title": self.index_title, "subtitle": None,
                   "app_list": self.get_app_list(request),
                   "dashboard": dashboard.dashboard_for(request.user),
                   "all_apps": [app for app in super().get_app_list(request)],
                   **(extra_context or {})}
        request.current_app = self.name
        return TemplateResponse(request, self.index_template, context)


def _page(request, title: str, url_name: str, permission: str | None) -> dict | None:
    """A page that is not a model's list, as the app list shows a model; None when it is not
    installed or the person may not see it."""
    if permission and not request.user.has_perm(permission):
        return None
    try:
        url = reverse(url_name)
    except NoReverseMatch:
        return None
    return {"name": title, "object_name": url_name, "admin_url": url,
            "add_url": None, "view_only": True, "perms": {"view": True}}


class ClarionAdminConfig(AdminConfig):
    default_site = "notifications.admin_site.ClarionAdminSite"
