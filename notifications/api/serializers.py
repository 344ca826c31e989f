"""Request validation and the documented shapes of API bodies."""

import re
import zoneinfo

import jsonschema
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clarion.api import QuerySerializer, Serializer, TenantKeyField, unknown_field_errors

from .. import conditions, engine, rendering, selectors, workflow_json
from ..addresses import validate_display_name, validate_email_address
from ..approvals import approval_detail
from ..channels import CHANNEL_KEYS
from ..engine import windows
from ..models import (
    Channel,
    StepType,
    Topic,
    color_validator,
    key_validator,
    validate_recipient_id,
)
from ..providers import ssrf
from .fields import CursorField

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def recipient_id(value) -> str:
    """A recipient id as given (a string, or an integer turned into one), checked against the
    one rule (`models.validate_recipient_id`); raises DRF's ValidationError with the rule."""
    value = str(value)
    try:
        validate_recipient_id(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None
    return value


class RecipientIdField(serializers.CharField):
    """A recipient id in a body: kept exactly as given (not trimmed), checked by the one rule."""

    default_error_messages = {"blank": "A recipient id has 1 to 255 characters."}
    accepts_numbers = True  # ids a client keeps as numbers: 42 is the id "42"

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return recipient_id(super().to_internal_value(data))


def validate_timezone(value: str) -> str:
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                f"Unknown time zone {value!r}; use an IANA name like 'Europe/Paris'."
            ) from None
    return value


def validate_phone(value: str) -> str:
    if value and not E164.match(value):
        raise serializers.ValidationError("Expected an E.164 number like +15550001111.")
    return value


def validate_locale(value: str) -> str:
    if value and not LOCALE.match(value):
        raise serializers.ValidationError("Expected a locale like 'en' or 'pt-BR'.")
    return value


class ChannelDataMapField(serializers.DictField):
    """{channel: {…}} or {"channel:kind": {…}} (a provider kind, e.g. "push:fcm"): per-channel
    data such as push tokens.

    The same keys the recipient's GET shows, so a GET body can be PUT back.
    """

    child = serializers.DictField()

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        errors = {}
        for name in sorted(value):
            channel, _, kind = name.partition(":")
            if channel not in Channel.values:
                errors[name] = [f"Unknown channel; expected one of {', '.join(Channel.values)}."]
            elif len(kind) > 64:
                errors[name] = ["A provider kind has at most 64 characters."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class RecipientProfileSerializer(Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True,
                                 validators=[validate_display_name])
    email = serializers.EmailField(max_length=320, required=False, allow_blank=True,
                                   validators=[validate_email_address])
    phone = serializers.CharField(max_length=16, required=False, allow_blank=True,
                                  validators=[validate_phone])
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True,
                                   validators=[validate_locale])
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                     validators=[validate_timezone])
    data = serializers.DictField(required=False)
    channel_data = ChannelDataMapField(required=False)


class InlineRecipientSerializer(RecipientProfileSerializer):
    id = RecipientIdField()


class RecipientSerializer(RecipientProfileSerializer):
    """A recipient as GET shows it and PUT takes it (a GET body can be PUT back)."""

    id = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


_PROFILE_SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "maxLength": 255},
        "name": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string", "description": "E.164"},
        "locale": {"type": "string"},
        "timezone": {"type": "string", "description": "IANA time zone"},
        "data": {"type": "object"},
        "channel_data": {"type": "object", "additionalProperties": {"type": "object"}},
    },
    "additionalProperties": False,
}


