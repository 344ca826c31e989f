"""The server API (`/api/v1/`). Views validate, call a service, and shape the answer."""

import logging

from django.core.exceptions import ValidationError
from django.db import OperationalError, transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import (
    ERRORS,
    ApiError,
    ApiErrorSerializer,
    check_key,
    error_body,
    not_found,
    transaction_conflict_error,
    validated,
)
from clarion.db import transaction_conflict

from .. import selectors, services
from ..models import Channel, Recipient, Tenant, Topic, Workflow, validate_recipient_id
from . import serializers as s
from .auth import HasApiKey, UnrestrictedApiKey
from .throttles import TriggerRateThrottle
from .triggers import active_workflow, trigger_kept, trigger_one

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Up to 255 characters. The same key and body within 24 hours answers the first "
    "response again (with `Idempotent-Replayed: true`) and triggers nothing; the same key with "
    "another body is a 422; while the first request is still running, a 409.",
)


class TriggerView(APIView):
    throttle_classes = [TriggerRateThrottle]

    @extend_schema(
        operation_id="workflow_trigger",
        summary="Trigger a workflow",
        request=s.TriggerSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: s.TriggerResponseSerializer,
            **ERRORS,
            409: OpenApiResponse(ApiErrorSerializer, description="Idempotency key in use."),
            429: OpenApiResponse(ApiErrorSerializer,
                                 description="Too many trigger calls with this API key; retry "
                                             "after the `Retry-After` header's seconds."),
            503: OpenApiResponse(ApiErrorSerializer,
                                 description="`transaction_conflict`: the trigger's writes "
                                             "were undone for a conflicting request's sake "
                                             "twice (nothing written); send it again after "
                                             "the `Retry-After` header's seconds."),
            422: OpenApiResponse(
                ApiErrorSerializer,
                description="Inactive workflow, or an Idempotency-Key reused with another body.",
            ),
        },
    )
    def post(self, request, key: str):
        answer = trigger_kept(request.auth, key, s.TriggerSerializer, request.data,
                              idempotency_key=request.headers.get("Idempotency-Key"))
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        logger.info("trigger %s of %s answered %s%s", answer.body.get("trigger_id"), key,
                    answer.status, " (replayed)" if answer.replayed else "",
                    extra={"trigger_id": answer.body.get("trigger_id")})
        return Response(answer.body, status=answer.status, headers=headers)


class BulkTriggerView(APIView):
    throttle_classes = [TriggerRateThrottle]

    @extend_schema(
        operation_id="workflow_trigger_bulk",
        summary="Trigger a workflow many times in one call",
        description=f"Up to {s.MAX_BULK_TRIGGERS} triggers, each with its own recipients, data, "
        "actor, tenant, cancellation key and `idempotency_key` (which behaves as the single "
        "trigger's Idempotency-Key header). Each trigger is validated and committed on its own, "
        "never all or nothing: the 207 answer has one result per trigger, in order, either "
        "`{\"status\": 202, \"trigger_id\", \"runs\"}` or the error shape with its 4xx `status`; "
        "a 409 (its idempotency key still in use) or a 503 (`transaction_conflict`: undone "
        "for a conflicting request's sake, nothing written; send it again) carries "
        "`retry_after` in seconds, and the answer's `Retry-After` header is the largest of "
        "them.",
        request=s.BulkTriggerSerializer,
        responses={
            207: s.BulkTriggerResponseSerializer,
            **ERRORS,
            429: OpenApiResponse(ApiErrorSerializer,
                                 description="Too many trigger calls with this API key."),
            422: OpenApiResponse(ApiErrorSerializer, description="Inactive workflow."),
        },
    )
    def post(self, request, key: str):
        workflow = active_workflow(key)
        triggers = validated(s.BulkTriggerSerializer, request.data)["triggers"]
        results, retry_after = [], None
        for body in triggers:
            idempotency_key = body.get("idempotency_key") if isinstance(body, dict) else None
            if not isinstance(idempotency_key, str) or not idempotency_key:
                idempotency_key = None  # an invalid one is refused by the serializer
            try:
                answer = trigger_one(request.auth, workflow, s.BulkTriggerItemSerializer, body,
                                     idempotency_key=idempotency_key)
            except (exceptions.APIException, OperationalError) as exc:
                if isinstance(exc, OperationalError):  # the others' answers stand
                    if not transaction_conflict(exc):
                        raise
                    exc = transaction_conflict_error()
                result = {"status": exc.status_code, **error_body(exc)}
                if getattr(exc, "retry_after", None) is not None:  # a 409 or 503
                    result["retry_after"] = exc.retry_after
                    retry_after = max(retry_after or 0, exc.retry_after)
                results.append(result)
                continue
            result = {"status": answer.status, **answer.body}
            if answer.replayed:
                result["replayed"] = True
            results.append(result)
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return Response({"results": results}, status=status.HTTP_207_MULTI_STATUS,
                        headers=headers)


