"""`Authorization: Bearer <api key>` for the server API."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from clarion.audit import audit_api_key_bind

from ..models import ApiKey
from ..services import api_key_authenticate


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """A Clarion API key after `keyword`: Bearer (the Novu-compatible API's subclass: ApiKey)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not secret.strip():
            raise exceptions.AuthenticationFailed(
                f"Expected 'Authorization: {self.keyword} <api key>'.")
        api_key = api_key_authenticate(secret=secret.strip())
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        audit_api_key_bind(api_key)
        return (None, api_key)

    def authenticate_header(self, request):
        return self.keyword


class HasApiKey(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.auth, ApiKey)


class UnrestrictedApiKey(permissions.BasePermission):
    """Global resources (recipients, workflows, topics) need a key not tied to one tenant."""

    message = "This API key is restricted to one tenant and cannot manage global resources."

    def has_permission(self, request, view):
        return isinstance(request.auth, ApiKey) and request.auth.tenant_id is None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A Clarion API key secret."}
