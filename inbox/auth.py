"""Recipient authentication for the inbox: a short-lived signed token, or recipient id + HMAC.

The app's backend mints a token (`POST /api/v1/recipients/{id}/inbox-token`, server API key), or
computes `HMAC-SHA256(INBOX_HMAC_SECRET, recipient id)` itself; the browser presents either one.
The same check serves the REST feed (`RecipientAuthentication` + `IsRecipient`, reusable by any
recipient-facing endpoint) and the websocket (`inbox_principal`).
"""

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import unquote

from django.conf import settings
from django.core import signing
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from notifications.models import Recipient, Tenant

TOKEN_SALT = "clarion.inbox.token"
RECIPIENT_HEADER = "X-Clarion-Recipient"
HMAC_HEADER = "X-Clarion-Hmac"


@dataclass(frozen=True)
class InboxPrincipal:
    """Who is reading an inbox: one recipient, and the one tenant a token was minted for
    (None: every tenant's items; the `tenant` filter may narrow them)."""

    recipient: Recipient
    tenant: Tenant | None
    method: str  # "token" or "hmac"


def inbox_hmac(recipient_id: str) -> str:
    """HMAC-SHA256(INBOX_HMAC_SECRET, recipient id), hex: what an app's backend computes."""
    return hmac.new(settings.INBOX_HMAC_SECRET.encode(), recipient_id.encode(),
                    hashlib.sha256).hexdigest()


def inbox_token_create(*, recipient: Recipient,
                       tenant: Tenant | None = None) -> tuple[str, datetime]:
    """A signed token for one recipient (and optionally one tenant), and when it expires
    (INBOX_TOKEN_TTL_SECONDS after now)."""
    payload = {"r": recipient.external_id, "t": tenant.key if tenant else None}
    token = signing.TimestampSigner(salt=TOKEN_SALT).sign_object(payload)
    return token, timezone.now() + timedelta(seconds=settings.INBOX_TOKEN_TTL_SECONDS)


def _token_claims(token: str) -> dict | None:
    try:
        claims = signing.TimestampSigner(salt=TOKEN_SALT).unsign_object(
            token, max_age=settings.INBOX_TOKEN_TTL_SECONDS)
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        return None
    if not isinstance(claims, dict) or not isinstance(claims.get("r"), str):
        return None
    return claims


def inbox_principal(*, token: str | None = None, recipient_id: str | None = None,
                    signature: str | None = None) -> InboxPrincipal | None:
    """The principal for a token, or for a recipient id and its HMAC; None if neither is valid
    (bad signature, expired token, unknown recipient or tenant)."""
    if token:
        claims = _token_claims(token)
        if claims is None:
            return None
        recipient = Recipient.objects.filter(external_id=claims["r"]).first()
        tenant = None
        if claims.get("t") is not None:
            tenant = Tenant.objects.filter(key=claims["t"]).first()
            if tenant is None:
                return None
        return InboxPrincipal(recipient, tenant, "token") if recipient else None
    if recipient_id and signature:
        # Bytes, not str: compare_digest refuses non-ASCII text (a 500 otherwise).
        if not hmac.compare_digest(inbox_hmac(recipient_id).encode(),
                                   signature.strip().lower().encode()):
            return None
        recipient = Recipient.objects.filter(external_id=recipient_id).first()
        return InboxPrincipal(recipient, None, "hmac") if recipient else None
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
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise exceptions.AuthenticationFailed(
                    "Expected 'Authorization: Bearer <inbox token>'.")
            principal = inbox_principal(token=token.strip())
            if principal is None:
                raise exceptions.AuthenticationFailed("Invalid or expired inbox token.")
            return (None, principal)
        if recipient_id or signature:
            if not (recipient_id and signature):
                raise exceptions.AuthenticationFailed(
                    f"Send both {RECIPIENT_HEADER} and {HMAC_HEADER}.")
            principal = inbox_principal(recipient_id=recipient_id, signature=signature)
            if principal is None:
                raise exceptions.AuthenticationFailed("Invalid recipient HMAC.")
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
                f"the headers {RECIPIENT_HEADER} and {HMAC_HEADER} "
                "(HMAC-SHA256 of the recipient id with the inbox secret, hex)."}