class CancelView(APIView):
    @extend_schema(
        operation_id="workflow_cancel",
        summary="Cancel the unfinished runs of a workflow triggered with a cancellation key",
        description="Runs still running or waiting stop; their queued messages are not sent. "
        "Cancelling again is harmless. A tenant-restricted key cancels only its tenant's runs.",
        request=s.CancelSerializer,
        responses={200: s.CancelResponseSerializer, **ERRORS},
    )
    def post(self, request, key: str):
        workflow = Workflow.objects.filter(key=key).first()
        if workflow is None:
            raise not_found("workflow", key)
        data = validated(s.CancelSerializer, request.data)
        runs = services.workflow_cancel(
            workflow=workflow, cancellation_key=data["cancellation_key"],
            recipient_ids=data.get("recipients"), tenant=request.auth.tenant,
        )
        return Response({"cancelled": [{"id": str(run.id), "recipient": run.recipient.external_id}
                                       for run in runs]})


class TriggerDetailView(APIView):
    @extend_schema(operation_id="trigger_retrieve", summary="A trigger and a page of its runs",
                   parameters=[s.TriggerDetailQuerySerializer],
                   responses={200: s.TriggerDetailSerializer, **ERRORS})
    def get(self, request, trigger_id):
        query = validated(s.TriggerDetailQuerySerializer, request.query_params)
        trigger = selectors.triggers_visible_to(request.auth).select_related(
            "workflow", "tenant").filter(pk=trigger_id).first()
        if trigger is None:
            raise not_found("trigger", str(trigger_id))
        trigger.runs_page, after = selectors.trigger_runs_page(
            trigger, limit=query["limit"], after=query.get("after"))
        trigger.runs_page_info = {"after": after}
        return Response(s.TriggerDetailSerializer(trigger).data)


class RunDetailView(APIView):
    @extend_schema(operation_id="run_retrieve", summary="A run: status, timeline and messages",
                   responses={200: s.RunDetailSerializer, **ERRORS})
    def get(self, request, run_id):
        run = selectors.runs_with_history(
            selectors.runs_visible_to(request.auth).filter(pk=run_id)).first()
        if run is None:
            raise not_found("run", str(run_id))
        return Response(s.RunDetailSerializer(run).data)


class WorkflowListView(APIView):
    @extend_schema(operation_id="workflow_list", summary="All workflows, as their PUT bodies",
                   responses={200: s.WorkflowSerializer(many=True), 401: ERRORS[401]})
    def get(self, request):
        return Response([selectors.workflow_export(w) for w in Workflow.objects.all()])


