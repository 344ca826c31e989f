"""What the Knock and Novu adapters share: a view base whose errors take the vendor's shape,
and the translation of Clarion's error paths into the vendor's field names."""

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from rest_framework import exceptions
from rest_framework.exceptions import ValidationError
from rest_framework.views import APIView

from clarion.api import (
    ApiError,
    check_key,
    exception_handler,
    flatten,
    tenant_for_api_key,
    validated,
)
from notifications import idempotency, services
from notifications.api import triggers
from notifications.api.auth import UnrestrictedApiKey
from notifications.api.serializers import TriggerSerializer
from notifications.models import Workflow


class CompatView(APIView):
    """An APIView of a vendor-compatible API: out of Clarion's OpenAPI schema (the vendor
    documents it), its errors shaped by `error_body(exc, status, request)`."""

    schema = None
    error_body: Callable = None  # set by each vendor's base view

    def get_exception_handler(self):
        view = self

        def handler(exc, context):
            response = exception_handler(exc, context)
            if response is None:
                return None
            status, body = type(view).error_body(exc, response.status_code, context["request"])
            response.status_code = status
            response.data = body
            return response

        return handler


def renamed(path: str, top: Mapping[str, str], nested: Mapping[str, str]) -> str:
    """A Clarion error path (`recipients[1].phone`) in the vendor's words: its first name
    looked up in `top`, every later one in `nested` (`to[1].phone`,
    `recipients[1].phone_number`)."""
    def swap(match):
        name = match.group(2)
        names = top if match.start() == 0 else nested
        return match.group(1) + names.get(name, name)

    return re.sub(r"(^|\.)([A-Za-z_]+)", swap, path)


def field_errors(exc: exceptions.ValidationError, top: Mapping[str, str],
                 nested: Mapping[str, str]) -> dict[str, list]:
    """A ValidationError's problems as {vendor path: [messages]}."""
    return {renamed(path, top, nested): messages
            for path, messages in flatten(exc.detail).items()}


def iso(moment: datetime | None) -> str | None:
    """A time as both vendors write it: ISO 8601 in UTC with `Z`."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- Triggering through Clarion's own service -------------------------------------------------

def active_workflow(key: str) -> Workflow:
    """The workflow `key`, as Clarion's own trigger checks it (notifications.api.triggers):
    raises NotFound (404), or ApiError 422 "workflow_inactive" or "workflow_not_published"
    (its first draft, e.g. an Editor's, waits for a Publisher)."""
    return triggers.active_workflow(key)



def _names_profiles(data: Mapping) -> bool:
    specs = [*data["recipients"], data["actor"]]
    return any(isinstance(spec, dict) and "topic" not in spec and set(spec) - {"id"}
               for spec in specs)


def trigger(*, request, workflow: Workflow, body: Mapping, idempotency_key: str | None,
            fingerprint: object) -> services.TriggerResponse:
    """Validate a Clarion trigger `body` (translated from the vendor's) exactly as
    POST /api/v1/workflows/{key}/trigger does, and trigger it through
    `services.trigger_workflow_idempotent` (the same transaction, idempotency and fan-out).

    Raises ValidationError (the body's problems), ApiError 403 (a tenant-restricted key naming
    profiles or another tenant), 409 (the Idempotency-Key is in use), 422 (reused with another
    request)."""
    data = validated(TriggerSerializer, body, workflow=workflow,
                     context={"api_key": request.auth})
    tenant = tenant_for_api_key(request.auth, data["tenant"])
    if request.auth.tenant_id is not None and _names_profiles(data):
        raise ApiError(403, "forbidden", UnrestrictedApiKey.message)
    trigger_request = services.TriggerRequest(
        workflow=workflow, recipients=data["recipients"], data=data["data"],
        actor=data["actor"], tenant=tenant, cancellation_key=data["cancellation_key"],
        api_key=request.auth,
    )
    try:
        return services.trigger_workflow_idempotent(
            request=trigger_request, idempotency_key=idempotency_key,
            request_fingerprint=fingerprint)
    except idempotency.IdempotencyMismatch:
        raise ApiError(422, "idempotency_key_reused",
                       "This Idempotency-Key was used with a different request.") from None
    except idempotency.IdempotencyConflict:
        raise ApiError(409, "idempotency_key_in_use",
                       "A request with this Idempotency-Key is still being processed.") from None


def idempotency_key_of(request) -> str | None:
    """The request's Idempotency-Key header (1 to 255 characters), or None."""
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 255:
        raise ValidationError({"Idempotency-Key": ["Expected 1 to 255 characters."]})
    return key


def tenant_inline_upsert(request, fields: Mapping) -> None:
    """A tenant named inline in a trigger ({"key", "name"}): created or renamed as the vendor
    does, by an unrestricted key only (a tenant's key may name only its own tenant)."""
    if request.auth.tenant_id is not None:
        return  # tenant_for_api_key refuses any other tenant
    try:
        check_key(fields["key"])
    except ApiError as exc:
        raise ValidationError({"tenant": [str(exc.detail)]}) from None
    services.tenant_upsert(key=fields["key"], name=fields["name"])
