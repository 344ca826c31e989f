"""Knock's API (`knockapi` SDK with `base_url="https://<clarion>/knock"`) over Clarion's services.

    POST   /v1/workflows/{key}/trigger            → 200 {"workflow_run_id"} (the trigger's id)
    POST   /v1/workflows/{key}/cancel             → 204
    PUT    /v1/users/{id}  (identify, merge)      → 200 User;  GET → User;  DELETE → 204
    GET    /v1/users/{id}/preferences/default     → PreferenceSet ("default" is Clarion's one set)
    PUT    /v1/users/{id}/preferences/default     → PreferenceSet (__persistence_strategy__)
    PUT    /v1/objects/{collection}/{id}          → Object (a Clarion topic "<collection>:<id>")
    POST   /v1/objects/{collection}/{id}/subscriptions   → [Subscription]
    DELETE /v1/objects/{collection}/{id}/subscriptions   → [Subscription] (those removed)

`Authorization: Bearer <Clarion API key>`. Errors take Knock's shape {"code", "message", "status",
"type"} (validation errors: 422 "invalid_params" with `errors: [{field, message, type}]`).
"""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework import exceptions, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from clarion.api import ApiError, not_found, tenant_for_api_key, validated
from notifications import services
from notifications.api.auth import ApiKeyAuthentication, HasApiKey, UnrestrictedApiKey
from notifications.api.serializers import RecipientProfileSerializer, SubscriptionsSerializer
from notifications.api.throttles import TriggerRateThrottle
from notifications.models import Recipient, Subscription, Tenant, Topic, Workflow
from notifications.models import validate_recipient_id as recipient_id_rule
from preferences import services as preference_services
from preferences.serializers import preference_set_validated

from .. import base
from . import shapes