@extend_schema_field({
    "oneOf": [
        {"type": "string", "description": "A recipient id"},
        _PROFILE_SCHEMA,
        {"type": "object", "required": ["topic"], "properties": {"topic": {"type": "string"}},
         "additionalProperties": False},
    ]
})
class RecipientSpecField(serializers.Field):
    """A recipient in a trigger: an id, a profile object with "id", or {"topic": key}."""

    # Raised directly, not through self.fail(): fail() would str.format() the braces.
    invalid_message = 'Expected a recipient id, an object with "id", or {"topic": "<key>"}.'

    def to_internal_value(self, data):
        if isinstance(data, str | int) and not isinstance(data, bool):
            return recipient_id(data)
        if isinstance(data, dict) and "topic" in data:
            unknown = unknown_field_errors(data, ["topic"])
            if unknown:
                raise serializers.ValidationError(unknown)
            key = data["topic"]
            topics = Topic.objects.filter(key=key) if isinstance(key, str) else Topic.objects.none()
            api_key = self.context.get("api_key")
            if api_key is not None and api_key.tenant_id is not None:
                # A tenant-restricted key does not see (or reach) another tenant's topics.
                topics = topics.filter(Q(tenant__isnull=True) | Q(tenant_id=api_key.tenant_id))
            if not topics.exists():
                raise serializers.ValidationError({"topic": [f"Unknown topic {key!r}."]})
            return {"topic": key}
        if isinstance(data, dict):
            serializer = InlineRecipientSerializer(data=data)
            if not serializer.is_valid():
                raise serializers.ValidationError(serializer.errors)
            return dict(serializer.validated_data)
        raise serializers.ValidationError(self.invalid_message)

    def to_representation(self, value):
        return value


@extend_schema_field({"oneOf": [{"type": "string"}, _PROFILE_SCHEMA], "nullable": True})
class ActorField(serializers.Field):
    """Who did the thing: a recipient id, or a profile object with "id"."""

    def to_internal_value(self, data):
        if isinstance(data, str) and 0 < len(data) <= 255:
            return recipient_id(data)
        if isinstance(data, dict):
            serializer = InlineRecipientSerializer(data=data)
            if not serializer.is_valid():
                raise serializers.ValidationError(serializer.errors)
            return dict(serializer.validated_data)
        raise serializers.ValidationError('Expected a recipient id or an object with "id".')

    def to_representation(self, value):
        return value


