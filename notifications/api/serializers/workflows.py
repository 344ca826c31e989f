"""Workflows (steps, branches, templates) as PUT/GET /api/v1/workflows/{key} takes and
gives them."""

import jsonschema
from rest_framework import serializers

from clarion.api import Serializer

from ... import conditions, engine, rendering, workflow_json
from ...channels import CHANNEL_KEYS
from ...engine import windows
from ...models import (
    StepType,
    key_validator,
)
from .recipients import (
    LOCALE,
    validate_locale,
)


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
