"""Server API: event endpoints.

    GET    /api/v1/event-endpoints
    GET    /api/v1/event-endpoints/{id}
    PUT    /api/v1/event-endpoints/{id}   {"url", "events": [...], "tenant"?}
    DELETE /api/v1/event-endpoints/{id}

The signing secret (`whsec_…`) is in the answer to the PUT that creates an endpoint, and never
again. A tenant-restricted API key sees and manages only its tenant's endpoints, and the ones it
creates are its tenant's.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import (
    ERRORS,
    Serializer,
    TenantKeyField,
    check_key,
    not_found,
    tenant_for_api_key,
    validated,
)

from . import services
from .models import EVENT_TYPES, EventEndpoint


class EventEndpointSerializer(Serializer):
    id = serializers.CharField(read_only=True)
    url = serializers.CharField(max_length=2000)
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES),
                                   allow_empty=False, max_length=len(EVENT_TYPES))
    tenant = TenantKeyField()
    active = serializers.BooleanField(read_only=True)
    disabled_at = serializers.DateTimeField(read_only=True, allow_null=True)
    disabled_reason = serializers.CharField(read_only=True)
    secret = serializers.CharField(
        read_only=True, required=False,
        help_text="Only in the answer that creates the endpoint: keep it, it is not shown again.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


class EventEndpointListSerializer(Serializer):
    results = EventEndpointSerializer(many=True)


def endpoint_detail(endpoint: EventEndpoint, secret: str | None = None) -> dict:
    body = {"id": endpoint.key, "url": endpoint.url, "events": endpoint.events,
            "tenant": endpoint.tenant.key if endpoint.tenant_id else None,
            "active": endpoint.active, "disabled_at": endpoint.disabled_at,
            "disabled_reason": endpoint.disabled_reason,
            "created_at": endpoint.created_at, "updated_at": endpoint.updated_at}
    if secret:
        body["secret"] = secret
    return body


def _visible(request):
    endpoints = EventEndpoint.objects.select_related("tenant")
    if request.auth.tenant_id is not None:
        endpoints = endpoints.filter(tenant_id=request.auth.tenant_id)
    return endpoints


class EventEndpointListView(APIView):
    @extend_schema(operation_id="event_endpoint_list", summary="Event endpoints",
                   responses={200: EventEndpointListSerializer, **ERRORS})
    def get(self, request):
        return Response({"results": [endpoint_detail(e) for e in _visible(request)]})


class EventEndpointView(APIView):
    def _endpoint(self, request, endpoint_id: str) -> EventEndpoint:
        endpoint = _visible(request).filter(key=endpoint_id).first()
        if endpoint is None:
            raise not_found("event endpoint", endpoint_id)
        return endpoint

    @extend_schema(operation_id="event_endpoint_retrieve", summary="An event endpoint",
                   responses={200: EventEndpointSerializer, **ERRORS})
    def get(self, request, endpoint_id: str):
        return Response(endpoint_detail(self._endpoint(request, endpoint_id)))

    @extend_schema(
        operation_id="event_endpoint_put", summary="Create or replace an event endpoint",
        description="The answer that creates it carries its signing secret (`whsec_…`), "
        "shown once. URLs must be https:// to a public address.",
        request=EventEndpointSerializer,
        responses={200: EventEndpointSerializer, 201: EventEndpointSerializer, **ERRORS})
    def put(self, request, endpoint_id: str):
        check_key(endpoint_id)
        data = validated(EventEndpointSerializer, request.data)
        tenant = tenant_for_api_key(request.auth, data["tenant"])
        existing = EventEndpoint.objects.filter(key=endpoint_id).first()
        if existing is not None and request.auth.tenant_id not in (None, existing.tenant_id):
            raise not_found("event endpoint", endpoint_id)
        try:
            endpoint, secret = services.endpoint_put(key=endpoint_id, url=data["url"],
                                                     events=data["events"], tenant=tenant)
        except services.EndpointError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        return Response(endpoint_detail(endpoint, secret),
                        status=status.HTTP_201_CREATED if secret else status.HTTP_200_OK)

    @extend_schema(operation_id="event_endpoint_delete", summary="Delete an event endpoint",
                   description="Its pending deliveries are dropped.",
                   responses={204: None, **ERRORS})
    def delete(self, request, endpoint_id: str):
        self._endpoint(request, endpoint_id).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
