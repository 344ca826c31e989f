"""`/api/v1/providers/{key}`: read, create or replace, and delete a provider (ProviderConfig).

Credentials go in whole and come back masked (`••••` and the last four characters; senders
whole). A PUT that leaves a credential out, or sends it back masked, keeps the stored value.
A tenant-restricted API key sees and manages only its own tenant's providers.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import ERRORS, ApiError, Serializer, TenantKeyField, check_key, not_found

from ..channels import PROVIDER_CHANNELS
from ..models import ProviderConfig
from .base import ConfigurationError
from .services import masked_credentials, provider_config_delete, provider_config_put


class CircuitSerializer(Serializer):
    state = serializers.ChoiceField(choices=["closed", "open"])
    consecutive_failures = serializers.IntegerField()
    open_until = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()


class ProviderSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    channel = serializers.ChoiceField(choices=PROVIDER_CHANNELS)
    kind = serializers.CharField(max_length=64)
    priority = serializers.IntegerField(min_value=0, max_value=32767, required=False, default=1)
    active = serializers.BooleanField(required=False, default=True)
    tenant = TenantKeyField()
    credentials = serializers.DictField(required=False, default=None, allow_null=True,
                                        help_text="Write whole; read back masked.")
    options = serializers.DictField(required=False, default=dict)
    circuit = CircuitSerializer(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


def provider_detail(config: ProviderConfig) -> dict:
    return {
        "key": config.key, "channel": config.channel, "kind": config.kind,
        "priority": config.priority, "active": config.active,
        "tenant": config.tenant.key if config.tenant_id else None,
        "credentials": masked_credentials(config), "options": config.options,
        "circuit": {"state": "open" if config.circuit_open_until else "closed",
                    "consecutive_failures": config.consecutive_failures,
                    "open_until": config.circuit_open_until, "last_error": config.last_error},
        "created_at": config.created_at, "updated_at": config.updated_at,
    }


class ProviderView(APIView):
    def _visible(self, request, key: str) -> ProviderConfig:
        config = ProviderConfig.objects.select_related("tenant").filter(key=key).first()
        if config is None or (request.auth.tenant_id is not None
                              and config.tenant_id != request.auth.tenant_id):
            raise not_found("provider", key)
        return config

    @extend_schema(operation_id="provider_retrieve", summary="A provider (credentials masked)",
                   responses={200: ProviderSerializer, **ERRORS})
    def get(self, request, key: str):
        return Response(provider_detail(self._visible(request, key)))

    @extend_schema(operation_id="provider_put", summary="Create or replace a provider",
                   request=ProviderSerializer,
                   responses={200: ProviderSerializer, 201: ProviderSerializer, **ERRORS})
    def put(self, request, key: str):
        check_key(key)
        serializer = ProviderSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        existing = ProviderConfig.objects.filter(key=key).first()
        own = request.auth.tenant_id
        if own is not None:
            if existing is not None and existing.tenant_id != own:
                raise not_found("provider", key)
            if data["tenant"] is not None and data["tenant"].pk != own:
                raise ApiError(403, "forbidden", "This API key is restricted to another tenant.")
            data["tenant"] = request.auth.tenant
            # Where a provider connects (base URLs, endpoints, CA files) is the operator's call:
            # a tenant's key that could set it would make our workers call its chosen address,
            # inside our network (SSRF), and read the answer back in the timeline.
            refused = {name: ["A tenant-restricted API key cannot set where a provider "
                              "connects; ask an operator to set this option."]
                       for name, value in (data.get("options") or {}).items()
                       if _is_address_option(name)
                       and (existing is None or (existing.options or {}).get(name) != value)}
            if refused:
                raise serializers.ValidationError({"options": refused})
        try:
            config, created = provider_config_put(key=key, **data)
        except ConfigurationError as exc:
            raise serializers.ValidationError(exc.fields) from exc
        return Response(provider_detail(config),
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="provider_delete", summary="Delete a provider",
                   responses={204: None, **ERRORS})
    def delete(self, request, key: str):
        provider_config_delete(config=self._visible(request, key))
        return Response(status=status.HTTP_204_NO_CONTENT)


ADDRESS_OPTION_WORDS = ("url", "uri", "endpoint", "host", "file", "path")


def _is_address_option(name: str) -> bool:
    """Options that name a network address or a file: base_url, api_url, endpoint_url,
    token_uri, ca_file…"""
    return any(word in name.lower() for word in ADDRESS_OPTION_WORDS)