class WorkflowDetailView(APIView):
    def get_permissions(self):
        if self.request.method == "PUT":
            return [UnrestrictedApiKey()]
        return [HasApiKey()]

    @extend_schema(operation_id="workflow_retrieve", summary="A workflow, as its PUT body",
                   responses={200: s.WorkflowSerializer, **ERRORS})
    def get(self, request, key: str):
        workflow = Workflow.objects.filter(key=key).first()
        if workflow is None:
            raise not_found("workflow", key)
        return Response(selectors.workflow_export(workflow))

    @extend_schema(
        operation_id="workflow_put",
        summary="Create or replace a workflow",
        description="Steps are matched by `ref`; a PUT of what GET returned changes nothing. "
                    "A PUT publishes at once (for CI pipelines, whatever CLARION_REQUIRE_REVIEW "
                    "says) and is recorded as a new published version of the workflow; an open "
                    "draft in the admin is kept.",
        request=s.WorkflowSerializer,
        responses={200: s.WorkflowSerializer, 201: s.WorkflowSerializer, **ERRORS},
    )
    def put(self, request, key: str):
        check_key(key)
        data = validated(s.WorkflowSerializer, request.data)
        steps = [services.StepSpec.from_json(step) for step in data.pop("steps")]
        workflow, created = services.workflow_put(
            key=key, steps=steps, source="api", note=f"PUT with the API key {request.auth}",
            **data)
        return Response(selectors.workflow_export(workflow),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RecipientView(APIView):
    permission_classes = [UnrestrictedApiKey]

    @extend_schema(operation_id="recipient_retrieve", summary="A recipient",
                   responses={200: s.RecipientSerializer, **ERRORS})
    def get(self, request, recipient_id: str):
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            raise not_found("recipient", recipient_id)
        return Response(selectors.recipient_detail(recipient))

    @extend_schema(
        operation_id="recipient_put",
        summary="Create or replace a recipient",
        description="Fields left out are cleared; `channel_data` entries given are set.",
        request=s.RecipientSerializer,
        responses={200: s.RecipientSerializer, 201: s.RecipientSerializer, **ERRORS},
    )
    def put(self, request, recipient_id: str):
        try:
            validate_recipient_id(recipient_id)
        except ValidationError as exc:
            raise ApiError(400, "invalid_request", exc.messages[0]) from None
        data = validated(s.RecipientSerializer, request.data)
        with transaction.atomic():
            recipient, created = services.recipient_upsert(external_id=recipient_id,
                                                           replace=True, **data)
        return Response(selectors.recipient_detail(recipient),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="recipient_erase",
        summary="Erase a recipient",
        description="Deletes the profile, channel data, subscriptions, runs, messages and inbox.",
        responses={204: None, **ERRORS},
    )
    def delete(self, request, recipient_id: str):
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            raise not_found("recipient", recipient_id)
        services.recipient_erase(recipient=recipient)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChannelDataView(APIView):
    permission_classes = [UnrestrictedApiKey]

    @extend_schema(operation_id="recipient_channel_data_put",
                   summary="Set a recipient's data for one channel (push tokens, chat URLs…)",
                   request=s.ChannelDataSerializer, responses={200: s.ChannelDataSerializer,
                                                               **ERRORS})
    def put(self, request, recipient_id: str, channel: str):
        if channel not in Channel.values:
            raise not_found("channel", channel)
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            raise not_found("recipient", recipient_id)
        data = validated(s.ChannelDataSerializer, request.data)
        item = services.channel_data_set(recipient=recipient, channel=channel, data=data["data"],
                                         provider_kind=data["provider_kind"])
        return Response({"data": item.data, "provider_kind": item.provider_kind})


class TenantView(APIView):
    @extend_schema(operation_id="tenant_retrieve", summary="A tenant",
                   responses={200: s.TenantSerializer, **ERRORS})
    def get(self, request, key: str):
        tenant = Tenant.objects.filter(key=key).first()
        if tenant is None or (request.auth.tenant_id not in (None, tenant.pk)):
            raise not_found("tenant", key)
        return Response(selectors.tenant_detail(tenant))

    @extend_schema(operation_id="tenant_put", summary="Create or replace a tenant",
                   request=s.TenantSerializer,
                   responses={200: s.TenantSerializer, 201: s.TenantSerializer, **ERRORS})
    def put(self, request, key: str):
        if request.auth.tenant_id is not None:
            own = request.auth.tenant
            if own.key != key:
                raise ApiError(403, "forbidden", "This API key is restricted to another tenant.")
        check_key(key)
        data = validated(s.TenantSerializer, request.data)
        tenant, created = services.tenant_upsert(key=key, **data)
        return Response(selectors.tenant_detail(tenant),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TopicView(APIView):
    permission_classes = [UnrestrictedApiKey]

    @extend_schema(operation_id="topic_retrieve", summary="A topic",
                   responses={200: s.TopicSerializer, **ERRORS})
    def get(self, request, key: str):
        topic = Topic.objects.select_related("tenant").filter(key=key).first()
        if topic is None:
            raise not_found("topic", key)
        return Response(selectors.topic_detail(topic))

    @extend_schema(operation_id="topic_put", summary="Create or replace a topic",
                   request=s.TopicSerializer,
                   responses={200: s.TopicSerializer, 201: s.TopicSerializer, **ERRORS})
    def put(self, request, key: str):
        check_key(key)
        data = validated(s.TopicSerializer, request.data)
        topic, created = services.topic_upsert(key=key, **data)
        return Response(selectors.topic_detail(topic),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TopicSubscriptionsView(APIView):
    permission_classes = [UnrestrictedApiKey]

    def _topic(self, key: str) -> Topic:
        topic = Topic.objects.filter(key=key).first()
        if topic is None:
            raise not_found("topic", key)
        return topic

    @extend_schema(operation_id="topic_subscribe",
                   summary="Subscribe recipients (ids or profiles, upserted)",
                   request=s.SubscriptionsSerializer, responses={200: s.TopicSerializer, **ERRORS})
    def post(self, request, key: str):
        topic = self._topic(key)
        data = validated(s.SubscriptionsSerializer, request.data)
        with transaction.atomic():
            recipients = services.recipient_upsert_many(data["recipients"])
            services.topic_subscribe(topic=topic, recipients=recipients.values())
        return Response(selectors.topic_detail(topic))

    @extend_schema(operation_id="topic_unsubscribe", summary="Unsubscribe recipients by id",
                   request=s.SubscriptionsSerializer, responses={200: s.TopicSerializer, **ERRORS})
    def delete(self, request, key: str):
        topic = self._topic(key)
        data = validated(s.SubscriptionsSerializer, request.data)
        ids = [spec["id"] if isinstance(spec, dict) else spec for spec in data["recipients"]]
        services.topic_unsubscribe(topic=topic, external_ids=ids)
        return Response(selectors.topic_detail(topic))


class UnknownEndpointView(APIView):
    """Any other path under /api/v1/: the API's JSON 404 rather than Django's HTML page."""

    authentication_classes = []
    permission_classes = []
    schema = None

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise not_found("endpoint", request.path)

    options = http_method_not_allowed
