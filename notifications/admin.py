"""The admin a product manager uses: workflows with their steps and templates, runs as timelines.

Ledgers (triggers, runs, messages, delivery attempts, step logs, template versions) are read-only.
Every write that is more than editing a row's plain fields goes through `services`.
"""

import json
import uuid

import jsonschema
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import ngettext

from . import conditions, engine, services
from .channels import CHANNEL_KEYS
from .models import (
    ApiKey,
    ChannelData,
    DeliveryAttempt,
    IdempotencyRecord,
    Message,
    Recipient,
    Run,
    Step,
    StepLog,
    StepType,
    Subscription,
    Template,
    Tenant,
    Topic,
    Trigger,
    Workflow,
)

SUPPORTED_STEP_CHOICES = [
    (value, label) for value, label in StepType.choices if value in engine.SUPPORTED_STEP_TYPES
]
LIST_LIMIT = 100  # rows a detail page lists before linking to the filtered changelist
EMPTY = "—"


# --- Display helpers --------------------------------------------------------------------------

def admin_url(obj, view: str = "change") -> str:
    meta = obj._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=[obj.pk])


def changelist_url(model, **params) -> str:
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return f"{url}?{urlencode(params)}" if params else url


def link(obj, text=None):
    if obj is None:
        return EMPTY
    return format_html('<a href="{}">{}</a>', admin_url(obj), str(obj) if text is None else text)


def when(moment) -> str:
    """A moment to the millisecond, in the current time zone: timelines need that precision."""
    if moment is None:
        return EMPTY
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S}.{local.microsecond // 1000:03d} {local:%Z}"


def as_json(value, *, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True,
                      cls=DjangoJSONEncoder)


def json_display(field: str, description: str | None = None):
    """A read-only admin column showing a JSON field, indented: `json_display("data")`."""

    @admin.display(description=description or field)
    def show(self, obj):
        return pretty_json(getattr(obj, field))

    return show


def pretty_json(value):
    return format_html('<pre style="margin: 0; white-space: pre-wrap">{}</pre>',
                       as_json(value, indent=2))


def table(headers, rows_format: str, rows) -> str:
    """An escaped HTML table: `rows` are tuples of values (escaped) or format_html results."""
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    body = format_html_join("", rows_format, rows)
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def adopt(target, source) -> None:
    """Make the admin's unsaved `target` the row a service saved, so the admin logs and
    redirects to it."""
    for field in source._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


def as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term.strip())
    except ValueError:
        return None


# --- Base classes -----------------------------------------------------------------------------

class DefaultingJSONField(forms.JSONField):
    """An emptied JSON box means the field's default ({} or []), not a NULL the column refuses."""

    def __init__(self, *, default=dict, **kwargs):
        self.default = default
        super().__init__(**kwargs)

    def to_python(self, value):
        python = super().to_python(value)
        return self.default() if python is None and not self.disabled else python


class FormFieldsMixin:
    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if isinstance(db_field, models.URLField):
            kwargs.setdefault("assume_scheme", "https")
        if isinstance(db_field, models.JSONField) and not db_field.null:
            default = db_field.default if callable(db_field.default) else dict
            kwargs.setdefault("form_class", DefaultingJSONField)
            kwargs.setdefault("default", default)
        return super().formfield_for_dbfield(db_field, request, **kwargs)