def _schema_error_path(error: jsonschema.ValidationError) -> str:
    """Where in `data` a JSON Schema error is, e.g. "plan" or "items[0].sku".

    A missing required property is reported at the property itself. The root of `data` is
    DRF's "non_field_errors", which the error handler shows as the field's own path ("data").
    """
    parts = list(error.path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # jsonschema reports each missing property as its own error, named only in the message.
        parts += [name for name in error.validator_value
                  if error.message == f"{name!r} is a required property"][:1]
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "non_field_errors"


class TriggerSerializer(Serializer):
    recipients = serializers.ListField(child=RecipientSpecField(), allow_empty=False)
    data = serializers.DictField(required=False, default=dict)
    actor = ActorField(required=False, allow_null=True, default=None)
    tenant = TenantKeyField()
    cancellation_key = serializers.CharField(required=False, allow_blank=True, max_length=255,
                                             default="")

    def __init__(self, *args, workflow=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.workflow = workflow

    def validate_recipients(self, value):
        from django.conf import settings

        limit = settings.CLARION["MAX_RECIPIENTS_PER_TRIGGER"]
        if len(value) > limit:
            raise serializers.ValidationError(
                f"At most {limit} recipients per trigger; use a topic for larger audiences."
            )
        return value


    def validate_data(self, value):
        schema = self.workflow.data_schema if self.workflow else None
        if schema:
            validator = jsonschema.Draft202012Validator(schema)
            errors: dict[str, list[str]] = {}
            for error in validator.iter_errors(value):
                errors.setdefault(_schema_error_path(error), []).append(error.message)
            if errors:
                raise serializers.ValidationError(dict(sorted(errors.items())))
        return value


MAX_BULK_TRIGGERS = 1000


class BulkTriggerItemSerializer(TriggerSerializer):
    """One trigger of a bulk trigger: a trigger's body plus its own `idempotency_key`, which
    behaves as the single trigger's Idempotency-Key header."""

    idempotency_key = serializers.CharField(required=False, min_length=1, max_length=255,
                                            help_text="As the single trigger's Idempotency-Key.")


class BulkTriggerSerializer(Serializer):
    """The bulk body: each trigger is validated on its own (BulkTriggerItemSerializer)."""

    triggers = serializers.ListField(
        child=serializers.JSONField(), allow_empty=False, max_length=MAX_BULK_TRIGGERS,
        help_text=f"1 to {MAX_BULK_TRIGGERS} triggers, each with the body of a single trigger "
                  "plus an optional `idempotency_key`.",
    )


@extend_schema_field({
    "oneOf": [
        {"type": "object", "required": ["status", "trigger_id", "runs"], "properties": {
            "status": {"type": "integer", "enum": [202]},
            "trigger_id": {"type": "string", "format": "uuid"},
            "runs": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string", "format": "uuid"}, "recipient": {"type": "string"}}}},
            "replayed": {"type": "boolean",
                         "description": "True when its idempotency_key answered a first "
                                        "trigger again."},
        }},
        {"type": "object", "required": ["status", "error", "detail"], "properties": {
            "status": {"type": "integer", "description": "400, 403, 409 or 422"},
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "fields": {"type": "object", "description": "Path within this trigger → problems.",
                       "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "retry_after": {"type": "integer",
                            "description": "On a 409: seconds after which the same item "
                                           "replays the first trigger's answer."},
        }},
    ]
})
class BulkTriggerResultField(serializers.JSONField):
    """One trigger's outcome: accepted (202) or refused (4xx, the API's error shape)."""


class BulkTriggerResponseSerializer(Serializer):
    results = serializers.ListField(child=BulkTriggerResultField(),
                                    help_text="One per trigger, in the order given.")


class CancelSerializer(Serializer):
    cancellation_key = serializers.CharField(max_length=255)
    recipients = serializers.ListField(
        child=RecipientIdField(), required=False, allow_empty=False,
        max_length=1000, help_text="Only these recipients' runs; all of them when left out.",
    )


class CancelResponseSerializer(Serializer):
    cancelled = serializers.ListField(child=serializers.DictField(),
                                      help_text="The runs cancelled: id and recipient.")


class TriggerRunSerializer(Serializer):
    id = serializers.UUIDField()
    recipient = serializers.CharField()


class TriggerResponseSerializer(Serializer):
    trigger_id = serializers.UUIDField()
    runs = TriggerRunSerializer(many=True)


class TriggerRunSummarySerializer(Serializer):
    id = serializers.UUIDField()
    recipient = serializers.CharField(source="recipient.external_id")
    status = serializers.CharField()


class TriggerDetailQuerySerializer(QuerySerializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=selectors.TRIGGER_RUNS_MAX_LIMIT,
        default=selectors.TRIGGER_RUNS_DEFAULT_LIMIT, help_text="Runs per page.")
    after = CursorField()


class TriggerRunsPageInfoSerializer(Serializer):
    after = serializers.CharField(allow_null=True, help_text="The cursor of the next page of "
                                  "runs (pass it as `after`); null on the last page.")


class TriggerDetailSerializer(Serializer):
    """A trigger and a page of its runs: builds the body of GET /triggers/{id} (from a Trigger
    with its workflow and tenant, `runs` a page of selectors.trigger_runs_page and `page_info`
    its cursor) and describes it in the schema."""

    id = serializers.UUIDField()
    workflow = serializers.CharField(source="workflow.key")
    tenant = serializers.CharField(source="tenant.key", allow_null=True)
    actor = serializers.JSONField(allow_null=True)
    data = serializers.DictField()
    cancellation_key = serializers.CharField()
    idempotency_key = serializers.CharField(help_text="The Idempotency-Key it was sent with, or "
                                                      "\"\".")
    fanout = serializers.ChoiceField(choices=["done", "pending"])
    recipients_total = serializers.IntegerField(
        allow_null=True, help_text="How many recipients it reaches; null until a topic fan-out "
                                   "has counted its subscribers.")
    runs_created = serializers.IntegerField(help_text="Runs created so far.")
    created_at = serializers.DateTimeField()
    runs = TriggerRunSummarySerializer(many=True, source="runs_page",
                                       help_text="A page of the runs, oldest first.")
    page_info = TriggerRunsPageInfoSerializer(source="runs_page_info")


class DeliveryAttemptSerializer(Serializer):
    provider = serializers.CharField(help_text="The provider key (a configured provider's).")
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField()
    error = serializers.CharField()


class MessageDetailSerializer(Serializer):
    id = serializers.UUIDField()
    step = serializers.CharField(source="step_ref")
    channel = serializers.CharField()
    status = serializers.CharField()
    to = serializers.CharField()
    provider = serializers.CharField(help_text="The key of the provider that sent it.")
    provider_message_id = serializers.CharField()
    template_version = serializers.IntegerField(source="template_version.number",
                                                allow_null=True)
    content = serializers.JSONField()
    error = serializers.CharField()
    attempts = DeliveryAttemptSerializer(many=True, source="delivery_attempts")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    seen_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)


class TimelineEntrySerializer(Serializer):
    step = serializers.CharField(source="step_ref")
    event = serializers.CharField()
    detail = serializers.JSONField()
    at = serializers.DateTimeField(source="created_at")


class RunDetailSerializer(Serializer):
    """A run: builds the body of GET /runs/{id} (from a Run read with
    selectors.runs_with_history) and describes it in the schema."""

    id = serializers.UUIDField()
    trigger_id = serializers.UUIDField()
    workflow = serializers.CharField(source="workflow.key")
    workflow_version = serializers.IntegerField(
        source="workflow_version.number", allow_null=True,
        help_text="The number of the workflow's version published when the run began (null: "
                  "the workflow had none).")
    recipient = serializers.CharField(source="recipient.external_id")
    tenant = serializers.CharField(source="tenant.key", allow_null=True)
    status = serializers.CharField()
    cursor = serializers.IntegerField()
    wake_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    steps = TimelineEntrySerializer(many=True, source="step_logs", help_text="The timeline.")
    messages = MessageDetailSerializer(many=True)
    approvals = serializers.SerializerMethodField(
        help_text="The questions its approval steps asked, and their answers: status "
                  "(pending, approved, rejected, expired), decision, answered_at, answered_via.")

    @extend_schema_field({"type": "array", "items": {"type": "object"}})
    def get_approvals(self, run) -> list:
        return [approval_detail(approval) for approval in run.approvals.all()]


# --- Workflows --------------------------------------------------------------------------------

def _template_errors(channel: str, templates: dict, prefix: str) -> dict:
    """{"<prefix>.<locale>[.<field>]": [problem]} for a channel's templates by locale."""
    errors = {}
    for locale, fields in templates.items():
        if not LOCALE.match(locale):
            errors[f"{prefix}.{locale}"] = ["Expected a locale like 'en' or 'pt-BR'."]
            continue
        try:
            rendering.validate_fields(channel, fields)
        except rendering.TemplateError as exc:
            errors[f"{prefix}.{locale}.{exc.field}".rstrip(".")] = [exc.message]
    return errors


def _route_errors(config: dict, templates: dict) -> dict:
    """The problems of a route step's config and its templates, one per channel:
    {"in_app": {"en": {"body": …}}, "email": {"en": {"subject": …, "html": …}}}."""
    try:
        engine.validate_route_config(config)
    except engine.StepConfigError as exc:
        return {exc.field: [str(exc)]}
    errors = {}
    for channel in config["channels"]:
        if not templates.get(channel):
            errors[f"templates.{channel}"] = [
                f"Missing: a route step needs a template for each of its channels "
                f'(e.g. {{"{channel}": {{"en": {{…}}}}}}).']
    for channel, by_locale in templates.items():
        if channel not in config["channels"]:
            errors[f"templates.{channel}"] = ["Not one of this route's channels."]
        elif by_locale:
            errors.update(_template_errors(channel, by_locale, f"templates.{channel}"))
    return errors


class BranchStepsSerializer(Serializer):
    """A branch's steps: a branch step's `default`, e.g. {"steps": [...]}."""

    def get_fields(self):
        fields = super().get_fields()
        # Added here, not in the class body: a step's branches hold steps (a recursive shape).
        fields["steps"] = StepSerializer(many=True, required=False, default=list)
        return fields


class BranchSerializer(BranchStepsSerializer):
    """One branch of a step with branches: {"name", "conditions", "steps"}."""

    name = serializers.CharField(max_length=64, validators=[key_validator])
    conditions = serializers.DictField(
        required=False, allow_null=True, default=None,
        help_text="Branch steps: the branch is taken when these hold (the first such branch).")

    def validate(self, attrs):
        if attrs.get("conditions"):
            try:
                conditions.validate(attrs["conditions"])
            except conditions.ConditionError as exc:
                raise serializers.ValidationError({exc.field: [exc.message]}) from None
        return attrs


class StepSerializer(Serializer):
    """One step of a workflow (docs/workflows.md); a branch step's `branches` and `default` hold
    steps of their own."""

    ref = serializers.CharField(max_length=64, validators=[key_validator])
    type = serializers.ChoiceField(choices=sorted(engine.SUPPORTED_STEP_TYPES))
    config = serializers.DictField(required=False, default=dict)
    conditions = serializers.DictField(required=False, allow_null=True, default=None)
    templates = serializers.DictField(
        child=serializers.DictField(), required=False, default=dict,
        help_text='Channel steps: {locale: {field: Liquid}}, e.g. {"en": {"body": "Hi"}}; route '
                  'steps: {channel: {locale: {field: Liquid}}}.')
    unless = serializers.DictField(
        required=False, allow_null=True, default=None,
        help_text='Channel steps: skipped when an earlier step\'s message reached a state, e.g. '
                  '{"step": "inbox", "is": "read"} (seen, read, clicked, delivered).')

    send_window = serializers.DictField(
        required=False, allow_null=True, default=None,
        help_text='Channel steps: send only within these days and hours, e.g. {"days": ["mon"], '
                  '"start": "08:00", "end": "17:30", "timezone": "recipient"}.')
    urgent = serializers.BooleanField(
        required=False, default=False,
        help_text="Channel steps of a critical workflow: send during quiet hours.")
    branches = BranchSerializer(
        many=True, required=False, default=list,
        help_text='Branch steps: tried in order, the first whose conditions hold is taken, e.g. '
                  '[{"name": "pro", "conditions": {…}, "steps": […]}].')
    default = BranchStepsSerializer(
        required=False, allow_null=True, default=None,
        help_text='Branch steps: the branch taken when no other holds, {"steps": […]}.')

    def validate(self, attrs):
        step_type = attrs["type"]
        errors = {}
        branches = attrs.get("branches") or []
        if branches or attrs.get("default") is not None or step_type in engine.BRANCHING_STEP_TYPES:
            try:
                engine.validate_branches(step_type, branches, attrs.get("default") is not None)
            except engine.StepConfigError as exc:
                errors[exc.field] = [str(exc)]
        if step_type in engine.BRANCHING_STEP_TYPES and step_type == StepType.BRANCH:
            if attrs.get("config"):
                errors["config"] = ["Branch steps have no config: their branches are "
                                    "\"branches\" and \"default\"."]
            if attrs.get("templates"):
                errors["templates"] = ["Branch steps have no templates."]
        for name in ("unless", "send_window", "urgent"):
            if attrs.get(name) and step_type not in CHANNEL_KEYS and not (
                    step_type == StepType.ROUTE and name != "unless"):
                errors[name] = [f"Only channel steps can have \"{name}\"."]
        if attrs.get("send_window") and step_type in (*CHANNEL_KEYS, StepType.ROUTE):
            try:
                windows.parse_window(attrs["send_window"])
            except windows.WindowError as exc:
                errors[f"send_window.{exc.field}".rstrip(".")] = [exc.message]
        if step_type == StepType.THROTTLE:
            try:
                engine.validate_throttle_config(attrs.get("config") or {})
            except engine.StepConfigError as exc:
                errors[exc.field] = [str(exc)]
            if attrs.get("templates"):
                errors["templates"] = ["Throttle steps have no templates."]
        if step_type == StepType.DIGEST:
            try:
                engine.validate_digest_config(attrs.get("config") or {})
            except engine.StepConfigError as exc:
                errors[exc.field] = [str(exc)]
            if attrs.get("templates"):
                errors["templates"] = ["Digest steps have no templates."]
        if step_type == StepType.APPROVAL:
            try:
                engine.validate_approval_config(attrs.get("config") or {})
            except engine.StepConfigError as exc:
                errors[exc.field] = [str(exc)]
            if attrs.get("templates"):
                errors["templates"] = ["Approval steps have no templates."]
        if attrs.get("conditions"):
            try:
                conditions.validate(attrs["conditions"])
            except conditions.ConditionError as exc:
                errors[exc.field] = [exc.message]
        if step_type == StepType.DELAY:
            try:
                engine.validate_delay_config(attrs.get("config") or {})
            except engine.StepConfigError as exc:
                errors["config"] = [str(exc)]
            if attrs.get("templates"):
                errors["templates"] = ["Delay steps have no templates."]
        elif step_type in CHANNEL_KEYS:
            try:
                engine.validate_channel_config(step_type, attrs.get("config") or {})
            except engine.StepConfigError as exc:
                errors["config"] = [str(exc)]
            errors.update(_template_errors(step_type, attrs.get("templates", {}), "templates"))
        elif step_type == StepType.ROUTE:
            errors.update(_route_errors(attrs.get("config") or {}, attrs.get("templates", {})))
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class WorkflowSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200)
    category = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    critical = serializers.BooleanField(required=False, default=False)
    active = serializers.BooleanField(required=False, default=True)
    default_locale = serializers.CharField(max_length=35, required=False, default="en",
                                           validators=[validate_locale])
    data_schema = serializers.DictField(required=False, allow_null=True, default=None)
    steps = StepSerializer(many=True)

    def validate(self, attrs):
        steps = attrs.get("steps") or []
        refs = [ref for ref, _ in workflow_json.step_paths(steps, "steps")]
        duplicates = sorted({ref for ref in refs if refs.count(ref) > 1})
        if duplicates:
            raise serializers.ValidationError({"steps": [
                f"Step refs must be unique (nested steps included): {', '.join(duplicates)}."]})
        errors: dict[str, list[str]] = {}
        workflow_json.check_unless(steps, {}, "steps", errors)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def validate_data_schema(self, value):
        if value:
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise serializers.ValidationError(
                    f"Not a valid JSON Schema: {exc.message}"
                ) from exc
        return value


