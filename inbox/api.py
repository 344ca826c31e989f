"""The inbox API: the recipient's own browser reads and marks its feed (`/api/v1/inbox/`), and
the app's backend mints inbox tokens (`/api/v1/recipients/{id}/inbox-token`, server API key)."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import (
    ApiError,
    NoBodySerializer,
    error_responses,
    not_found,
    tenant_for_api_key,
    validated,
)
from notifications.models import Recipient, Tenant
from preferences import selectors as preference_selectors
from preferences import services as preference_services
from preferences.serializers import (
    PreferenceCenterSerializer,
    PreferenceSetDocSerializer,
    preference_set_validated,
)

from . import selectors, services
from . import serializers as s
from .auth import (
    TENANT_HEADER,
    InboxPrincipal,
    IsRecipient,
    RecipientAuthentication,
    inbox_token_create,
)
from .selectors import NO_TENANT

ERRORS = error_responses({
    400: "A query parameter or body field is not valid; `fields` names it.",
    401: "Missing, invalid or expired recipient credentials.",
    403: "The token or HMAC is restricted to another tenant (or, made with the global secret, "
         "to the items without a tenant).",
})


def scope_tenant(principal: InboxPrincipal, requested: Tenant | None) -> selectors.TenantScope:
    """The items a request reads: the principal's own scope when it has one (a tenant token or
    HMAC: that tenant; a global-secret HMAC: the items without a tenant), where naming another
    tenant is a 403; otherwise the tenant asked for, if any (None: every tenant)."""
    if principal.tenant is None:
        return requested
    if requested is not None and requested.pk != principal.tenant.pk:
        if principal.method == "token":
            detail = "This inbox token is restricted to another tenant."
        elif principal.tenant is NO_TENANT:
            detail = ("This HMAC was made with the global inbox secret: it opens only the items "
                      f"without a tenant. Make it with the tenant's inbox secret and send "
                      f"{TENANT_HEADER}.")
        else:
            detail = (f"This HMAC was made with the inbox secret of tenant "
                      f"'{principal.tenant.key}': it opens only that tenant's items.")
        raise ApiError(403, "forbidden", detail)
    return principal.tenant


def preference_tenant(scope: selectors.TenantScope) -> Tenant | None:
    """Whose preference set a scope acts on: a tenant's, else the person's own."""
    return None if scope is NO_TENANT else scope


class RecipientView(APIView):
    """Base of recipient-facing endpoints: inbox token or recipient HMAC, never an API key."""

    authentication_classes = [RecipientAuthentication]
    permission_classes = [IsRecipient]

    @property
    def principal(self) -> InboxPrincipal:
        return self.request.auth


class FeedView(RecipientView):
    @extend_schema(operation_id="inbox_feed", summary="The recipient's feed, newest first",
                   parameters=[s.FeedQuerySerializer], responses={200: s.FeedSerializer, **ERRORS})
    def get(self, request):
        query = validated(s.FeedQuerySerializer, request.query_params)
        tenant = scope_tenant(self.principal, query["tenant"])
        filters = selectors.FeedFilters(status=query["status"], archived=query["archived"],
                                        tenant=tenant, category=query.get("category"),
                                        tags=query["tags"])
        page = selectors.inbox_feed(recipient=self.principal.recipient, filters=filters,
                                    limit=query["limit"], after=query.get("after"),
                                    before=query.get("before"))
        meta = selectors.inbox_counts(recipient=self.principal.recipient, tenant=tenant)
        return Response({"items": page.items,
                         "page_info": {"after": page.after, "before": page.before},
                         "meta": meta})


class CountsView(RecipientView):
    @extend_schema(operation_id="inbox_counts", summary="Unread, unseen and total counts",
                   parameters=[s.TenantQuerySerializer],
                   responses={200: s.InboxCountsSerializer, **ERRORS})
    def get(self, request):
        query = validated(s.TenantQuerySerializer, request.query_params)
        tenant = scope_tenant(self.principal, query["tenant"])
        return Response(selectors.inbox_counts(recipient=self.principal.recipient, tenant=tenant))


class ItemActionView(RecipientView):
    @extend_schema(operation_id="inbox_item_mark",
                   summary="Mark one item seen, read, unread, archived, unarchived or clicked",
                   request=None, responses={200: s.InboxItemSerializer, **ERRORS,
                                            **error_responses({
                                                404: "No such item in this inbox."})})
    def post(self, request, item_id: int, action: str):
        validated(NoBodySerializer, request.data)
        item = (selectors.inbox_items_visible(recipient=self.principal.recipient,
                                              tenant=self.principal.tenant)
                .filter(pk=item_id).first())
        if item is None:
            raise not_found("inbox item", str(item_id))
        return Response(services.inbox_item_mark(item=item, action=action))


class BulkActionView(RecipientView):
    action_name = ""

    @extend_schema(request=s.BulkMarkSerializer,
                   responses={200: s.BulkResultSerializer, **ERRORS})
    def post(self, request):
        body = validated(s.BulkMarkSerializer, request.data)
        tenant = scope_tenant(self.principal, body["tenant"])
        updated = services.inbox_mark_all(recipient=self.principal.recipient, tenant=tenant,
                                          action=self.action_name, up_to=body["up_to"])
        meta = selectors.inbox_counts(recipient=self.principal.recipient, tenant=tenant)
        return Response({"updated": updated, "meta": meta})


class InboxPreferencesView(RecipientView):
    """The recipient's own PreferenceSet (Knock's shape): their set for the token's tenant (or
    for `?tenant=` with an HMAC), else their own. PATCH merges; PUT is not offered here, so a
    widget can only change what the person touched."""

    http_method_names = ["get", "patch", "head", "options"]

    def owner(self, request) -> tuple[Recipient, Tenant | None]:
        query = validated(s.TenantQuerySerializer, request.query_params)
        return self.principal.recipient, preference_tenant(
            scope_tenant(self.principal, query["tenant"]))

    @extend_schema(operation_id="inbox_preferences_retrieve",
                   summary="The recipient's preference set", parameters=[s.TenantQuerySerializer],
                   responses={200: PreferenceSetDocSerializer, **ERRORS})
    def get(self, request):
        recipient, tenant = self.owner(request)
        return Response(preference_services.preference_set_get(recipient=recipient,
                                                                tenant=tenant))

    @extend_schema(operation_id="inbox_preferences_patch",
                   summary="Merge into the recipient's preference set",
                   parameters=[s.TenantQuerySerializer], request=PreferenceSetDocSerializer,
                   responses={200: PreferenceSetDocSerializer, **ERRORS})
    def patch(self, request):
        recipient, tenant = self.owner(request)
        data = preference_set_validated(request.data, tenant=tenant, partial=True)
        preference_services.preference_set_update(recipient=recipient, tenant=tenant, merge=True,
                                                  data=data)
        return Response(preference_services.preference_set_get(recipient=recipient,
                                                                tenant=tenant))


class InboxPreferenceCenterView(RecipientView):
    """Read-only: the toggles a preferences panel shows, as they apply to the person now."""

    @extend_schema(operation_id="inbox_preference_center",
                   summary="Channels, categories and workflows with their effective on/off",
                   parameters=[s.TenantQuerySerializer],
                   responses={200: PreferenceCenterSerializer, **ERRORS})
    def get(self, request):
        query = validated(s.TenantQuerySerializer, request.query_params)
        tenant = preference_tenant(scope_tenant(self.principal, query["tenant"]))
        return Response(preference_selectors.preference_center_data(
            recipient=self.principal.recipient, tenant=tenant))


class InboxTokenView(APIView):
    """Server API (API key): a short-lived token the browser uses for one recipient's inbox."""

    @extend_schema(operation_id="recipient_inbox_token",
                   summary="Mint a short-lived inbox token for one recipient",
                   request=s.InboxTokenRequestSerializer,
                   responses={201: s.InboxTokenSerializer, **error_responses({
                       400: "Unknown tenant.",
                       401: "Missing or invalid API key.",
                       403: "A tenant key asked for another tenant.",
                       404: "No such recipient."})})
    def post(self, request, recipient_id: str):
        body = validated(s.InboxTokenRequestSerializer, request.data)
        tenant = tenant_for_api_key(request.auth, body["tenant"])
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            raise not_found("recipient", recipient_id)
        token, expires_at = inbox_token_create(recipient=recipient, tenant=tenant)
        return Response({"token": token, "expires_at": expires_at.isoformat()},
                        status=status.HTTP_201_CREATED)


