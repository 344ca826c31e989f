"""What each MCP tool does, as plain functions of the caller's API key and the tool's arguments.

Input is validated by the REST API's serializers (notifications/api/serializers/) and written by
its services, so a tool call and the REST call it mirrors accept and refuse the same things. Every
refusal is a ToolInputError carrying the REST API's error body (`error`, `detail` and, for bad
input, `fields` naming each field); every read is scoped by what the key may see.
"""

import functools
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions

from clarion.api import error_body, not_found, validated

from .. import selectors, services
from ..api import serializers as s
from ..api.triggers import active_workflow, trigger_one, trigger_rate_limit
from ..approvals import approval_detail
from ..models import ApiKey, Run, Workflow
from . import notify as notify_workflow
from .timeline import run_in_words


class ToolInputError(Exception):
    """A refused tool call; `body` is the REST API's error body for the same refusal."""

    def __init__(self, body: dict):
        super().__init__(body.get("detail", ""))
        self.body = body


def refusals(fn: Callable) -> Callable:
    """Turn the REST API's errors raised inside `fn` into ToolInputError with the same body."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except exceptions.APIException as exc:
            raise ToolInputError(error_body(exc)) from exc

    return wrapper


def _invalid(fields: Mapping[str, list[str]]) -> ToolInputError:
    return ToolInputError({"error": "invalid_request",
                           "detail": "The request is not valid; see `fields`.",
                           "fields": dict(fields)})


def _without_none(values: Mapping) -> dict:
    return {name: value for name, value in values.items() if value is not None}


# --- Workflows --------------------------------------------------------------------------------

def _steps_in_words(workflow: Workflow) -> str:
    words = []
    for step in workflow.steps.all():
        text = step.type.replace("_", "-") if step.is_channel else step.type
        if step.unless:
            text += f" (unless {step.unless.get('step')} is {step.unless.get('is')})"
        if step.conditions:
            text += " (when its condition holds)"
        words.append(text)
    return ", then ".join(words) or "no steps"


def workflow_entry(workflow: Workflow) -> dict:
    """One workflow of the catalogue: what an agent needs to trigger it."""
    description = f"{workflow.name}: {_steps_in_words(workflow)}."
    if workflow.critical:
        description += " Critical: sent even to people who opted out."
    return {
        "key": workflow.key,
        "name": workflow.name,
        "description": description,
        "category": workflow.category,
        "critical": workflow.critical,
        "data_schema": workflow.data_schema or {"type": "object"},
    }


def workflow_catalogue(api_key: ApiKey | None = None) -> dict:
    """{"workflows": [...]}: every active workflow with its `data` JSON Schema."""
    workflows = Workflow.objects.filter(active=True).order_by("key").prefetch_related("steps")
    return {"workflows": [workflow_entry(workflow) for workflow in workflows]}


# --- Triggering -------------------------------------------------------------------------------

def _answer(response: services.TriggerResponse) -> dict:
    return {**response.body, "replayed": response.replayed}


@refusals
def trigger(api_key: ApiKey, *, workflow: str, recipients, data=None, actor=None, tenant=None,
            cancellation_key=None, idempotency_key: str | None = None) -> dict:
    """The REST trigger (POST workflows/{workflow}/trigger with the same body and
    Idempotency-Key): {"trigger_id", "runs": [{"id", "recipient"}], "replayed"}."""
    target = active_workflow(workflow)
    trigger_rate_limit(api_key)
    body = _without_none({"recipients": recipients, "data": data, "actor": actor,
                          "tenant": tenant, "cancellation_key": cancellation_key})
    return _answer(trigger_one(api_key, target, s.TriggerSerializer, body,
                               idempotency_key=idempotency_key))


def _notify_fields(fields: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The trigger's field paths as the notify tool's arguments: data.title → title,
    recipients[0].email → recipient.email."""
    named = {}
    for path, messages in fields.items():
        if path.startswith("data."):
            path = path[len("data."):]
        elif path == "data":
            path = "body"
        elif path.startswith("recipients[0]"):
            path = "recipient" + path[len("recipients[0]"):]
        elif path == "recipients":
            path = "recipient"
        named.setdefault(path, []).extend(messages)
    return named


def notify(api_key: ApiKey, *, recipient, title: str, body: str, action_url: str | None = None,
           urgency: str = "normal", tenant: str | None = None,
           idempotency_key: str | None = None) -> dict:
    """A one-off message through the built-in notify workflow: in-app now, then email if still
    unread (after 0, 15 or 60 minutes for high, normal, low urgency), each channel subject to the
    person's preferences (category `agents`) and quiet hours. Answers as `trigger`."""
    data = notify_workflow.notify_data(title=title, body=body, action_url=action_url,
                                       urgency=urgency)
    try:
        return trigger(api_key, workflow=notify_workflow.notify_workflow().key,
                       recipients=[recipient], data=data, tenant=tenant,
                       idempotency_key=idempotency_key)
    except ToolInputError as exc:
        if "fields" in exc.body:
            raise _invalid(_notify_fields(exc.body["fields"])) from exc
        raise


