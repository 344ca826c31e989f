"""Novu's API (`novu-py` SDK with `server_url="https://<clarion>/novu"`) over Clarion's services.

    POST   /v1/events/trigger               → 201 {"data": {acknowledged, status, transactionId}}
    POST   /v1/events/trigger/bulk              → 201 {"data": [ … one per event … ]}
    DELETE /v1/events/trigger/{transactionId}   → 200 {"data": true|false}
    POST   /v2/subscribers                      → 201 subscriber (upsert; ?failIfExists=true)
    GET / PATCH / DELETE /v2/subscribers/{id}
    GET / PATCH /v2/subscribers/{id}/preferences
    POST   /v2/topics (?failIfExists=true)      → 201 created / 200 updated;  GET /v2/topics/{key}
    POST / DELETE /v2/topics/{key}/subscriptions

`Authorization: ApiKey <Clarion API key>`. Errors take Novu's shape {"statusCode", "timestamp",
"path", "message"}; invalid bodies are 400 with `"type": "PAYLOAD_VALIDATION_ERROR"` and
`errors: [{field, message}]`. Nothing answers 409 for "already exists" (the SDK would retry it
for an hour): `failIfExists` is a 400 naming the field.
"""

import hashlib
import uuid

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import exceptions, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from clarion.api import ApiError, check_key, not_found, validated
from notifications import services
from notifications.api.auth import ApiKeyAuthentication, HasApiKey, UnrestrictedApiKey
from notifications.api.serializers import RecipientProfileSerializer
from notifications.api.throttles import TriggerRateThrottle
from notifications.api.triggers import check_published
from notifications.models import Recipient, Subscription, Topic, Trigger, Workflow
from notifications.models import validate_recipient_id as recipient_id_rule
from preferences import services as preference_services
from preferences.selectors import preference_center_data
from preferences.serializers import preference_set_validated

from .. import base
from . import shapes

MAX_BULK_EVENTS = 100
MAX_SUBSCRIBERS_PER_CALL = 100


class NovuApiKeyAuthentication(ApiKeyAuthentication):
    keyword = "ApiKey"


def _novu_path(request) -> str:
    prefix = "/novu"
    path = request.path
    return path[len(prefix):] if path.startswith(prefix + "/") else path


def novu_error(exc, status_code: int, request) -> tuple[int, dict]:
    """Clarion's error `exc` (answered `status_code`) as Novu's status and error body."""
    common = {"statusCode": status_code, "timestamp": base.iso(timezone.now()),
              "path": _novu_path(request)}
    if isinstance(exc, ValidationError):
        to_was_list = getattr(request, "novu_to_was_list", True)
        errors = [{"field": shapes.error_path(field, to_was_list), "message": " ".join(messages)}
                  for field, messages in base.field_errors(
                      exc, shapes.TOP_FIELD_NAMES, shapes.NESTED_FIELD_NAMES).items()]
        return 400, {**common, "statusCode": 400, "type": "PAYLOAD_VALIDATION_ERROR",
                     "message": "Payload validation failed: " + "; ".join(
                         f"{e['field']}: {e['message']}" for e in errors),
                     "errors": errors}
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    return status_code, {**common, "message": str(detail)}


class NovuView(base.CompatView):
    authentication_classes = [NovuApiKeyAuthentication]
    permission_classes = [HasApiKey]
    error_body = staticmethod(novu_error)


# --- Events -------------------------------------------------------------------------------------

def _trigger_event(request, event, idempotency_key: str | None) -> dict:
    """Trigger one Novu event through Clarion's trigger service; its TriggerEventResponseDto.

    A given `transactionId` is the trigger's cancellation key and its idempotency key (Novu
    ignores a second trigger with the same transactionId: the first answer is given again);
    without one, a new id is made and the Idempotency-Key header (if any) applies."""
    request.novu_to_was_list = isinstance(event, dict) and isinstance(event.get("to"), list)
    key, body, inline_tenant = shapes.trigger_body(event)
    workflow = Workflow.objects.filter(key=key).first()
    if workflow is None:
        raise not_found("workflow", key)
    transaction_id = event.get("transactionId")
    if not workflow.active:
        return {"acknowledged": True, "status": "trigger_not_active",
                "transactionId": transaction_id or ""}
    check_published(workflow)
    if inline_tenant:
        base.tenant_inline_upsert(request, inline_tenant)
    if transaction_id:
        idempotency_key = f"novu-transaction:{transaction_id}"
        fingerprint = ["novu-transaction", transaction_id]
    else:
        fingerprint = [_novu_path(request), event]
    body["cancellation_key"] = transaction_id or uuid.uuid4().hex
    answer = base.trigger(request=request, workflow=workflow, body=body,
                          idempotency_key=idempotency_key, fingerprint=fingerprint)
    if answer.replayed and not transaction_id:
        transaction_id = (Trigger.objects.filter(pk=answer.body["trigger_id"])
                          .values_list("cancellation_key", flat=True).first())
    return {"acknowledged": True, "status": "processed",
            "transactionId": transaction_id or body["cancellation_key"]}


