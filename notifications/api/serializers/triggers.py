"""Triggers (single, bulk, cancel) and what the API answers about them: triggers, runs,
messages."""

import jsonschema
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clarion.api import QuerySerializer, Serializer, TenantKeyField

from ... import selectors
from ...approvals import approval_detail
from ..fields import CursorField
from .recipients import (
    ActorField,
    RecipientIdField,
    RecipientSpecField,
)


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
            "status": {"type": "integer", "description": "400, 403, 409, 422 or 503"},
            "error": {"type": "string"},
            "detail": {"type": "string"},
            "fields": {"type": "object", "description": "Path within this trigger → problems.",
                       "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "retry_after": {"type": "integer",
                            "description": "On a 409: seconds after which the same item "
                                           "replays the first trigger's answer; on a 503 "
                                           "(transaction_conflict: nothing written), seconds "
                                           "after which to send it again."},
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
    send_number = serializers.IntegerField(
        help_text="The send of the message this call belongs to: 1, then one more per resend.")


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
    send_number = serializers.IntegerField(
        help_text="The current send: 1, then one more each time the message is resent.")
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
