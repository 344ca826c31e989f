"""Workflows and their steps in the admin: the workflow page is the builder (admin/builder/);
the step page, for engineers, takes only the step types the engine runs, with config and
conditions checked as the API checks them, and links each channel step's templates."""

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import ngettext

from clarion.admin import (
    EMPTY,
    ClarionAdmin,
    admin_url,
    changelist_url,
    link,
    table,
    when,
)

from .. import conditions, engine
from ..channels import CHANNEL_KEYS
from ..engine import windows
from ..models import Step, StepType, Template, Workflow
from .builder import views as builder_views

SUPPORTED_STEP_CHOICES = [
    (value, label) for value, label in StepType.choices if value in engine.SUPPORTED_STEP_TYPES
]


class StepForm(forms.ModelForm):
    """Only the step types the engine runs; config and conditions checked as the API does."""

    type = forms.ChoiceField(choices=[("", "---------"), *SUPPORTED_STEP_CHOICES])

    class Meta:
        model = Step
        fields = ["workflow", "position", "ref", "type", "config", "conditions", "unless",
                  "send_window", "urgent"]
        widgets = {
            "config": forms.Textarea(attrs={"rows": 2, "cols": 36}),
            "conditions": forms.Textarea(attrs={"rows": 2, "cols": 48}),
            "unless": forms.Textarea(attrs={"rows": 2, "cols": 28}),
            "send_window": forms.Textarea(attrs={"rows": 2, "cols": 36}),
        }

    def clean(self):
        cleaned = super().clean()
        step_type = cleaned.get("type")
        if cleaned.get("conditions"):
            try:
                conditions.validate(cleaned["conditions"])
            except conditions.ConditionError as exc:
                self.add_error("conditions", str(exc))
        if step_type == StepType.DELAY and "config" in cleaned:
            try:
                engine.validate_delay_config(cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", str(exc))
        elif step_type == StepType.THROTTLE and "config" in cleaned:
            try:
                engine.validate_throttle_config(cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", f"{exc.field}: {exc}")
        elif step_type in CHANNEL_KEYS and "config" in cleaned:
            try:
                engine.validate_channel_config(step_type, cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", str(exc))
        for name in ("unless", "send_window", "urgent"):
            if cleaned.get(name) and step_type not in CHANNEL_KEYS:
                self.add_error(name, f'Only channel steps can have "{name}".')
        if cleaned.get("send_window") and step_type in CHANNEL_KEYS:
            try:
                windows.parse_window(cleaned["send_window"])
            except windows.WindowError as exc:
                self.add_error("send_window", str(exc))
        if cleaned.get("unless") and step_type in CHANNEL_KEYS and cleaned.get("workflow"):
            earlier = {other.ref: other.type for other in cleaned["workflow"].steps.all()
                       if other.position < (cleaned.get("position") or 0)
                       and other.pk != self.instance.pk}
            try:
                engine.validate_unless(cleaned["unless"], earlier)
            except engine.StepConfigError as exc:
                self.add_error("unless", f"{exc.field}: {exc}")
        if (self.instance.pk and step_type and step_type != self.instance.type
                and self.instance.templates.exists()):
            self.add_error("type", f"This step has {self.instance.get_type_display()} templates; "
                                   "delete them before changing its type.")
        return cleaned


def step_templates_summary(step):
    """'2 locales: en, fr' with each locale linking to its template, or a link to add one."""
    if step.pk is None or step.type not in CHANNEL_KEYS:
        return EMPTY
    templates = sorted(step.templates.all(), key=lambda template: template.locale)
    add = format_html('<a href="{}?{}">add a template</a>', reverse(
        "admin:notifications_template_add"), urlencode({"step": step.pk}))
    if not templates:
        return format_html("No templates: {}", add)
    locales = format_html_join(", ", '<a href="{}">{}</a>',
                               ((admin_url(template), template.locale) for template in templates))
    count = ngettext("%d locale", "%d locales", len(templates)) % len(templates)
    return format_html('<a href="{}">{}</a>: {}', changelist_url(Template, step__id__exact=step.pk),
                       count, locales)


@admin.register(Workflow)
class WorkflowAdmin(ClarionAdmin):
    """The change and add pages are the workflow builder (admin/builder/): per-type step forms,
    saved through the API's serializer and `services.workflow_put`."""

    list_display = ("key", "name", "category", "critical", "active", "step_count", "updated_at")
    list_filter = ("active", "critical", "category")
    search_fields = ("key", "name", "category")
    readonly_fields = ("created_at", "updated_at")

    def get_urls(self):
        extra = [
            path("<path:object_id>/export/", self.admin_site.admin_view(self.export_view),
                 name="notifications_workflow_export"),
            path("import/", self.admin_site.admin_view(self.import_view),
                 name="notifications_workflow_import"),
        ]
        return extra + super().get_urls()

    def add_view(self, request, form_url="", extra_context=None):
        return builder_views.builder_view(self, request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return builder_views.builder_view(self, request, object_id)

    def export_view(self, request, object_id):
        return builder_views.export_view(self, request, object_id)

    def import_view(self, request):
        return builder_views.import_view(self, request)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(step_count=Count("steps"))

    @admin.display(description="steps", ordering="step_count")
    def step_count(self, obj):
        return obj.step_count


@admin.register(Step)
class StepAdmin(ClarionAdmin):
    form = StepForm
    list_display = ("__str__", "workflow", "position", "ref", "type", "templates")
    list_filter = ("type", "workflow")
    list_select_related = ("workflow",)
    search_fields = ("ref", "workflow__key", "workflow__name")
    autocomplete_fields = ("workflow",)
    ordering = ("workflow__key", "position", "id")
    fields = ("workflow", "position", "ref", "type", "config", "conditions", "unless",
              "send_window", "urgent", "template_list")
    readonly_fields = ("template_list",)

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("templates")

    @admin.display(description="templates")
    def templates(self, obj):
        return step_templates_summary(obj)

    @admin.display(description="templates")
    def template_list(self, obj):
        if obj.pk is None:
            return "Save the step first."
        if obj.type not in CHANNEL_KEYS:
            return f"{obj.get_type_display()} steps have no templates."
        templates = obj.templates.select_related("published_version").order_by("locale")
        rows = table(
            ("Locale", "Published version", "Updated", ""),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((template.locale,
              template.published_version.number if template.published_version else EMPTY,
              when(template.updated_at), link(template, "Edit"))
             for template in templates),
        )
        add = format_html('<a class="addlink" href="{}?{}">Add a template for this step</a>',
                          reverse("admin:notifications_template_add"), urlencode({"step": obj.pk}))
        return format_html("{}<p>{}</p>", rows, add)