class TriggerView(NovuView):
    throttle_classes = [TriggerRateThrottle]

    def post(self, request):
        result = _trigger_event(request, request.data, base.idempotency_key_of(request))
        return Response({"data": result}, status=status.HTTP_201_CREATED)


def _messages(request, exc: exceptions.APIException) -> list[str]:
    if isinstance(exc, ValidationError):
        to_was_list = getattr(request, "novu_to_was_list", True)
        return [f"{shapes.error_path(field, to_was_list)}: {' '.join(messages)}"
                for field, messages in base.field_errors(
                    exc, shapes.TOP_FIELD_NAMES, shapes.NESTED_FIELD_NAMES).items()]
    return [str(exc.detail)]


class BulkTriggerView(NovuView):
    throttle_classes = [TriggerRateThrottle]

    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        events = body.get("events")
        if not isinstance(events, list) or not 0 < len(events) <= MAX_BULK_EVENTS:
            raise ValidationError({"events": [f"Expected 1 to {MAX_BULK_EVENTS} events."]})
        header = base.idempotency_key_of(request)
        if header is not None and len(header) > 240:
            header = hashlib.sha256(header.encode()).hexdigest()
        results = []
        for index, event in enumerate(events):  # each on its own: one bad event does not
            # refuse the others; a retried call (same Idempotency-Key) triggers none twice
            key = f"{header}#{index}" if header is not None else None
            try:
                results.append(_trigger_event(request, event, key))
            except exceptions.APIException as exc:
                results.append({"acknowledged": False, "status": "error",
                                "error": _messages(request, exc),
                                "transactionId": (event.get("transactionId") or ""
                                                  if isinstance(event, dict) else "")})
        return Response({"data": results}, status=status.HTTP_201_CREATED)


class CancelView(NovuView):
    def delete(self, request, transaction_id: str):
        triggers = Trigger.objects.filter(cancellation_key=transaction_id)
        if request.auth.tenant_id is not None:
            triggers = triggers.filter(tenant_id=request.auth.tenant_id)
        workflow_ids = set(triggers.values_list("workflow_id", flat=True))
        for workflow in Workflow.objects.filter(pk__in=workflow_ids):
            services.workflow_cancel(workflow=workflow, cancellation_key=transaction_id,
                                     tenant=request.auth.tenant)
        return Response({"data": bool(workflow_ids)})


# --- Subscribers and their preferences ----------------------------------------------------------

def _flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() == "true"


def _subscriber_or_404(subscriber_id: str) -> Recipient:
    recipient = Recipient.objects.filter(external_id=subscriber_id).first()
    if recipient is None:
        raise not_found("subscriber", subscriber_id)
    return recipient


def _profile(body) -> dict:
    errors: dict = {}
    profile = shapes.subscriber_profile(body, "", errors)
    if errors:
        raise ValidationError(errors)
    return validated(RecipientProfileSerializer, profile)


class SubscribersView(NovuView):
    permission_classes = [UnrestrictedApiKey]

    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        subscriber_id = body.get("subscriberId")
        if not isinstance(subscriber_id, str):
            raise ValidationError({"subscriberId": ["This field is required."]})
        try:
            recipient_id_rule(subscriber_id)
        except DjangoValidationError as exc:
            raise ValidationError({"subscriberId": exc.messages}) from None
        profile = _profile({k: v for k, v in body.items() if k != "subscriberId"})
        with transaction.atomic():
            exists = Recipient.objects.filter(external_id=subscriber_id).exists()
            if exists and _flag(request, "failIfExists"):
                raise ValidationError({"subscriberId": [
                    f"A subscriber {subscriber_id!r} already exists (failIfExists)."]})
            recipient, _ = services.recipient_upsert(external_id=subscriber_id, **profile)
        recipient.refresh_from_db()
        return Response(shapes.subscriber(recipient), status=status.HTTP_201_CREATED)


class SubscriberView(NovuView):
    permission_classes = [UnrestrictedApiKey]

    def get(self, request, subscriber_id: str):
        return Response(shapes.subscriber(_subscriber_or_404(subscriber_id)))

    def patch(self, request, subscriber_id: str):
        recipient = _subscriber_or_404(subscriber_id)
        body = request.data if isinstance(request.data, dict) else {}
        profile = _profile(body)
        recipient, _ = services.recipient_upsert(external_id=recipient.external_id, **profile)
        recipient.refresh_from_db()
        return Response(shapes.subscriber(recipient))

    def delete(self, request, subscriber_id: str):
        services.recipient_erase(recipient=_subscriber_or_404(subscriber_id))
        return Response({"acknowledged": True, "status": "deleted"})