# --- Tenants, topics, channel data ------------------------------------------------------------

class TenantSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200, validators=[validate_display_name])
    logo_url = serializers.URLField(required=False, allow_blank=True, default="")
    primary_color = serializers.CharField(max_length=32, required=False, allow_blank=True,
                                          default="", validators=[color_validator])
    sender_name = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                        default="", validators=[validate_display_name])
    sender_email = serializers.EmailField(required=False, allow_blank=True, default="",
                                          validators=[validate_email_address])
    footer = serializers.CharField(required=False, allow_blank=True, default="",
                                   trim_whitespace=False)
    settings = serializers.DictField(required=False, default=dict)
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0,
        help_text="Days its runs, messages and events are kept; null: the global "
                  "CLARION_RETENTION_DAYS; 0: forever.")

    def validate_logo_url(self, value: str) -> str:
        if value:
            try:
                ssrf.check_url_destination(value)
            except ssrf.UnsafeURL as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value


class TopicSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    tenant = TenantKeyField()
    subscribers = serializers.IntegerField(read_only=True)



class SubscriptionsSerializer(Serializer):
    recipients = serializers.ListField(child=RecipientSpecField(), allow_empty=False,
                                       max_length=1000)

    def validate_recipients(self, value):
        if any(isinstance(item, dict) and "topic" in item for item in value):
            raise serializers.ValidationError("A topic cannot subscribe to a topic.")
        return value


class ChannelDataSerializer(Serializer):
    data = serializers.DictField()
    provider_kind = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="",
        help_text="Only for providers of this kind (fcm, apns, webpush…); blank: any of them.")