class TenantInboxSecretView(APIView):
    """Server API (API key): a new inbox secret for one tenant's recipient HMACs."""

    @extend_schema(operation_id="tenant_inbox_secret_rotate",
                   summary="Rotate a tenant's inbox secret (the new one is shown once)",
                   request=s.InboxSecretRotateSerializer,
                   responses={201: s.InboxSecretSerializer, **error_responses({
                       400: "A body field is not valid.",
                       401: "Missing or invalid API key.",
                       403: "A tenant key asked for another tenant.",
                       404: "No such tenant."})})
    def post(self, request, key: str):
        if request.auth.tenant_id is not None and request.auth.tenant.key != key:
            raise ApiError(403, "forbidden", "This API key is restricted to another tenant.")
        body = validated(s.InboxSecretRotateSerializer, request.data)
        tenant = Tenant.objects.filter(key=key).first()
        if tenant is None:
            raise not_found("tenant", key)
        secret = services.tenant_inbox_secret_rotate(
            tenant=tenant, keep_previous_seconds=body.get("keep_previous_seconds"))
        expires = tenant.inbox_previous_secret_expires_at
        return Response({"secret": secret, "rotated_at": tenant.inbox_secret_rotated_at.isoformat(),
                         "previous_expires_at": expires.isoformat() if expires else None},
                        status=status.HTTP_201_CREATED)
