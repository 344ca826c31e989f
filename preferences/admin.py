"""Preferences in the admin: each recipient's sets on their page, tenant defaults on the tenant,
workflow defaults, and categories listed with their workflows.

The inlines are added to the notifications app's recipient and tenant admins from here, so that
app's admin does not need to know about preferences.
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clarion.admin import ClarionAdmin, FormFieldsMixin
from notifications.admin.audience import RecipientAdmin
from notifications.admin.tenants import TenantAdmin
from notifications.models import Workflow

from . import selectors
from .models import Category, PreferenceSet, WorkflowDefault
from .serializers import PreferenceSetSerializer, validate_channel_types

SECTIONS = ("channel_types", "categories", "workflows", "quiet_hours")
HELP = {
    "channel_types": gettext_lazy('{"email": false} turns a channel off everywhere.'),
    "categories": '{"marketing": false, "account": {"channel_types": {"sms": false}}}',
    "workflows": '{"welcome": {"channel_types": {"email": false}}}',
    "quiet_hours": gettext_lazy('{"start": "22:00", "end": "08:00"} in the person\'s time '
                                "zone; false for none (over a tenant default); empty to "
                                "inherit."),
}


class PreferenceSetForm(forms.ModelForm):
    """Checks the JSON boxes with the API's own validation, and says which entry is wrong."""

    class Meta:
        model = PreferenceSet
        fields = ("recipient", "tenant", *SECTIONS)
        help_texts = HELP

    def clean(self):
        cleaned = super().clean()
        data = {name: cleaned.get(name) for name in SECTIONS if name in self.fields}
        for name in ("channel_types", "categories", "workflows"):
            if name in data and data[name] is None:
                data[name] = {}
        serializer = PreferenceSetSerializer(data=data, partial=True)
        if not serializer.is_valid():
            for name, problems in serializer.errors.items():
                target = name if name in self.fields else None
                self.add_error(target, ValidationError(_describe(problems)))
            return cleaned
        cleaned.update(serializer.validated_data)
        return cleaned


def _describe(problems, prefix="") -> list[str]:
    if isinstance(problems, dict):
        return [line for key, value in problems.items()
                for line in _describe(value, f"{prefix}{key}: ")]
    return [f"{prefix}{problem}" for problem in problems]


class EffectiveMixin:
    @admin.display(description=gettext_lazy("what applies now"))
    def effective(self, obj):
        """Every workflow × channel as it resolves for this person (and tenant), with the rule:
        support's answer to "why did they (not) get it?"."""
        if obj is None or obj.pk is None or obj.recipient_id is None:
            return "—"
        rows = selectors.decisions(recipient=obj.recipient, tenant=obj.tenant)
        if not rows:
            return "—"
        body = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((w.key, c, _("on") if d.allowed else _("off"), d.rule) for w, c, d in rows))
        return format_html("<table><thead><tr><th>{}</th><th>{}</th><th>{}</th>"
                           "<th>{}</th></tr></thead><tbody>{}</tbody></table>",
                           _("Workflow"), _("Channel"), _("Now"), _("Decided by"), body)


class PreferenceSetInline(EffectiveMixin, FormFieldsMixin, admin.StackedInline):
    model = PreferenceSet
    form = PreferenceSetForm
    extra = 0
    fields = ("tenant", *SECTIONS, "effective", "updated_at")
    readonly_fields = ("effective", "updated_at")
    autocomplete_fields = ("tenant",)
    verbose_name = gettext_lazy("preference set")
    verbose_name_plural = gettext_lazy("preferences (the set without a tenant applies "
                                       "everywhere; a set for a tenant wins there)")


class TenantDefaultInline(FormFieldsMixin, admin.StackedInline):
    model = PreferenceSet
    form = PreferenceSetForm
    extra = 0
    max_num = 1
    fields = (*SECTIONS, "updated_at")
    readonly_fields = ("updated_at",)
    verbose_name = verbose_name_plural = gettext_lazy("default preferences")

    def get_queryset(self, request):
        return super().get_queryset(request).filter(recipient__isnull=True)


class WorkflowDefaultForm(forms.ModelForm):
    class Meta:
        model = WorkflowDefault
        fields = ("workflow", "channel_types")
        help_texts = {"channel_types": gettext_lazy(
            '{"sms": false}: SMS is off until people opt in.')}

    def clean_channel_types(self):
        value, problems = validate_channel_types(self.cleaned_data["channel_types"] or {})
        if problems:
            raise ValidationError(_describe(problems))
        return value


RecipientAdmin.inlines = (*RecipientAdmin.inlines, PreferenceSetInline)
TenantAdmin.inlines = (*TenantAdmin.inlines, TenantDefaultInline)


@admin.register(PreferenceSet)
class PreferenceSetAdmin(EffectiveMixin, ClarionAdmin):
    form = PreferenceSetForm
    list_display = ("__str__", "recipient", "tenant", "kind", "updated_at")
    list_filter = ("tenant",)
    list_select_related = ("recipient", "tenant")
    search_fields = ("recipient__external_id", "recipient__email", "tenant__key")
    search_help_text = gettext_lazy("Recipient id or email, or tenant key.")
    autocomplete_fields = ("recipient", "tenant")
    readonly_fields = ("effective", "created_at", "updated_at")

    @admin.display(description=gettext_lazy("kind"))
    def kind(self, obj):
        return {"recipient": _("person"), "recipient_tenant": _("person, for a tenant"),
                "tenant_default": _("tenant default")}[obj.scope]


@admin.register(WorkflowDefault)
class WorkflowDefaultAdmin(ClarionAdmin):
    """How a workflow ships: `{"sms": false}` keeps SMS off until a person opts in. (Its own
    page rather than an inline on the workflow, whose form other tests post field by field.)"""

    form = WorkflowDefaultForm
    list_display = ("workflow", "channel_types", "updated_at")
    list_select_related = ("workflow",)
    search_fields = ("workflow__key", "workflow__name")
    autocomplete_fields = ("workflow",)
    fields = ("workflow", "channel_types", "updated_at")
    readonly_fields = ("updated_at",)


@admin.register(Category)
class CategoryAdmin(ClarionAdmin):
    """Categories with their workflows; workflows name a category by key, and any key they
    use that has no row here is listed under the table (the center then shows the key)."""

    list_display = ("key", "name", "position", "workflow_list")
    list_editable = ("name", "position")
    search_fields = ("key", "name")
    readonly_fields = ("workflow_list",)
    change_list_template = "admin/preferences/category/change_list.html"

    @admin.display(description=gettext_lazy("workflows"))
    def workflow_list(self, obj):
        workflows = Workflow.objects.filter(category=obj.key).order_by("key")
        return _workflow_links(workflows) or "—"

    def changelist_view(self, request, extra_context=None):
        known = set(Category.objects.values_list("key", flat=True))
        loose: dict[str, list] = {}
        for workflow in Workflow.objects.exclude(category="").order_by("category", "key"):
            if workflow.category not in known:
                loose.setdefault(workflow.category, []).append(workflow)
        uncatalogued = [(key, _workflow_links(items)) for key, items in loose.items()]
        return super().changelist_view(request, {**(extra_context or {}),
                                                 "uncatalogued": uncatalogued})


def _workflow_links(workflows):
    return format_html_join(
        ", ", '<a href="{}">{}</a>{}',
        ((reverse("admin:notifications_workflow_change", args=[w.pk]), w.key,
          format_html(" <small>({})</small>", _("critical")) if w.critical else "")
         for w in workflows))
