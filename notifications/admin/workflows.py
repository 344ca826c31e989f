"""Workflows and their steps in the admin: the workflow page is the builder (admin/builder/);
the step page, for engineers, takes only the step types the engine runs, with config and
conditions checked as the API checks them, and links each channel step's templates."""

from django import forms
from django.contrib import admin
from django.db.models import Count
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
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
from ..workflow_versions import is_unpublished, version_record_live
from . import draft_templates, versions
from .builder import views as builder_views
from .builder.views import may_publish_directly

SUPPORTED_STEP_CHOICES = [
    (value, label) for value, label in StepType.choices if value in engine.SUPPORTED_STEP_TYPES
]


class StepForm(forms.ModelForm):
    """Only the step types the engine runs; config and conditions checked as the API does."""

    type = forms.ChoiceField(choices=[("", "---------"), *SUPPORTED_STEP_CHOICES])

    class Meta:
        model = Step
        fields = ["workflow", "parent", "branch", "position", "ref", "type", "config",
                  "conditions", "branches", "unless", "send_window", "urgent"]
        widgets = {
            "config": forms.Textarea(attrs={"rows": 2, "cols": 36}),
            "conditions": forms.Textarea(attrs={"rows": 2, "cols": 48}),
            "branches": forms.Textarea(attrs={"rows": 2, "cols": 48}),
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
        elif step_type == StepType.ROUTE and "config" in cleaned:
            try:
                engine.validate_route_config(cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", f"{exc.field}: {exc}")
        elif step_type == StepType.DIGEST and "config" in cleaned:
            try:
                engine.validate_digest_config(cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", f"{exc.field}: {exc}")
        elif step_type == StepType.APPROVAL and "config" in cleaned:
            try:
                engine.validate_approval_config(cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", f"{exc.field}: {exc}")
        elif step_type in CHANNEL_KEYS and "config" in cleaned:
            try:
                engine.validate_channel_config(step_type, cleaned["config"])
            except engine.StepConfigError as exc:
                self.add_error("config", str(exc))
        for name in ("unless", "send_window", "urgent"):
            if cleaned.get(name) and step_type not in CHANNEL_KEYS and not (
                    step_type == StepType.ROUTE and name != "unless"):
                self.add_error(name, _('Only channel steps can have "%(field)s".')
                               % {"field": name})
        if cleaned.get("send_window") and step_type in (*CHANNEL_KEYS, StepType.ROUTE):
            try:
                windows.parse_window(cleaned["send_window"])
            except windows.WindowError as exc:
                self.add_error("send_window", str(exc))
        self._clean_branches(cleaned, step_type)
        if cleaned.get("unless") and step_type in CHANNEL_KEYS and cleaned.get("workflow"):
            earlier = earlier_steps(list(cleaned["workflow"].steps.all()), self.instance.pk,
                                    cleaned.get("parent"), cleaned.get("branch") or "",
                                    cleaned.get("position") or 0)
            try:
                engine.validate_unless(cleaned["unless"], earlier)
            except engine.StepConfigError as exc:
                self.add_error("unless", f"{exc.field}: {exc}")
        if (self.instance.pk and step_type and step_type != self.instance.type
                and self.instance.templates.exists()):
            self.add_error("type", _("This step has %(type)s templates; delete them before "
                                     "changing its type.")
                           % {"type": self.instance.get_type_display()})
        return cleaned


    def _clean_branches(self, cleaned, step_type) -> None:
        """A branch step's `branches` checked as the API checks them; a nested step's `parent`
        is a step with branches of the same workflow, and `branch` one of its branches."""
        branches = cleaned.get("branches")
        if branches is not None and not isinstance(branches, list):
            self.add_error("branches",
                           _('Expected a list: [{"name": "pro", "conditions": {…}}].'))
        elif step_type and (branches or step_type in engine.BRANCHING_STEP_TYPES):
            try:
                if any(not isinstance(item, dict) for item in branches or []):
                    raise engine.StepConfigError(
                        str(_('Expected [{"name": "pro", "conditions": {…}}, …].')), "branches")
                engine.validate_branches(step_type, branches or [], False)
                for index, item in enumerate(branches or []):
                    if set(item) - {"name", "conditions"}:
                        raise engine.StepConfigError(
                            str(_('A branch has only "name" and "conditions".')),
                            f"branches[{index}]")
                    if item.get("conditions"):
                        conditions.validate(item["conditions"], f"branches[{index}].conditions")
            except engine.StepConfigError as exc:
                self.add_error("branches", f"{exc.field}: {exc}")
            except conditions.ConditionError as exc:
                self.add_error("branches", str(exc))
        parent, branch = cleaned.get("parent"), cleaned.get("branch") or ""
        if parent is None:
            if branch:
                self.add_error("branch", _("Only a step inside a branch step has a branch."))
            return
        if parent.workflow_id != getattr(cleaned.get("workflow"), "pk", None):
            self.add_error("parent", _("The parent step must be a step of the same workflow."))
            return
        ancestor = parent
        while ancestor is not None:
            if self.instance.pk and ancestor.pk == self.instance.pk:
                self.add_error("parent", _("A step cannot be inside itself."))
                return
            ancestor = ancestor.parent
        if parent.type not in engine.BRANCHING_STEP_TYPES:
            self.add_error("parent", _("%(ref)s is a %(type)s step: it has no branches.")
                           % {"ref": parent.ref, "type": parent.type})
            return
        fixed = engine.BRANCHING_STEP_TYPES[parent.type]
        names = ([item.get("name") for item in parent.branches or []] + [engine.DEFAULT_BRANCH]
                 if fixed is None else list(fixed))
        if branch not in names:
            self.add_error("branch", _("Expected one of the branches of %(ref)s: %(names)s.")
                           % {"ref": parent.ref, "names": ", ".join(names)})


def earlier_steps(steps: list[Step], pk, parent: Step | None, branch: str,
                  position: int) -> dict[str, str]:
    """{ref: type} of the steps a run walks before a step at (`parent`, `branch`, `position`)
    among a workflow's `steps`: the earlier steps of its branch, then those before each step
    it is inside of (and that step), not the steps of other branches."""
    earlier: dict[str, str] = {}
    while True:
        parent_id = parent.pk if parent is not None else None
        for other in steps:
            if (other.parent_id == parent_id and other.branch == branch
                    and other.position < position and other.pk != pk):
                earlier[other.ref] = other.type
        if parent is None:
            return earlier
        earlier[parent.ref] = parent.type
        pk, branch, position, parent = parent.pk, parent.branch, parent.position, parent.parent


def step_templates_summary(step):
    """'2 locales: en, fr' with each locale linking to its template, or a link to add one; a
    route step's, per channel."""
    if step.pk is not None and step.type == StepType.ROUTE:
        return route_templates_summary(step)
    if step.pk is None or step.type not in CHANNEL_KEYS:
        return EMPTY
    templates = sorted(step.templates.all(), key=lambda template: template.locale)
    add = format_html('<a href="{}?{}">{}</a>', reverse(
        "admin:notifications_template_add"), urlencode({"step": step.pk}), _("add a template"))
    if not templates:
        return format_html(_("No templates: {}"), add)
    locales = format_html_join(", ", '<a href="{}">{}</a>',
                               ((admin_url(template), template.locale) for template in templates))
    count = ngettext("%d locale", "%d locales", len(templates)) % len(templates)
    return format_html('<a href="{}">{}</a>: {}', changelist_url(Template, step__id__exact=step.pk),
                       count, locales)


def route_templates_summary(step):
    """Per channel of a route step: its locales linking to their templates, and a link that
    adds one for that channel."""
    templates = {}
    for template in step.templates.all():
        templates.setdefault(template.channel, []).append(template)
    channels = (step.config or {}).get("channels")
    add = reverse("admin:notifications_template_add")
    return format_html_join(
        "", "<div>{}: {} (<a href=\"{}?{}\">{}</a>)</div>",
        ((channel, format_html_join(", ", '<a href="{}">{}</a>', (
            (admin_url(t), t.locale) for t in sorted(templates.get(channel, []),
                                                    key=lambda t: t.locale))) or _("none"),
          add, urlencode({"step": step.pk, "channel": channel}), _("add"))
         for channel in (channels if isinstance(channels, list) else [])))


class CategoryFilter(admin.SimpleListFilter):
    """The workflows' categories; the blank one is "No category" (a link needs a name)."""

    title = _("category")
    parameter_name = "category"

    def lookups(self, request, model_admin):
        categories = Workflow.objects.order_by("category").values_list("category", flat=True)
        return [(category or "-", category or _("No category"))
                for category in dict.fromkeys(categories)]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        return queryset.filter(category="" if self.value() == "-" else self.value())


@admin.register(Workflow)
class WorkflowAdmin(ClarionAdmin):
    """The change and add pages are the workflow builder (admin/builder/): per-type step forms,
    saved through the API's serializer and `services.workflow_put`."""

    list_display = ("key", "name", "category", "critical", "active", "step_count", "live_version",
                    "updated_at")
    list_filter = ("active", "critical", CategoryFilter)
    search_fields = ("key", "name", "category")
    readonly_fields = ("created_at", "updated_at")

    def get_urls(self):
        extra = [
            path("<path:object_id>/export/", self.admin_site.admin_view(self.export_view),
                 name="notifications_workflow_export"),
            path("import/", self.admin_site.admin_view(self.import_view),
                 name="notifications_workflow_import"),
            path("diagram/", self.admin_site.admin_view(self.diagram_view),
                 name="notifications_workflow_diagram"),
            path("<path:object_id>/versions/", self.admin_site.admin_view(self.versions_view),
                 name="notifications_workflow_versions"),
            path("<path:object_id>/versions/<int:number>/",
                 self.admin_site.admin_view(self.version_view),
                 name="notifications_workflow_version"),
            path("<path:object_id>/versions/<int:number>/action/",
                 self.admin_site.admin_view(self.version_action_view),
                 name="notifications_workflow_version_action"),
            path("<path:object_id>/draft/", self.admin_site.admin_view(self.draft_view),
                 name="notifications_workflow_draft"),
            # a step the draft adds: its templates, kept in the draft (admin/draft_templates.py)
            path("<int:object_id>/draft/steps/<str:ref>/template/preview/",
                 self.admin_site.admin_view(self.draft_template_preview_view),
                 name="notifications_workflow_draft_template_preview"),
            path("<int:object_id>/draft/steps/<str:ref>/template/send-test/",
                 self.admin_site.admin_view(self.draft_template_send_test_view),
                 name="notifications_workflow_draft_template_send_test"),
            path("<int:object_id>/draft/steps/<str:ref>/template/",
                 self.admin_site.admin_view(self.draft_template_view),
                 name="notifications_workflow_draft_template"),
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

    def diagram_view(self, request):
        return builder_views.diagram_view(self, request)

    def versions_view(self, request, object_id):
        return versions.versions_view(self, request, object_id)

    def version_view(self, request, object_id, number):
        return versions.version_view(self, request, object_id, number)

    def version_action_view(self, request, object_id, number):
        return versions.version_action_view(self, request, object_id, number)

    def draft_view(self, request, object_id):
        return versions.draft_redirect_view(self, request, object_id)

    def draft_template_view(self, request, object_id, ref):
        return draft_templates.draft_template_view(self, request, object_id, ref)

    def draft_template_preview_view(self, request, object_id, ref):
        return draft_templates.draft_template_preview_view(self, request, object_id, ref)

    def draft_template_send_test_view(self, request, object_id, ref):
        return draft_templates.draft_template_send_test_view(self, request, object_id, ref)

    def get_queryset(self, request):
        return (super().get_queryset(request).select_related("published_version")
                .annotate(step_count=Count("steps")))

    @admin.display(description=_("steps"), ordering="step_count")
    def step_count(self, obj):
        return obj.step_count

    @admin.display(description=_("live version"), ordering="published_version__number")
    def live_version(self, obj):
        if obj.published_version is None:
            return EMPTY
        return format_html('<a href="{}">v{}</a>', versions.version_url(obj.published_version),
                           obj.published_version.number)


def step_write_record(workflow: Workflow, user, note: str) -> None:
    """After the Step admin wrote a live workflow's rows: record them as its published version
    (the published version's document is always what runs). A workflow never published keeps
    its rows as its draft."""
    if not is_unpublished(workflow):
        version_record_live(workflow=workflow, user=user, source="admin", note=note)


@admin.register(Step)
class StepAdmin(ClarionAdmin):
    """A workflow's steps one by one. They are the live version's rows: a write here changes
    what runs at once, so only someone who may publish without review writes them (a
    Publisher, when CLARION["REQUIRE_REVIEW"] is off), and each write is recorded as a new
    published version. Editors change steps in the builder, whose save goes into the draft."""

    form = StepForm
    deleted_with_owner = True
    list_display = ("__str__", "workflow", "parent", "branch", "position", "ref", "type",
                    "templates")
    list_filter = ("type", "workflow")
    list_select_related = ("workflow", "parent__workflow")
    search_fields = ("ref", "workflow__key", "workflow__name")
    autocomplete_fields = ("workflow",)
    ordering = ("workflow__key", "position", "id")
    fields = ("workflow", "parent", "branch", "position", "ref", "type", "config", "conditions",
              "branches", "unless", "send_window", "urgent", "template_list")
    readonly_fields = ("template_list",)

    def has_add_permission(self, request):
        return super().has_add_permission(request) and may_publish_directly(request, None)

    def has_change_permission(self, request, obj=None):
        return (super().has_change_permission(request, obj)
                and may_publish_directly(request, obj and obj.workflow))

    def has_delete_permission(self, request, obj=None):
        return (super().has_delete_permission(request, obj)
                and may_publish_directly(request, obj and obj.workflow))

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        step_write_record(obj.workflow, request.user, f"Step “{obj.ref}” saved in the Step admin.")

    def delete_model(self, request, obj):
        workflow = obj.workflow
        super().delete_model(request, obj)
        step_write_record(workflow, request.user, f"Step “{obj.ref}” deleted in the Step admin.")

    def delete_queryset(self, request, queryset):
        workflows = {step.workflow for step in queryset.select_related("workflow")}
        super().delete_queryset(request, queryset)
        for workflow in workflows:
            step_write_record(workflow, request.user, "Steps deleted in the Step admin.")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("templates")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "parent":  # only steps with branches can hold steps
            kwargs["queryset"] = Step.objects.filter(
                type__in=list(engine.BRANCHING_STEP_TYPES)).select_related("workflow")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description=_("templates"))
    def templates(self, obj):
        return step_templates_summary(obj)

    @admin.display(description=_("templates"))
    def template_list(self, obj):
        if obj.pk is None:
            return _("Save the step first.")
        if obj.type == StepType.ROUTE:
            return route_templates_summary(obj)
        if obj.type not in CHANNEL_KEYS:
            return _("%(type)s steps have no templates.") % {"type": obj.get_type_display()}
        templates = obj.templates.select_related("published_version").order_by("locale")
        rows = table(
            (_("Locale"), _("Published version"), _("Updated"), ""),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((template.locale,
              template.published_version.number if template.published_version else EMPTY,
              when(template.updated_at), link(template, _("Edit")))
             for template in templates),
        )
        add = format_html('<a class="addlink" href="{}?{}">{}</a>',
                          reverse("admin:notifications_template_add"), urlencode({"step": obj.pk}),
                          _("Add a template for this step"))
        return format_html("{}<p>{}</p>", rows, add)