class SubscriberPreferencesView(NovuView):
    """The subscriber's own set (no tenant; a tenant-restricted key acts for its tenant)."""

    def _answer(self, request, recipient: Recipient) -> Response:
        tenant = request.auth.tenant
        center = preference_center_data(recipient=recipient, tenant=tenant)
        own = preference_services.preference_set_get(recipient=recipient, tenant=tenant)
        return Response(shapes.preferences(center, own["channel_types"]))

    def get(self, request, subscriber_id: str):
        return self._answer(request, _subscriber_or_404(subscriber_id))

    def patch(self, request, subscriber_id: str):
        recipient = _subscriber_or_404(subscriber_id)
        changes, workflow_key = shapes.preference_changes(request.data)
        if workflow_key and not Workflow.objects.filter(key=workflow_key).exists():
            raise not_found("workflow", workflow_key)
        tenant = request.auth.tenant
        data = preference_set_validated(changes, tenant=tenant, partial=True)
        preference_services.preference_set_update(recipient=recipient, tenant=tenant,
                                                  data=data, merge=True)
        return self._answer(request, recipient)


# --- Topics -------------------------------------------------------------------------------------

def _topic_key(key) -> str:
    if not isinstance(key, str):
        raise ValidationError({"key": ["This field is required."]})
    try:
        return check_key(key)
    except ApiError as exc:
        raise ValidationError({"key": [str(exc.detail)]}) from None


class TopicsView(NovuView):
    permission_classes = [UnrestrictedApiKey]

    def post(self, request):
        body = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(body) - {"key", "name"})
        if unknown:
            raise ValidationError({unknown[0]: ["Unknown field; expected one of: key, name."]})
        key = _topic_key(body.get("key"))
        name = body.get("name") or ""
        if not isinstance(name, str) or len(name) > 200:
            raise ValidationError({"name": ["Expected a name of up to 200 characters."]})
        with transaction.atomic():
            topic = Topic.objects.filter(key=key).first()
            if topic is not None and _flag(request, "failIfExists"):
                raise ValidationError({"key": [f"A topic {key!r} already exists "
                                               "(failIfExists)."]})
            topic, created = services.topic_upsert(key=key, name=name or (topic.name if topic
                                                                          else ""))
        return Response(shapes.topic(topic),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TopicView(NovuView):
    permission_classes = [UnrestrictedApiKey]

    def get(self, request, key: str):
        topic = Topic.objects.filter(key=key).first()
        if topic is None:
            raise not_found("topic", key)
        return Response(shapes.topic(topic))


class TopicSubscriptionsView(NovuView):
    permission_classes = [UnrestrictedApiKey]

    @staticmethod
    def _subscriber_ids(request) -> list[str]:
        body = request.data if isinstance(request.data, dict) else {}
        ids = body.get("subscriberIds")
        for item in body.get("subscriptions") or []:
            if isinstance(item, dict) and isinstance(item.get("subscriberId"), str):
                ids = [*(ids or []), item["subscriberId"]]
        if (not isinstance(ids, list) or not 0 < len(ids) <= MAX_SUBSCRIBERS_PER_CALL
                or not all(isinstance(i, str) for i in ids)):
            raise ValidationError({"subscriberIds": [
                f"Expected 1 to {MAX_SUBSCRIBERS_PER_CALL} subscriber ids."]})
        return list(dict.fromkeys(ids))

    @staticmethod
    def _answer(topic: Topic, ids: list[str], found: dict, rows: dict, verb: str) -> dict:
        missing = [i for i in ids if i not in found]
        return {
            "data": [shapes.subscription(topic, found[i], rows[i]) for i in ids if i in rows],
            "meta": {"totalCount": len(ids), "successful": len(ids) - len(missing),
                     "failed": len(missing)},
            "errors": [{"subscriberId": i, "code": "SUBSCRIBER_NOT_FOUND",
                        "message": f"Subscriber {i!r} was not found; not {verb}."}
                       for i in missing],
        }

    @staticmethod
    def _rows(topic: Topic, ids: list[str]) -> dict:
        return {row.recipient.external_id: row.created_at for row in
                Subscription.objects.select_related("recipient")
                .filter(topic=topic, recipient__external_id__in=ids)}

    def post(self, request, key: str):
        """Novu creates the topic if it does not exist; unknown subscribers are reported."""
        ids = self._subscriber_ids(request)
        key = _topic_key(key)
        name = request.data.get("name") if isinstance(request.data, dict) else None
        with transaction.atomic():
            topic = Topic.objects.filter(key=key).first()
            if topic is None:
                topic, _ = services.topic_upsert(key=key, name=name or "")
            found = Recipient.objects.in_bulk(ids, field_name="external_id")
            services.topic_subscribe(topic=topic, recipients=found.values())
        return Response(self._answer(topic, ids, found, self._rows(topic, ids), "subscribed"),
                        status=status.HTTP_201_CREATED)

    def delete(self, request, key: str):
        ids = self._subscriber_ids(request)
        topic = Topic.objects.filter(key=key).first()
        if topic is None:
            raise not_found("topic", key)
        found = Recipient.objects.in_bulk(ids, field_name="external_id")
        rows = self._rows(topic, ids)
        services.topic_unsubscribe(topic=topic, external_ids=ids)
        return Response(self._answer(topic, ids, found, rows, "unsubscribed"))


class UnknownEndpointView(NovuView):
    """Any other path under /novu/: Novu's JSON 404."""

    authentication_classes = []
    permission_classes = []

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise not_found("endpoint", request.path)

    options = http_method_not_allowed