class ClarionAdmin(FormFieldsMixin, admin.ModelAdmin):
    def get_deleted_objects(self, objs, request):
        """Ledger rows go with the row they belong to: deleting a recipient erases their runs and
        messages, deleting a template its versions. That needs no permission on the ledgers,
        which cannot be deleted on their own."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        ledgers = {model._meta.verbose_name
                   for model, model_admin in self.admin_site._registry.items()
                   if isinstance(model_admin, LedgerAdmin)}
        return deleted, counts, perms_needed - ledgers, protected


class UUIDSearchMixin:
    """A search term that is a UUID also matches these fields exactly (run, trigger, message ids).

    Text lookups (icontains) on UUID columns are slow and differ between databases.
    """

    uuid_search_fields: tuple[str, ...] = ("pk",)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        value = as_uuid(search_term) if search_term else None
        if value is None:
            return results, may_have_duplicates
        match = Q()
        for name in self.uuid_search_fields:
            match |= Q(**{name: value})
        return results | queryset.filter(match), may_have_duplicates


class LedgerAdmin(UUIDSearchMixin, ClarionAdmin):
    """Rows the engine writes: shown, never added or changed by hand."""

    deletable_by_superusers = False
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return (self.deletable_by_superusers and request.user.is_superuser
                and super().has_delete_permission(request, obj))


# --- Tenants and API keys ---------------------------------------------------------------------

@admin.register(Tenant)
class TenantAdmin(ClarionAdmin):
    list_display = ("key", "name", "sender_name", "sender_email", "created_at")
    search_fields = ("key", "name")
    readonly_fields = ("created_at", "updated_at")


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "tenant"]


@admin.register(ApiKey)
class ApiKeyAdmin(ClarionAdmin):
    list_display = ("name", "prefix", "tenant", "is_active", "created_at", "last_used_at",
                    "revoked_at")
    list_filter = (ApiKeyStatusFilter, "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix")
    autocomplete_fields = ("tenant",)
    actions = ("revoke",)
    add_form = ApiKeyAddForm
    change_fields = ("name", "prefix", "tenant", "scopes", "is_active", "created_at",
                     "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        return self.change_fields if obj else ("name", "tenant")

    def get_readonly_fields(self, request, obj=None):
        return self.change_fields[1:] if obj else ()

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    @admin.display(boolean=True, description="active")
    def is_active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, secret = services.api_key_create(name=obj.name, tenant=obj.tenant)
        adopt(obj, api_key)
        messages.success(
            request,
            f"The secret of API key “{api_key.name}” is {secret} — copy it now: "
            "it is shown only once and cannot be recovered.",
        )

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(
            request, ngettext("Revoked %d API key.", "Revoked %d API keys.", revoked) % revoked
        )


# --- Recipients and topics --------------------------------------------------------------------

class ChannelDataInline(FormFieldsMixin, admin.TabularInline):
    model = ChannelData
    extra = 0
    fields = ("channel", "provider", "data", "updated_at")
    readonly_fields = ("updated_at",)


class RecipientSubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("topic", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("topic",)
    verbose_name = "topic subscription"


@admin.register(Recipient)
class RecipientAdmin(ClarionAdmin):
    list_display = ("external_id", "name", "email", "phone", "locale", "timezone", "created_at")
    search_fields = ("external_id", "name", "email", "phone")
    search_help_text = "Recipient id, name, email or phone."
    readonly_fields = ("created_at", "updated_at", "recent_runs")
    inlines = (ChannelDataInline, RecipientSubscriptionInline)

    @admin.display(description="recent runs")
    def recent_runs(self, obj):
        if obj.pk is None:
            return EMPTY
        runs = obj.runs.select_related("workflow").order_by("-created_at")[:20]
        return table(
            ("Run", "Workflow", "Status", "Created"),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((link(run, str(run.pk)), run.workflow.key, run.get_status_display(),
              when(run.created_at)) for run in runs),
        )

    def delete_model(self, request, obj):
        services.recipient_erase(recipient=obj)

    def delete_queryset(self, request, queryset):
        for recipient in queryset:
            services.recipient_erase(recipient=recipient)


class TopicSubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("recipient", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("recipient",)
    verbose_name = "subscriber"


@admin.register(Topic)
class TopicAdmin(ClarionAdmin):
    list_display = ("key", "name", "tenant", "subscriber_count", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("key", "name")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at",)
    inlines = (TopicSubscriptionInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(subscriber_count=Count("subscriptions"))

    @admin.display(description="subscribers", ordering="subscriber_count")
    def subscriber_count(self, obj):
        return obj.subscriber_count


# --- Workflows, steps and templates -----------------------------------------------------------

class WorkflowForm(forms.ModelForm):
    class Meta:
        model = Workflow
        fields = ["key", "name", "category", "critical", "active", "default_locale", "data_schema",
                  "sample_data"]

    def clean_data_schema(self):
        schema = self.cleaned_data.get("data_schema")
        if schema:
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise ValidationError(f"Not a valid JSON Schema: {exc.message}") from exc
        return schema

    def clean_sample_data(self):
        """An object like the trigger's `data`; it must match the data schema when there is one."""
        sample = self.cleaned_data.get("sample_data")
        if not isinstance(sample, dict):
            raise ValidationError('Expected a JSON object like the trigger\'s data, e.g. '
                                  '{"order": {"id": "A-1"}}.')
        schema = self.cleaned_data.get("data_schema")
        if schema and sample:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(sample))
            if error is not None:
                where = "/".join(str(part) for part in error.absolute_path) or "(top level)"
                raise ValidationError(
                    f"The sample data does not match the data schema at {where}: {error.message}")
        return sample