def request_approval(api_key: ApiKey, *, recipient, question: str, details: str | None = None,
                     timeout_minutes: int = 1440, default_decision: str = "rejected",
                     tenant: str | None = None, idempotency_key: str | None = None) -> dict:
    """Ask a person to approve or reject, through the built-in approval workflow: in-app (with
    Approve / Reject in the widget) and email (signed links). Answers {"run_id", "trigger_id",
    "expires_at", "replayed"}: poll `get_approval` with the run id."""
    expires_at = timezone.now() + timedelta(minutes=timeout_minutes)
    data = {"question": question, "expires_at": expires_at.isoformat(),
            "default_decision": default_decision}
    if details:
        data["details"] = details
    try:
        answer = trigger(api_key, workflow=notify_workflow.approval_workflow().key,
                         recipients=[recipient], data=data, tenant=tenant,
                         idempotency_key=idempotency_key)
    except ToolInputError as exc:
        if "fields" in exc.body:
            raise _invalid(_notify_fields(exc.body["fields"])) from exc
        raise
    run_id = answer["runs"][0]["id"]
    # A replay answers the first call's time limit, kept in its trigger's data.
    data = Run.objects.select_related("trigger").get(pk=run_id).trigger.data
    return {"run_id": run_id, "trigger_id": answer["trigger_id"],
            "expires_at": data.get("expires_at"), "replayed": answer["replayed"]}


@refusals
def approval_status(api_key: ApiKey, *, run_id: str) -> dict:
    """The approval a run asked (its latest), as approvals.approval_detail shows it, with a
    sentence; {"status": "pending", "asked": false} until the worker has asked it."""
    pk = _uuid(run_id, "run_id")
    run = selectors.runs_visible_to(api_key).filter(pk=pk).first()
    if run is None:
        raise not_found("run", str(run_id))
    asked = run.approvals.select_related("recipient").order_by("-created_at").first()
    if asked is None:
        return {"run_id": str(run.pk), "asked": False, "status": "pending",
                "text": "not asked yet (the worker has not reached the approval step)"}
    detail = approval_detail(asked)
    if asked.status == asked.Status.PENDING:
        text = f"waiting for {asked.recipient.external_id} until {detail['expires_at']}"
    elif asked.status == asked.Status.EXPIRED:
        text = f"expired without an answer; the run went on as {asked.decision}"
    else:
        text = (f"{asked.status} by {asked.recipient.external_id} "
                f"(via {asked.answered_via}) at {detail['answered_at']}")
    return {**detail, "asked": True, "text": text}


@refusals
def cancel(api_key: ApiKey, *, workflow: str, cancellation_key: str,
           recipients: list | None = None) -> dict:
    """The REST cancel: {"cancelled": [{"id", "recipient"}]}; a tenant-restricted key cancels
    only its tenant's runs."""
    target = Workflow.objects.filter(key=workflow).first()
    if target is None:
        raise not_found("workflow", workflow)
    data = validated(s.CancelSerializer, _without_none(
        {"cancellation_key": cancellation_key, "recipients": recipients}))
    runs = services.workflow_cancel(workflow=target, cancellation_key=data["cancellation_key"],
                                    recipient_ids=data.get("recipients"), tenant=api_key.tenant)
    return {"cancelled": [{"id": str(run.id), "recipient": run.recipient.external_id}
                          for run in runs]}


# --- Reads ------------------------------------------------------------------------------------

def _uuid(value: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _invalid({field: ["Must be a valid UUID."]}) from None


@refusals
def run_detail(api_key: ApiKey, *, run_id: str) -> dict:
    """A run in words (timeline.run_in_words) plus GET /runs/{id}'s body as `detail`; another
    tenant's run is not found."""
    pk = _uuid(run_id, "run_id")
    run = selectors.runs_with_history(selectors.runs_visible_to(api_key).filter(pk=pk)).first()
    if run is None:
        raise not_found("run", str(run_id))
    return {**run_in_words(run), "detail": s.RunDetailSerializer(run).data}


@refusals
def recipient_find(api_key: ApiKey, *, id: str | None = None,  # noqa: A002 (the API's name)
                   email: str | None = None) -> dict:
    """{"recipients": [...]}: the recipient with this id, or those with this email address
    (case-insensitive), as GET /recipients/{id} shows them; a tenant-restricted key finds only
    people its tenant reached."""
    if (id is None) == (email is None):
        raise _invalid({"id": ["Give either id or email."]})
    recipients = selectors.recipients_visible_to(api_key).prefetch_related("channel_data")
    if id is not None:
        try:
            recipients = recipients.filter(external_id=s.recipient_id(id))
        except exceptions.ValidationError as exc:
            raise _invalid({"id": [str(message) for message in exc.detail]}) from None
    else:
        if not email.strip():
            raise _invalid({"email": ["This field may not be blank."]})
        recipients = recipients.filter(email__iexact=email.strip())
    found = [selectors.recipient_detail(recipient)
             for recipient in recipients.order_by("external_id")[:20]]
    return {"recipients": found}


def workflow_by_key(key: str) -> dict:
    """One active workflow's catalogue entry; raises LookupError when there is none."""
    workflow = Workflow.objects.filter(key=key, active=True).prefetch_related("steps").first()
    if workflow is None:
        raise LookupError(f"No workflow {key!r}.")
    return workflow_entry(workflow)
