"""Recipient authentication for the inbox: a short-lived signed token, or recipient id + HMAC.

The app's backend mints a token (`POST /api/v1/recipients/{id}/inbox-token`, server API key), or
computes `HMAC-SHA256(inbox secret, recipient id)` itself; the browser presents either one. Each
tenant has its own inbox secret (rotated with `inbox.services.tenant_inbox_secret_rotate`): an
HMAC made with it, presented with the tenant's key, opens only that tenant's items. The global
INBOX_HMAC_SECRET opens only the items without a tenant. The same check serves the REST feed
(`RecipientAuthentication` + `IsRecipient`, reusable by any recipient-facing endpoint) and the
websocket (`inbox_principal`).
"""

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from django.conf import settings
from django.core import signing
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from clarion.audit import audit_recipient_bind
from notifications.models import Recipient, Tenant

from .selectors import NO_TENANT, TenantScope

logger = logging.getLogger(__name__)

TOKEN_SALT = "clarion.inbox.token"
RECIPIENT_HEADER = "X-Clarion-Recipient"
HMAC_HEADER = "X-Clarion-Hmac"
TENANT_HEADER = "X-Clarion-Tenant"


@dataclass(frozen=True)
class InboxPrincipal:
    """Who is reading an inbox: one recipient, the items it may see (`tenant`: a Tenant, its
    items only; NO_TENANT, the items without a tenant; None, every item, which the `tenant`
    filter may narrow), and when its credential stops working (None: never)."""

    recipient: Recipient
    tenant: TenantScope
    method: str  # "token" or "hmac"
    expires_at: datetime | None = None
    secret_fingerprint: str | None = None  # of the tenant secret an HMAC was made with


def secret_fingerprint(secret: str) -> str:
    """A short name of an inbox secret that says nothing about it (a rotation tells open sockets
    which secrets are still accepted by these)."""
    return hashlib.sha256(f"clarion.inbox.secret:{secret}".encode()).hexdigest()[:16]


def inbox_hmac(recipient_id: str, secret: str | None = None) -> str:
    """HMAC-SHA256(secret, recipient id), hex: what an app's backend computes. `secret` is a
    tenant's inbox secret; by default the global INBOX_HMAC_SECRET (items without a tenant)."""
    key = settings.INBOX_HMAC_SECRET if secret is None else secret
    return hmac.new(key.encode(), recipient_id.encode(), hashlib.sha256).hexdigest()


def tenant_inbox_secrets(tenant: Tenant, *, now: datetime | None = None,
                         ) -> list[tuple[str, datetime | None]]:
    """The tenant's inbox secrets accepted at `now` (aware; default: now), as (secret, accepted
    until): the current one (None: no end), and the previous one during its rotation window.
    [] before the first secret, or if CLARION_ENCRYPTION_KEY cannot decrypt them (logged)."""
    now = now or timezone.now()
    try:
        stored = tenant.inbox_secrets
    except ValueError:
        logger.error("inbox: the inbox secrets of tenant %s cannot be decrypted", tenant.key)
        return []
    accepted = [(stored["current"], None)] if stored.get("current") else []
    until = tenant.inbox_previous_secret_expires_at
    if stored.get("previous") and until is not None and now < until:
        accepted.append((stored["previous"], until))
    return accepted


def inbox_token_create(*, recipient: Recipient,
                       tenant: Tenant | None = None) -> tuple[str, datetime]:
    """A signed token for one recipient (and optionally one tenant), and when it expires
    (INBOX_TOKEN_TTL_SECONDS after now)."""
    payload = {"r": recipient.external_id, "t": tenant.key if tenant else None}
    token = signing.TimestampSigner(salt=TOKEN_SALT).sign_object(payload)
    return token, timezone.now() + timedelta(seconds=settings.INBOX_TOKEN_TTL_SECONDS)


def _token_claims(token: str) -> tuple[dict, datetime] | None:
    """The token's claims and when it expires; None if it is forged, malformed or expired."""
    signer = signing.TimestampSigner(salt=TOKEN_SALT)
    try:
        claims = signer.unsign_object(token, max_age=settings.INBOX_TOKEN_TTL_SECONDS)
        # Signed as "<payload>:<timestamp>:<signature>"; the signature was just checked.
        signed_at = signing.b62_decode(token.rsplit(signer.sep, 2)[1])
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("r"), str):
        return None
    expires_at = (datetime.fromtimestamp(signed_at, tz=UTC)
                  + timedelta(seconds=settings.INBOX_TOKEN_TTL_SECONDS))
    return claims, expires_at


