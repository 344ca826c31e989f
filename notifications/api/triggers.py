"""Triggering a workflow from a request body: what the REST trigger, the bulk trigger and the
MCP server's `trigger_workflow` and `notify` tools share, so each validates and answers alike."""

import copy

from django.db import connection
from django.urls import reverse

from clarion.api import ApiError, not_found, tenant_for_api_key, validated_reusing
from clarion.db import prepared_cursor

from .. import idempotency, services
from ..models import ApiKey, Workflow
from ..ratelimit import trigger_rate_limit_hit
from ..workflow_versions import is_unpublished
from .auth import UnrestrictedApiKey


def names_profiles(trigger: dict) -> bool:
    """Whether a trigger carries recipient profiles (more than an "id") to upsert."""
    specs = [*trigger["recipients"], trigger["actor"]]
    return any(isinstance(spec, dict) and "topic" not in spec and set(spec) - {"id"}
               for spec in specs)


# workflow key → the row as last read by this process (published workflows only)
_workflows: dict[str, Workflow] = {}


def _unchanged(workflow: Workflow) -> bool:
    """Whether the workflow's row still has the `updated_at` this process read (every write to
    a workflow's row through its services sets it), and is still active with the same published
    version (also after a bulk UPDATE that left `updated_at` alone): one indexed read, no row
    built."""
    meta, ops = Workflow._meta, connection.ops
    checked = [(meta.pk, workflow.pk), (meta.get_field("updated_at"), workflow.updated_at),
               (meta.get_field("active"), True),
               (meta.get_field("published_version"), workflow.published_version_id)]
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {ops.quote_name(meta.db_table)} WHERE "
            + " AND ".join(f"{ops.quote_name(field.column)} = %s" for field, _ in checked),
            [field.get_db_prep_value(value, connection) for field, value in checked])
        return cursor.fetchone() is not None


def active_workflow(key: str) -> Workflow:
    """The workflow `key` (this request's own copy); raises ApiError 404 when there is none, 422
    when it is inactive or its first draft is not published yet.

    A published workflow's row is kept by the process and used again while its `updated_at` is
    unchanged (one cheap read instead of the row): a publish or any edit is seen at once."""
    kept = _workflows.get(key)
    if kept is not None and _unchanged(kept):
        return copy.copy(kept)
    workflow = Workflow.objects.filter(key=key).first()
    if workflow is None:
        _workflows.pop(key, None)
        raise not_found("workflow", key)
    if not workflow.active:
        raise ApiError(422, "workflow_inactive", f"The workflow {key!r} is not active.")
    check_published(workflow)
    if workflow.published_version_id is not None:
        _workflows[key] = copy.copy(workflow)
    else:  # its versions decide (is_unpublished), which its row does not show
        _workflows.pop(key, None)
    return workflow


def check_published(workflow: Workflow) -> None:
    """Raise ApiError 422 "workflow_not_published" for a workflow whose first draft (e.g. an
    Editor's builder save or JSON import) is not published yet: nothing may run it. Every
    trigger route checks it (REST, bulk, MCP, Knock, Novu; schedules skip it)."""
    if workflow.published_version_id is None and is_unpublished(workflow):
        raise ApiError(422, "workflow_not_published",
                       f"The workflow {workflow.key!r} has a draft but was never published: a "
                       "Publisher publishes it in the admin.")


def check_idempotency_key(idempotency_key: str | None) -> None:
    """Raise ApiError 400 unless `idempotency_key` is None or 1 to 255 characters."""
    if idempotency_key is not None and not 0 < len(idempotency_key) <= 255:
        raise ApiError(400, "invalid_request", "Idempotency-Key must have 1 to 255 characters.")


def trigger_rate_limit(api_key: ApiKey) -> None:
    """Count one trigger call against the key's CLARION["TRIGGER_RATE_LIMIT"] (the REST
    trigger's throttle counts the same counter); raises ApiError 429 past it."""
    verdict = trigger_rate_limit_hit(api_key_prefix=api_key.prefix)
    if not verdict.allowed:
        raise ApiError(429, "rate_limited", f"Too many trigger calls with this API key; retry "
                                            f"in {verdict.retry_after} seconds.")


def trigger_one(api_key: ApiKey, workflow: Workflow, serializer_class, body, *,
                idempotency_key: str | None) -> services.TriggerResponse:
    """Validate one trigger body with `serializer_class` (TriggerSerializer or its bulk item) and
    trigger it, idempotently with `idempotency_key`.

    Returns the TriggerResponse (202 body, or the first response replayed). Raises DRF's
    ValidationError (400 naming each field) and ApiError: 403 (a tenant-restricted key naming
    another tenant or rewriting profiles), 409 (the key still in use), 422 (the key reused with
    another body)."""
    data = validated_reusing(serializer_class, body, workflow=workflow,
                             context={"api_key": api_key})
    tenant = tenant_for_api_key(api_key, data["tenant"])
    if api_key.tenant_id is not None and names_profiles(data):
        # Recipients are global: a tenant's key may name them, not rewrite their profiles.
        raise ApiError(403, "forbidden", UnrestrictedApiKey.message)
    trigger_request = services.TriggerRequest(
        workflow=workflow, recipients=data["recipients"], data=data["data"],
        actor=data["actor"], tenant=tenant, cancellation_key=data["cancellation_key"],
        api_key=api_key,
    )
    # The single trigger's path and body: a bulk item with the same key and body replays it.
    if isinstance(body, dict):
        body = {name: value for name, value in body.items() if name != "idempotency_key"}
    fingerprint = [reverse("workflow-trigger", args=[workflow.key]), body]
    try:
        return services.trigger_workflow_idempotent(
            request=trigger_request, idempotency_key=idempotency_key,
            request_fingerprint=fingerprint)
    except idempotency.IdempotencyMismatch:
        raise ApiError(422, "idempotency_key_reused",
                       "This Idempotency-Key was used with a different request.") from None
    except idempotency.IdempotencyConflict:
        raise ApiError(
            409, "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed.",
            retry_after=1,  # the first request's answer is replayed then
        ) from None