KNOCK_CODES = {
    400: ("invalid_request", "invalid_request_error"),
    401: ("invalid_api_key", "authentication_error"),
    403: ("forbidden", "authorization_error"),
    404: ("resource_missing", "invalid_request_error"),
    405: ("method_not_allowed", "invalid_request_error"),
    409: ("conflict", "invalid_request_error"),
    415: ("unsupported_media_type", "invalid_request_error"),
    422: ("invalid_params", "invalid_request_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
}


def knock_error(exc, status_code: int, request) -> tuple[int, dict]:
    """Clarion's error `exc` (answered `status_code`) as Knock's status and error body."""
    if isinstance(exc, ValidationError):
        fields = base.field_errors(exc, {}, shapes.FIELD_NAMES)
        return 422, {
            "code": "invalid_params", "status": 422, "type": "invalid_request_error",
            "message": "; ".join(f"{field}: {' '.join(messages)}"
                                 for field, messages in fields.items()),
            "errors": [{"field": field, "message": " ".join(messages), "type": "invalid"}
                       for field, messages in fields.items()],
        }
    code, kind = KNOCK_CODES.get(status_code, ("api_error", "api_error"))
    if isinstance(exc, exceptions.ParseError):
        code = "invalid_json"
    elif isinstance(exc, exceptions.NotAuthenticated):
        code = "api_key_missing"
    elif isinstance(exc, ApiError) and exc.code not in ("not_found", "forbidden"):
        code = exc.code  # workflow_inactive, idempotency_key_reused, idempotency_key_in_use
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    return status_code, {"code": code, "message": str(detail), "status": status_code,
                         "type": kind}


class KnockView(base.CompatView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    error_body = staticmethod(knock_error)


def _recipient_or_404(user_id: str) -> Recipient:
    recipient = Recipient.objects.filter(external_id=user_id).first()
    if recipient is None:
        raise not_found("user", user_id)
    return recipient


class TriggerView(KnockView):
    throttle_classes = [TriggerRateThrottle]

    def post(self, request, key: str):
        workflow = base.active_workflow(key)
        idempotency_key = base.idempotency_key_of(request)
        body, inline_tenant = shapes.trigger_body(request.data)
        if inline_tenant:
            base.tenant_inline_upsert(request, inline_tenant)
        answer = base.trigger(request=request, workflow=workflow, body=body,
                              idempotency_key=idempotency_key,
                              fingerprint=[request.path, request.data])
        headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
        return Response({"workflow_run_id": answer.body["trigger_id"]}, headers=headers)


class CancelView(KnockView):
    def post(self, request, key: str):
        workflow = Workflow.objects.filter(key=key).first()
        if workflow is None:
            raise not_found("workflow", key)
        body = request.data if isinstance(request.data, dict) else {}
        cancellation_key = body.get("cancellation_key")
        errors = {}
        if not isinstance(cancellation_key, str) or not 0 < len(cancellation_key) <= 255:
            errors["cancellation_key"] = ["Expected a cancellation key of 1 to 255 characters."]
        recipients = body.get("recipients")
        ids = None
        if recipients is not None:
            if not isinstance(recipients, list) or not all(isinstance(r, str | dict)
                                                           for r in recipients):
                errors["recipients"] = ["Expected a list of user ids."]
            else:
                ids = [r.get("id") if isinstance(r, dict) else r for r in recipients]
        if errors:
            raise ValidationError(errors)
        services.workflow_cancel(workflow=workflow, cancellation_key=cancellation_key,
                                 recipient_ids=ids, tenant=request.auth.tenant)
        return Response(status=status.HTTP_204_NO_CONTENT)


class UserView(KnockView):
    permission_classes = [UnrestrictedApiKey]

    def get(self, request, user_id: str):
        return Response(shapes.user(_recipient_or_404(user_id)))

    def put(self, request, user_id: str):
        try:
            recipient_id_rule(user_id)
        except DjangoValidationError as exc:
            raise ValidationError({"id": exc.messages}) from None
        profile = shapes.user_profile(request.data)
        inline_sets = profile.pop("preferences", {})
        profile = validated(RecipientProfileSerializer, profile)
        preference_sets = []
        for set_id, body in inline_sets.items():
            try:
                changes, merge = shapes.preference_body(body, inline=True)
                preference_sets.append(
                    (preference_set_validated(changes, tenant=None, partial=merge), merge))
            except ValidationError as exc:
                raise ValidationError({f"preferences.{set_id}": exc.detail}) from None
        with transaction.atomic():
            if "data" in profile:
                profile["data"] = shapes.merged_data(user_id, profile["data"])
            recipient, _ = services.recipient_upsert(external_id=user_id, **profile)
            for data, merge in preference_sets:
                preference_services.preference_set_update(recipient=recipient, data=data,
                                                          merge=merge)
        recipient.refresh_from_db()
        return Response(shapes.user(recipient))

    def delete(self, request, user_id: str):
        services.recipient_erase(recipient=_recipient_or_404(user_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreferenceSetView(KnockView):
    """Clarion keeps one set per user (and per tenant, with ?tenant=): Knock's "default"."""

    def owner(self, request, user_id: str, set_id: str) -> tuple[Recipient, Tenant | None]:
        if set_id != "default":
            raise not_found("preference set", set_id)
        key = request.query_params.get("tenant") or None
        tenant = None
        if key is not None:
            tenant = Tenant.objects.filter(key=key).first()
            if tenant is None:
                raise ValidationError({"tenant": [f"Unknown tenant {key!r}."]})
        tenant = tenant_for_api_key(request.auth, tenant)
        return _recipient_or_404(user_id), tenant

    def get(self, request, user_id: str, set_id: str):
        recipient, tenant = self.owner(request, user_id, set_id)
        data = preference_services.preference_set_get(recipient=recipient, tenant=tenant)
        return Response(shapes.preference_set(data, set_id))

    def put(self, request, user_id: str, set_id: str):
        recipient, tenant = self.owner(request, user_id, set_id)
        changes, merge = shapes.preference_body(request.data)
        data = preference_set_validated(changes, tenant=tenant, partial=merge)
        preference_services.preference_set_update(recipient=recipient, tenant=tenant,
                                                  data=data, merge=merge)
        data = preference_services.preference_set_get(recipient=recipient, tenant=tenant)
        return Response(shapes.preference_set(data, set_id))


def _object_key(collection: str, object_id: str) -> str:
    key = shapes.object_topic_key(collection, object_id)
    try:
        base.check_key(key)
    except ApiError as exc:
        raise ValidationError({"id": [f"{collection}:{object_id}: {exc.detail}"]}) from None
    return key


class ObjectView(KnockView):
    permission_classes = [UnrestrictedApiKey]

    def put(self, request, collection: str, object_id: str):
        """A Clarion topic keeps a name; any other property of the object is refused (422)."""
        key = _object_key(collection, object_id)
        body = request.data if isinstance(request.data, dict) else {}
        errors = {name: [shapes.UNSUPPORTED + " An object here is a topic: only its name."]
                  for name, value in body.items() if name != "name" and value is not None}
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 200):
            errors["name"] = ["Expected a name of up to 200 characters."]
        if errors:
            raise ValidationError(errors)
        existing = Topic.objects.filter(key=key).first()
        if name is None:  # Knock merges an object's properties: a name not given is kept
            name = existing.name if existing else ""
        topic, _ = services.topic_upsert(key=key, name=name,
                                         tenant=existing.tenant if existing else None)
        return Response(shapes.knock_object(topic, collection, object_id))


class ObjectSubscriptionsView(KnockView):
    permission_classes = [UnrestrictedApiKey]

    def _topic(self, collection: str, object_id: str) -> Topic:
        topic = Topic.objects.filter(key=_object_key(collection, object_id)).first()
        if topic is None:
            raise not_found("object", f"{collection}/{object_id}")
        return topic

    def _recipients(self, request) -> list:
        body = request.data if isinstance(request.data, dict) else {}
        recipients = body.get("recipients")
        if isinstance(recipients, list) and any(isinstance(r, dict) and "collection" in r
                                                for r in recipients):
            raise ValidationError({"recipients": ["Only users can subscribe to an object."]})
        if isinstance(recipients, list):
            recipients = [shapes.recipient_spec(r, f"recipients[{i}].", {})
                          for i, r in enumerate(recipients)]
        return validated(SubscriptionsSerializer, {"recipients": recipients})["recipients"]

    def post(self, request, collection: str, object_id: str):
        topic = self._topic(collection, object_id)
        specs = self._recipients(request)
        with transaction.atomic():
            recipients = services.recipient_upsert_many(specs)
            services.topic_subscribe(topic=topic, recipients=recipients.values())
        return Response(self._subscriptions(topic, collection, object_id, list(recipients)))

    def delete(self, request, collection: str, object_id: str):
        topic = self._topic(collection, object_id)
        ids = [spec["id"] if isinstance(spec, dict) else spec
               for spec in self._recipients(request)]
        removed = self._subscriptions(topic, collection, object_id, ids)
        services.topic_unsubscribe(topic=topic, external_ids=ids)
        return Response(removed)

    @staticmethod
    def _subscriptions(topic, collection, object_id, external_ids) -> list[dict]:
        rows = (Subscription.objects.select_related("recipient")
                .filter(topic=topic, recipient__external_id__in=external_ids)
                .order_by("recipient__external_id"))
        return [shapes.subscription(topic, collection, object_id, row.recipient, row.created_at)
                for row in rows]


class UnknownEndpointView(KnockView):
    """Any other path under /knock/: Knock's JSON 404."""

    authentication_classes = []
    permission_classes = []

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise not_found("endpoint", request.path)

    options = http_method_not_allowed
