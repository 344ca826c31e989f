"""Triggering a workflow from a request body: what the REST trigger, the bulk trigger and the
MCP server's `trigger_workflow` and `notify` tools share, so each validates and answers alike."""

import copy

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse
from rest_framework.exceptions import APIException

from clarion.api import ApiError, not_found, tenant_for_api_key, validated_reusing

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


def active_workflow(key: str) -> Workflow:
    """The workflow `key` (this request's own copy); raises ApiError 404 when there is none, 422
    when it is inactive or its first draft is not published yet.

    A published workflow's row is kept by the process and used again while its `updated_at` is
    unchanged (one cheap read instead of the row): a publish or any edit is seen at once."""
    kept = _workflows.get(key)
    if kept is not None and services.workflow_unchanged(kept):
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


def kept_workflow(key: str) -> Workflow | None:
    """This process's copy of the published workflow `key` as last read (a copy of its own for
    the request), not checked: the caller checks it (trigger_kept), or None when none is kept."""
    kept = _workflows.get(key)
    return copy.copy(kept) if kept is not None else None


def trigger_kept(api_key: ApiKey, key: str, serializer_class, body, *,
                 idempotency_key: str | None) -> services.TriggerResponse:
    """trigger_one for the workflow `key` (active_workflow's errors, then
    check_idempotency_key's), with the process's kept
    copy of it checked in the trigger's own statement (services.trigger_workflow_idempotent's
    `workflow_kept`) rather than by a read of its own: one round trip less. When the copy
    turns out changed, or the request is refused (400, 403, 409, 422) while it is, the
    workflow is read again and the request done again with it."""
    kept = kept_workflow(key)
    if kept is not None:
        try:
            check_idempotency_key(idempotency_key)
            return trigger_one(api_key, kept, serializer_class, body,
                               idempotency_key=idempotency_key, workflow_kept=True)
        except services.WorkflowChanged:
            pass
        except APIException:
            if services.workflow_unchanged(kept):
                raise
    workflow = active_workflow(key)  # its 404 and 422 first, as without a kept copy
    check_idempotency_key(idempotency_key)
    return trigger_one(api_key, workflow, serializer_class, body,
                       idempotency_key=idempotency_key)


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


# (script prefix, URLconf, workflow key) → the REST trigger's path, as reverse() gives it
_trigger_paths: dict[tuple, str] = {}


def trigger_path(key: str) -> str:
    """The REST trigger's path for the workflow `key` (what reverse() gives, for an
    idempotency fingerprint), kept by the process: reversing costs every trigger ~50 µs."""
    shape = (get_script_prefix(), get_urlconf() or settings.ROOT_URLCONF, key)
    path = _trigger_paths.get(shape)
    if path is None:
        if len(_trigger_paths) >= 1024:  # keys of workflows deleted meanwhile
            _trigger_paths.clear()
        path = _trigger_paths[shape] = reverse("workflow-trigger", args=[key])
    return path


def trigger_one(api_key: ApiKey, workflow: Workflow, serializer_class, body, *,
                idempotency_key: str | None,
                workflow_kept: bool = False) -> services.TriggerResponse:
    """Validate one trigger body with `serializer_class` (TriggerSerializer or its bulk item) and
    trigger it, idempotently with `idempotency_key`.

    Returns the TriggerResponse (202 body, or the first response replayed). Raises DRF's
    ValidationError (400 naming each field) and ApiError: 403 (a tenant-restricted key naming
    another tenant or rewriting profiles), 409 (the key still in use), 422 (the key reused with
    another body). `workflow_kept`: `workflow` is a kept copy, not checked yet (trigger_kept);
    raises services.WorkflowChanged when it changed."""
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
    fingerprint = [trigger_path(workflow.key), body]
    try:
        return services.trigger_workflow_idempotent(
            request=trigger_request, idempotency_key=idempotency_key,
            request_fingerprint=fingerprint, workflow_kept=workflow_kept)
    except idempotency.IdempotencyMismatch:
        raise ApiError(422, "idempotency_key_reused",
                       "This Idempotency-Key was used with a different request.") from None
    except idempotency.IdempotencyConflict:
        raise ApiError(
            409, "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed.",
            retry_after=1,  # the first request's answer is replayed then
        ) from None