def _hmac_scope(tenant_key: str | None, now: datetime,
                ) -> tuple[TenantScope, list[tuple[str, datetime | None]]] | None:
    """The scope an HMAC opens and the secrets it may be made with; None for an unknown tenant."""
    if not tenant_key:
        return NO_TENANT, [(settings.INBOX_HMAC_SECRET, None)]
    tenant = Tenant.objects.filter(key=tenant_key).first()
    if tenant is None:
        return None
    return tenant, tenant_inbox_secrets(tenant, now=now)


def inbox_principal(*, token: str | None = None, recipient_id: str | None = None,
                    signature: str | None = None, tenant_key: str | None = None,
                    now: datetime | None = None) -> InboxPrincipal | None:
    """The principal for a token, or for a recipient id and its HMAC (made with the inbox secret
    of tenant `tenant_key`, or with the global secret when it is empty), checked at `now`
    (aware; default: now). None if neither is valid: bad signature, expired token, unknown
    recipient or tenant, a tenant without an inbox secret, a secret rotated out."""
    if token:
        checked = _token_claims(token)
        if checked is None:
            return None
        claims, expires_at = checked
        recipient = Recipient.objects.filter(external_id=claims["r"]).first()
        tenant = None
        if claims.get("t") is not None:
            tenant = Tenant.objects.filter(key=claims["t"]).first()
            if tenant is None:
                return None
        return InboxPrincipal(recipient, tenant, "token", expires_at) if recipient else None
    if recipient_id and signature:
        scope = _hmac_scope(tenant_key, now or timezone.now())
        if scope is None:
            return None
        tenant, accepted = scope
        # Bytes, not str: compare_digest refuses non-ASCII text (a 500 otherwise).
        presented = signature.strip().lower().encode()
        matches = [(secret, until) for secret, until in accepted
                   if hmac.compare_digest(inbox_hmac(recipient_id, secret).encode(), presented)]
        if not matches:
            return None
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        if recipient is None:
            return None
        secret, until = matches[0]
        return InboxPrincipal(recipient, tenant, "hmac", until, secret_fingerprint(secret))
    return None


class RecipientAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <inbox token>`, or the headers `X-Clarion-Recipient: <id>` (the id
    percent-encoded, UTF-8: `encodeURIComponent(id)`) and `X-Clarion-Hmac: <hex>`. Sets
    request.auth to an InboxPrincipal."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        recipient_id = request.headers.get(RECIPIENT_HEADER)
        if recipient_id:  # percent-encoded as in a URL path: headers carry Latin-1 only
            recipient_id = unquote(recipient_id)
        signature = request.headers.get(HMAC_HEADER)
        tenant_key = request.headers.get(TENANT_HEADER)
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise exceptions.AuthenticationFailed(
                    "Expected 'Authorization: Bearer <inbox token>'.")
            principal = inbox_principal(token=token.strip())
            if principal is None:
                raise exceptions.AuthenticationFailed("Invalid or expired inbox token.")
            audit_recipient_bind(principal.recipient.external_id, via="inbox API")
            return (None, principal)
        if recipient_id or signature:
            if not (recipient_id and signature):
                raise exceptions.AuthenticationFailed(
                    f"Send both {RECIPIENT_HEADER} and {HMAC_HEADER}.")
            principal = inbox_principal(recipient_id=recipient_id, signature=signature,
                                        tenant_key=tenant_key)
            if principal is None:
                raise exceptions.AuthenticationFailed("Invalid recipient HMAC.")
            audit_recipient_bind(principal.recipient.external_id, via="inbox API")
            return (None, principal)
        return None

    def authenticate_header(self, request):
        return self.keyword


class IsRecipient(permissions.BasePermission):
    """The request carries a valid recipient credential (token or HMAC)."""

    def has_permission(self, request, view):
        return isinstance(request.auth, InboxPrincipal)


class RecipientScheme(OpenApiAuthenticationExtension):
    target_class = RecipientAuthentication
    name = "InboxRecipient"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An inbox token from POST /api/v1/recipients/{id}/inbox-token, or "
                f"the headers {RECIPIENT_HEADER} and {HMAC_HEADER} (HMAC-SHA256 of the "
                "recipient id, hex, with the inbox secret of the tenant named in "
                f"{TENANT_HEADER}, or without that header with the global secret, which opens "
                "only the items without a tenant)."}
