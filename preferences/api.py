"""Server API: a recipient's preferences, and a tenant's defaults (Knock's PreferenceSet JSON).

    GET/PUT/PATCH /api/v1/recipients/{id}/preferences[?tenant=key]
    GET/PUT/PATCH /api/v1/tenants/{key}/preferences

PUT replaces the set, PATCH merges into it. A tenant-restricted API key reads and writes only
its tenant's sets (a recipient's set for that tenant, and that tenant's defaults).

The inbox's recipient-side `GET/PATCH /api/v1/inbox/preferences` (inbox/api.py) reads and
writes the same sets through the same services, validator (`preference_set_validated`) and
selector (`selectors.preference_center_data`, what its preferences panel shows).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import error_responses, not_found, tenant_for_api_key
from notifications.models import Recipient, Tenant

from . import services
from .serializers import PreferenceSetDocSerializer, preference_set_validated

ERRORS = error_responses({
    400: "The body is not valid; `fields` names each bad field.",
    401: "Missing, unknown or revoked API key.",
    403: "The key is restricted to another tenant.",
    404: "No such recipient or tenant.",
})
TENANT = OpenApiParameter(
    "tenant", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
    description="A tenant key: the person's preferences for that tenant, which win over their "
    "own. Tenant-restricted keys always act for their tenant.")


class PreferenceSetView(APIView):
    """GET, PUT (replace) and PATCH (merge) of one PreferenceSet."""

    def owner(self, request, **kwargs) -> tuple[Recipient | None, Tenant | None]:
        raise NotImplementedError

    def get(self, request, **kwargs):
        recipient, tenant = self.owner(request, **kwargs)
        return Response(services.preference_set_get(recipient=recipient, tenant=tenant))

    def put(self, request, **kwargs):
        return self._write(request, merge=False, **kwargs)

    def patch(self, request, **kwargs):
        return self._write(request, merge=True, **kwargs)

    def _write(self, request, *, merge: bool, **kwargs):
        recipient, tenant = self.owner(request, **kwargs)
        data = preference_set_validated(request.data, tenant=tenant, partial=merge)
        services.preference_set_update(recipient=recipient, tenant=tenant, merge=merge, data=data)
        return Response(services.preference_set_get(recipient=recipient, tenant=tenant))


def _documented(owner: str, parameters=()):
    """extend_schema for GET, PUT and PATCH of `owner`'s set."""
    common = {"parameters": list(parameters)}
    return (
        extend_schema(operation_id=f"{owner}_preferences_retrieve", **common,
                      summary=f"The {owner}'s preference set",
                      responses={200: PreferenceSetDocSerializer, **ERRORS}),
        extend_schema(operation_id=f"{owner}_preferences_put", **common,
                      summary=f"Replace the {owner}'s preference set",
                      request=PreferenceSetDocSerializer,
                      responses={200: PreferenceSetDocSerializer, **ERRORS}),
        extend_schema(operation_id=f"{owner}_preferences_patch", **common,
                      summary=f"Merge into the {owner}'s preference set",
                      request=PreferenceSetDocSerializer,
                      responses={200: PreferenceSetDocSerializer, **ERRORS}),
    )


RECIPIENT_DOCS = _documented("recipient", [TENANT])
TENANT_DOCS = _documented("tenant")


class RecipientPreferencesView(PreferenceSetView):
    def owner(self, request, recipient_id: str):
        key = request.query_params.get("tenant") or None
        tenant = None
        if key is not None:
            tenant = Tenant.objects.filter(key=key).first()
            if tenant is None:
                raise ValidationError({"tenant": [f"Unknown tenant {key!r}."]})
        tenant = tenant_for_api_key(request.auth, tenant)
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            raise not_found("recipient", recipient_id)
        return recipient, tenant

    @RECIPIENT_DOCS[0]
    def get(self, request, **kwargs):
        return super().get(request, **kwargs)

    @RECIPIENT_DOCS[1]
    def put(self, request, **kwargs):
        return super().put(request, **kwargs)

    @RECIPIENT_DOCS[2]
    def patch(self, request, **kwargs):
        return super().patch(request, **kwargs)


class TenantPreferencesView(PreferenceSetView):
    def owner(self, request, key: str):
        tenant = Tenant.objects.filter(key=key).first()
        if tenant is None or request.auth.tenant_id not in (None, tenant.pk):
            raise not_found("tenant", key)
        return None, tenant

    @TENANT_DOCS[0]
    def get(self, request, **kwargs):
        return super().get(request, **kwargs)

    @TENANT_DOCS[1]
    def put(self, request, **kwargs):
        return super().put(request, **kwargs)

    @TENANT_DOCS[2]
    def patch(self, request, **kwargs):
        return super().patch(request, **kwargs)