class StepForm(forms.ModelForm):
    """Only the step types the engine runs; config and conditions checked as the API does."""

    type = forms.ChoiceField(choices=[("", "---------"), *SUPPORTED_STEP_CHOICES])

    class Meta:
        model = Step
        fields = ["workflow", "position", "ref", "type", "config", "conditions"]
        widgets = {
            "config": forms.Textarea(attrs={"rows": 2, "cols": 36}),
            "conditions": forms.Textarea(attrs={"rows": 2, "cols": 48}),
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
            except engine.DelayConfigError as exc:
                self.add_error("config", str(exc))
        elif step_type in CHANNEL_KEYS and "config" in cleaned:
            try:
                engine.validate_channel_config(step_type, cleaned["config"])
            except engine.DelayConfigError as exc:
                self.add_error("config", str(exc))
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


class StepInline(FormFieldsMixin, admin.TabularInline):
    model = Step
    form = StepForm
    extra = 0
    ordering = ("position", "id")
    fields = ("position", "ref", "type", "config", "conditions", "templates")
    readonly_fields = ("templates",)
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("templates")

    @admin.display(description="templates")
    def templates(self, obj):
        return step_templates_summary(obj)


@admin.register(Workflow)
class WorkflowAdmin(ClarionAdmin):
    form = WorkflowForm
    list_display = ("key", "name", "category", "critical", "active", "step_count", "updated_at")
    list_filter = ("active", "critical", "category")
    search_fields = ("key", "name", "category")
    readonly_fields = ("created_at", "updated_at")
    inlines = (StepInline,)

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
    fields = ("workflow", "position", "ref", "type", "config", "conditions", "template_list")
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


# Templates, versions and layouts: see template_admin.py (imported at the end).


# --- Ledgers: triggers, runs, messages --------------------------------------------------------

@admin.register(Trigger)
class TriggerAdmin(LedgerAdmin):
    deletable_by_superusers = True
    list_display = ("id", "workflow", "tenant", "fanout", "created_at")
    list_filter = ("fanout", "workflow", "tenant")
    list_select_related = ("workflow", "tenant")
    search_fields = ("workflow__key__exact", "cancellation_key__exact")
    search_help_text = "A trigger id, a workflow key or a cancellation key (exact)."
    fields = ("id", "workflow", "tenant", "api_key", "created_at", "fanout", "cancellation_key",
              "actor_json", "data_json", "recipients_json", "runs")
    readonly_fields = fields

    actor_json = json_display("actor")

    data_json = json_display("data")

    recipients_json = json_display("recipients")

    @admin.display(description="runs")
    def runs(self, obj):
        runs = obj.runs.select_related("recipient").order_by("created_at", "id")
        total = runs.count()
        rows = table(
            ("Run", "Recipient", "Status", "Created"),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((link(run, str(run.pk)), run.recipient.external_id, run.get_status_display(),
              when(run.created_at)) for run in runs[:LIST_LIMIT]),
        )
        more = format_html('<a href="{}">All {} runs</a>', changelist_url(Run, q=str(obj.pk)),
                           total)
        return format_html("{}<p>{}</p>", rows, more)


def attempts_table(message):
    attempts = message.delivery_attempts.all()
    if not attempts:
        return "No delivery attempts."
    return table(
        ("Provider", "Started", "Duration (ms)", "Outcome", "Error"),
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((attempt.provider, when(attempt.started_at),
          EMPTY if attempt.duration_ms is None else attempt.duration_ms,
          attempt.get_outcome_display(), attempt.error or EMPTY)
         for attempt in attempts),
    )


def run_timeline(run):
    """The run's StepLogs in order, then its messages with their delivery attempts."""
    logs = table(
        ("Time", "Step", "Event", "Detail"),
        "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
        ((when(log.created_at), log.step_ref or EMPTY, log.get_event_display(),
          as_json(log.detail) if log.detail else EMPTY)
         for log in run.step_logs.order_by("id")),
    )
    run_messages = run.messages.select_related("template_version").prefetch_related(
        models.Prefetch("delivery_attempts",
                        queryset=DeliveryAttempt.objects.order_by("started_at", "id"))
    ).order_by("created_at", "id")
    sent = table(
        ("Message", "Status", "To", "Provider", "Error", "Delivery attempts"),
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((link(message, f"{message.step_ref} ({message.get_channel_display()})"),
          message.get_status_display(), message.to or EMPTY, message.provider or EMPTY,
          message.error or EMPTY, attempts_table(message))
         for message in run_messages),
    )
    return format_html("<h3>Steps</h3>{}<h3>Messages</h3>{}", logs, sent)


@admin.register(Run)
class RunAdmin(LedgerAdmin):
    deletable_by_superusers = True
    uuid_search_fields = ("pk", "trigger_id")
    list_display = ("id", "workflow", "recipient", "tenant", "status", "created_at", "updated_at")
    list_filter = ("status", "workflow", "tenant")
    list_select_related = ("workflow", "recipient", "tenant")
    search_fields = ("recipient__external_id__exact", "workflow__key__exact")
    search_help_text = "A recipient id, a workflow key, or a run or trigger id (exact)."
    fields = ("id", "status", "workflow", "recipient", "tenant", "trigger", "cursor", "wake_at",
              "created_at", "updated_at", "timeline", "state_json")
    readonly_fields = fields

    @admin.display(description="timeline")
    def timeline(self, obj):
        return run_timeline(obj)

    state_json = json_display("state")


@admin.register(Message)
class MessageAdmin(LedgerAdmin):
    uuid_search_fields = ("pk", "run_id", "run__trigger_id")
    list_display = ("id", "channel", "status", "to", "workflow", "step_ref", "recipient",
                    "provider", "created_at")
    list_filter = ("status", "channel", "workflow", "tenant", "provider")
    list_select_related = ("workflow", "recipient")
    search_fields = ("recipient__external_id__exact", "workflow__key__exact",
                     "provider_message_id__exact")
    search_help_text = ("A recipient id, a workflow key, a provider message id, or a message, run "
                        "or trigger id (exact).")
    fields = ("id", "status", "channel", "workflow", "step_ref", "recipient", "tenant", "run",
              "to", "provider", "provider_message_id", "template_version", "attempts",
              "next_attempt_at", "error", "created_at", "sent_at", "delivered_at", "seen_at",
              "read_at", "opened_at", "clicked_at", "bounced_at", "complained_at", "content_json",
              "delivery_attempts", "status_events")
    readonly_fields = fields

    content_json = json_display("content")

    @admin.display(description="delivery attempts")
    def delivery_attempts(self, obj):
        return attempts_table(obj)

    @admin.display(description="status events")
    def status_events(self, obj):
        """What the provider reported after sending (webhooks), with its raw payload."""
        events = obj.events.order_by("occurred_at", "id")
        if not events:
            return "No status events."
        return table(
            ("Time", "Provider", "Event", "Description", "Payload"),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            ((when(event.occurred_at), event.provider, event.get_kind_display(),
              event.description or EMPTY, as_json(event.raw))
             for event in events),
        )


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(LedgerAdmin):
    uuid_search_fields = ("message_id",)
    list_display = ("message", "provider", "started_at", "duration_ms", "outcome", "status_code")
    list_filter = ("outcome", "provider", "kind")
    list_select_related = ("message",)
    search_fields = ("provider__exact",)
    search_help_text = "A message id or a provider (exact)."
    fields = ("message", "provider", "kind", "started_at", "duration_ms", "outcome",
              "status_code", "error", "request_json", "response_json")
    readonly_fields = fields

    request_json = json_display("request")

    response_json = json_display("response")


@admin.register(StepLog)
class StepLogAdmin(LedgerAdmin):
    uuid_search_fields = ("run_id",)
    list_display = ("created_at", "run", "step_ref", "event")
    list_filter = ("event",)
    list_select_related = ("run__workflow", "run__recipient")
    search_fields = ("step_ref__exact",)
    search_help_text = "A run id or a step ref (exact)."
    fields = ("run", "step_ref", "event", "created_at", "detail_json")
    readonly_fields = fields

    detail_json = json_display("detail")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(LedgerAdmin):
    deletable_by_superusers = True
    list_display = ("key", "api_key", "response_status", "created_at")
    list_filter = ("response_status",)
    list_select_related = ("api_key",)
    search_fields = ("key__exact",)
    fields = ("key", "api_key", "request_hash", "response_status", "created_at", "response_json")
    readonly_fields = fields

    response_json = json_display("response_body", "response body")


# The template editor registers Template, TemplateVersion and Layout; it uses the helpers above.
from . import template_admin  # noqa: E402, F401
from .providers import admin as providers_admin  # noqa: E402, F401  (ProviderConfig)
