"""The message log: `GET /api/v1/messages` (filters, keyset pages) and
`GET /api/v1/messages/{id}` (with its provider calls and status events). A tenant-restricted API
key sees only its tenant's messages."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import (
    ERRORS,
    QuerySerializer,
    Serializer,
    TenantKeyField,
    not_found,
    tenant_for_api_key,
    validated,
)

from .. import selectors
from ..models import Channel, Message
from .fields import CursorField

# --- Query and response shapes ------------------------------------------------------------


class MessageLogQuerySerializer(QuerySerializer):
    recipient = serializers.CharField(required=False, trim_whitespace=False,
                                      help_text="A recipient id: only their messages.")
    workflow = serializers.CharField(required=False, help_text="A workflow key.")
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    status = serializers.ChoiceField(choices=Message.Status.choices, required=False)
    tenant = TenantKeyField(help_text="A tenant key (a tenant-restricted key may name only "
                                      "its own).")
    provider = serializers.CharField(required=False,
                                     help_text="The key of the provider that sent them.")
    created_after = serializers.DateTimeField(
        required=False, help_text="ISO 8601; messages made at or after it.")
    created_before = serializers.DateTimeField(
        required=False, help_text="ISO 8601; messages made before it.")
    engagement = serializers.ChoiceField(
        choices=sorted(selectors.ENGAGEMENT), required=False,
        help_text="seen / unseen, read / unread (in-app), opened, clicked.")
    limit = serializers.IntegerField(min_value=1, max_value=selectors.MESSAGE_LOG_MAX_LIMIT,
                                     default=selectors.MESSAGE_LOG_DEFAULT_LIMIT)
    after = CursorField()

    def validate(self, attrs):
        after, before = attrs.get("created_after"), attrs.get("created_before")
        if after is not None and before is not None and after >= before:
            raise serializers.ValidationError(
                {"created_before": ["Must be later than `created_after`."]})
        return attrs


class MessageSummarySerializer(Serializer):
    """A message in the log: where it comes from, where it went, what became of it."""

    id = serializers.UUIDField()
    run_id = serializers.UUIDField()
    trigger_id = serializers.UUIDField(source="run.trigger_id")
    workflow = serializers.CharField(source="workflow.key")
    recipient = serializers.CharField(source="recipient.external_id")
    tenant = serializers.CharField(source="tenant.key", allow_null=True)
    step = serializers.CharField(source="step_ref")
    channel = serializers.CharField()
    status = serializers.CharField()
    to = serializers.CharField()
    provider = serializers.CharField(help_text="The key of the provider that sent it.")
    provider_message_id = serializers.CharField()
    error = serializers.CharField(
        help_text="Why it was suppressed or failed, if it was. A push message sent to some of "
                  "the person's device sets but not all stays `sent`, and this names the sets "
                  "that did not take it and why: \"Not sent to every device set — webpush: …\".")
    send_number = serializers.IntegerField(
        help_text="The current send: 1, then one more each time the message is resent.")
    created_at = serializers.DateTimeField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    seen_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    clicked_at = serializers.DateTimeField(allow_null=True)
    bounced_at = serializers.DateTimeField(allow_null=True)


class MessageAttemptSerializer(Serializer):
    provider = serializers.CharField(help_text="The provider key.")
    provider_kind = serializers.CharField()
    started_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField(allow_null=True)
    status_code = serializers.IntegerField(allow_null=True)
    outcome = serializers.CharField()
    error = serializers.CharField()
    send_number = serializers.IntegerField(
        help_text="The send of the message this call belongs to: 1, then one more per resend.")
    request = serializers.JSONField(help_text="Redacted: no credentials.")
    response = serializers.JSONField()


class MessageEventSerializer(Serializer):
    kind = serializers.CharField(help_text="delivered, bounced, opened, clicked…")
    provider_kind = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    description = serializers.CharField()
    payload = serializers.JSONField(source="raw", help_text="The provider's payload as sent.")


class MessageDeviceSerializer(Serializer):
    kind = serializers.CharField(help_text="fcm, apns or webpush.")
    provider = serializers.CharField(help_text="The key of the provider that last called it.")
    device = serializers.CharField(help_text="The token or Web Push endpoint, shortened.")
    result = serializers.CharField(help_text="accepted, deactivated (the provider said the "
                                   "device is gone; taken out of the recipient's channel data), "
                                   "transient_error or permanent_error.")
    status = serializers.IntegerField(allow_null=True, help_text="The provider's HTTP status.")
    error = serializers.CharField()
    at = serializers.DateTimeField(help_text="When that call started.")


class MessageLogDetailSerializer(MessageSummarySerializer):
    template_version = serializers.IntegerField(source="template_version.number",
                                                allow_null=True)
    content = serializers.JSONField(help_text="The rendered fields.")
    attempts = MessageAttemptSerializer(many=True, source="delivery_attempts")
    devices = serializers.SerializerMethodField(
        help_text="Push: the result per device of the latest call to it (every device set "
                  "of the recipient: APNs, FCM, Web Push). Empty for other channels.")
    device_sets = serializers.SerializerMethodField(
        help_text="Push to a person with devices of more than one kind: each device set (its "
                  "kind) and what became of it in the latest delivery pass — sent, failed, "
                  "retry, wait, deferred or unknown. Empty otherwise.")
    events = MessageEventSerializer(many=True)

    @extend_schema_field(MessageDeviceSerializer(many=True))
    def get_devices(self, message) -> list:
        return MessageDeviceSerializer(selectors.message_devices(message), many=True).data

    @extend_schema_field(serializers.DictField(child=serializers.CharField()))
    def get_device_sets(self, message) -> dict:
        return selectors.message_device_sets(message)


class MessagePageInfoSerializer(Serializer):
    after = serializers.CharField(allow_null=True,
                                  help_text="Pass as `after` for the next, older page; null on "
                                            "the last page.")


class MessageLogSerializer(Serializer):
    messages = MessageSummarySerializer(many=True)
    page_info = MessagePageInfoSerializer()


# --- Views --------------------------------------------------------------------------------

class MessageListView(APIView):
    @extend_schema(
        operation_id="message_list",
        summary="The message log: messages, newest first, filtered",
        description="Pages by keyset (`after`, from `page_info.after`), never by offset. A "
        "filter naming a recipient or workflow that does not exist matches nothing; a bad value "
        "is a 400 naming the parameter.",
        parameters=[MessageLogQuerySerializer],
        responses={200: MessageLogSerializer, **ERRORS},
    )
    def get(self, request):
        query = validated(MessageLogQuerySerializer, request.query_params)
        query["tenant"] = tenant_for_api_key(request.auth, query["tenant"])
        page = selectors.message_log_page(
            selectors.messages_visible_to(request.auth), filters=query, limit=query["limit"],
            after=query.get("after"))
        return Response({"messages": MessageSummarySerializer(page.messages, many=True).data,
                         "page_info": {"after": page.after}})


class MessageDetailView(APIView):
    @extend_schema(operation_id="message_retrieve",
                   summary="A message with its provider calls and status events",
                   responses={200: MessageLogDetailSerializer, **ERRORS})
    def get(self, request, message_id):
        message = selectors.message_with_history(
            selectors.messages_visible_to(request.auth).filter(pk=message_id)).first()
        if message is None:
            raise not_found("message", str(message_id))
        return Response(MessageLogDetailSerializer(message).data)
