"""The audit log in the admin: every change to workflows, steps, templates, layouts, providers,
tenants, API keys and preferences (django-auditlog's LogEntry; what is tracked is in
clarion/settings.py, who made an API change in clarion/audit.py), read-only, filterable by model,
action, user, API key and date."""

from auditlog import get_logentry_model
from auditlog.admin import LogEntryAdmin
from auditlog.filters import ResourceTypeFilter
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from clarion.admin import link

from ..models import ApiKey

LogEntry = get_logentry_model()

# django-auditlog ships no French or German catalog. The labels its admin and models mark for
# translation are kept in ours (Django merges every app's catalog), so its pages speak the admin's
# language too.
AUDITLOG_LABELS = (
    gettext_noop("Resource"), gettext_noop("Resource Type"), gettext_noop("Correlation ID"),
    gettext_noop("Field"), gettext_noop("From"), gettext_noop("To"),
    gettext_noop("Relationship"), gettext_noop("Objects"), gettext_noop("log entry"),
    gettext_noop("log entries"), gettext_noop("remote address"), gettext_noop("remote port"),
    gettext_noop("timestamp"), gettext_noop("action"), gettext_noop("create"),
    gettext_noop("update"), gettext_noop("delete"), gettext_noop("access"),
    gettext_noop("object representation"), gettext_noop("change message"),
    gettext_noop("content type"), gettext_noop("object pk"), gettext_noop("additional data"),
    gettext_noop("actor email"), gettext_noop("Created {repr:s}"),
    gettext_noop("Updated {repr:s}"), gettext_noop("Deleted {repr:s}"),
    gettext_noop("Logged {repr:s}"),
)


class UserFilter(admin.SimpleListFilter):
    title = gettext_lazy("user")
    parameter_name = "user"

    def lookups(self, request, model_admin):
        users = get_user_model().objects.filter(
            pk__in=LogEntry.objects.filter(actor__isnull=False).values("actor"))
        return [(str(user.pk), str(user)) for user in users]

    def queryset(self, request, queryset):
        return queryset.filter(actor_id=self.value()) if self.value() else queryset


class ApiKeyFilter(admin.SimpleListFilter):
    title = gettext_lazy("API key")
    parameter_name = "api_key"

    def lookups(self, request, model_admin):
        return [(str(key.pk), str(key)) for key in ApiKey.objects.order_by("name", "pk")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        try:
            key_id = int(self.value())
        except ValueError:
            return queryset.none()
        return queryset.filter(additional_data__api_key__id=key_id)


def actor_of(entry, kind: str) -> dict | None:
    """Who made the change, of `kind` "api_key" ({"id", "name", "prefix"}) or "recipient"
    ({"id", "via"}), from the entry's additional_data; None if not such an actor."""
    data = entry.additional_data if isinstance(entry.additional_data, dict) else {}
    actor = data.get(kind)
    return actor if isinstance(actor, dict) else None


admin.site.unregister(LogEntry)


@admin.register(LogEntry)
class AuditLogEntryAdmin(LogEntryAdmin):
    list_display = ["created", "resource_url", "action", "msg_short", "who", "remote_addr"]
    date_hierarchy = "timestamp"
    list_filter = ["action", ResourceTypeFilter, UserFilter, ApiKeyFilter]
    search_fields = ["object_repr", "object_pk"]
    search_help_text = gettext_lazy("What was changed: its name or key (e.g. a workflow key).")
    readonly_fields = ["created", "resource_url", "action", "who", "remote_addr", "msg"]
    fieldsets = [
        (None, {"fields": ["created", "who", "remote_addr", "resource_url"]}),
        (gettext_lazy("Changes (before → after)"), {"fields": ["action", "msg"]}),
    ]
    list_select_related = ["content_type", "actor"]

    @admin.display(description=gettext_lazy("who"))
    def who(self, obj):
        """The admin user, the API key (by name and prefix) or the recipient that made the
        change."""
        api_key = actor_of(obj, "api_key")
        recipient = actor_of(obj, "recipient")
        if recipient is not None:
            return _("recipient %(id)s (via %(via)s)") % {"id": recipient.get("id"),
                                                           "via": recipient.get("via")}
        if api_key is not None:
            key = ApiKey.objects.filter(pk=api_key.get("id")).first()
            text = _("API key %(name)s (%(prefix)s…)") % {"name": api_key.get("name"),
                                                          "prefix": api_key.get("prefix")}
            return link(key, text) if key is not None else text
        if obj.actor_id:
            return format_html(_("user {}"), obj.actor)
        return _("system")
