"""The MCP server: Clarion's tools and resources, declared to the official `mcp` package.

`build_server(api_key_id=…)` makes the server. Each tool call acts for one API key: over HTTP the
key that authenticated the request (notifications/agents/http.py puts it in the request's scope),
over stdio the key the process was started with. The key is read again at every call, so a
revoked key stops working at once. Tool functions are synchronous: the SDK runs them in worker
threads, where the ORM may be used.
"""

import contextlib
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

from django.core.serializers.json import DjangoJSONEncoder
from django.db import close_old_connections
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field, ValidationError

from ..models import ApiKey
from . import notify as notify_workflow
from . import tools

SCOPE_API_KEY = "clarion.api_key_id"  # set in the ASGI scope by http.ApiKeyGate

INSTRUCTIONS = """Clarion delivers notifications to people: in-app, email, SMS, push, chat.
You decide what happened; Clarion decides how the person hears of it (channel, timing, their
preferences and quiet hours). Use `notify` for a one-off message to a person, `list_workflows`
and `trigger_workflow` for the workflows the team designed, `request_approval` to ask a person
before you act (then poll `get_approval`), `get_run` to tell what became of a message."""

RecipientSpec = Annotated[
    str | dict[str, Any],
    Field(description='A recipient id ("user-42"), a profile {"id", "email", "name", "phone", '
                      '"locale", "timezone", "data"} (created or updated), or {"topic": key}.'),
]
IdempotencyKey = Annotated[
    str | None,
    Field(min_length=1, max_length=255,
          description="Retrying with the same key and the same arguments within 24 hours "
                      "answers the first call again instead of sending twice."),
]
TenantKey = Annotated[str | None, Field(description="The tenant (its key) this is for.")]


class RefusedCall(ToolError):
    """A tool call refused with the REST API's error body (`error`, `detail`, `fields`)."""

    def __init__(self, body: dict):
        super().__init__(json.dumps(body))
        self.body = body


def _argument_errors(exc: ValidationError) -> dict:
    """Pydantic's argument errors as the REST API's 400 body: {"fields": {"recipients[0]": […]}}."""
    fields: dict[str, list[str]] = {}
    for error in exc.errors():
        path = ""
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = "This field is required." if error["type"] == "missing" else error["msg"]
        fields.setdefault(path or "body", []).append(message)
    return {"error": "invalid_request", "detail": "The request is not valid; see `fields`.",
            "fields": fields}


class ClarionMCPServer(MCPServer):
    """MCPServer whose refused calls answer the REST API's error body as their whole text,
    bad arguments included (the SDK's own text is pydantic's report after the tool's name)."""

    async def call_tool(self, name, arguments, context=None):
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc.__cause__, RefusedCall):
                raise RefusedCall(exc.__cause__.body) from None
            if isinstance(exc.__cause__, ValidationError):
                raise RefusedCall(_argument_errors(exc.__cause__)) from None
            raise


def jsonable(value):
    """`value` with dates, UUIDs and decimals as the REST API writes them."""
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _api_key(ctx: Context, stdio_api_key_id: int | None) -> ApiKey:
    request = None
    with contextlib.suppress(ValueError):  # no request context
        request = ctx.request_context.request
    scope = getattr(request, "scope", None) or {}
    key_id = scope.get(SCOPE_API_KEY, stdio_api_key_id)
    api_key = None
    if key_id is not None:
        api_key = (ApiKey.objects.select_related("tenant")
                   .filter(pk=key_id, revoked_at__isnull=True).first())
    if api_key is None:
        raise RefusedCall({"error": "unauthorized", "detail": "Invalid or revoked API key."})
    return api_key


def build_server(*, api_key_id: int | None = None) -> MCPServer:
    """The MCP server. `api_key_id`: the key tool calls act for when the transport carries none
    (stdio); over HTTP each request's own key is used."""
    server = ClarionMCPServer("clarion", title="Clarion", instructions=INSTRUCTIONS,
                       website_url="https://github.com/clarion", log_level="WARNING")

    def call(ctx: Context, fn: Callable, **arguments) -> dict:
        close_old_connections()
        try:
            return jsonable(fn(_api_key(ctx, api_key_id), **arguments))
        except tools.ToolInputError as exc:
            raise RefusedCall(exc.body) from None
        finally:
            close_old_connections()

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def list_workflows(ctx: Context) -> dict[str, Any]:
        """The workflows you can trigger: key, name, description (its steps in words) and the
        JSON Schema of the `data` each one takes. Trigger one with `trigger_workflow`."""
        return call(ctx, tools.workflow_catalogue)

    @server.tool()
    def trigger_workflow(
        ctx: Context,
        workflow: Annotated[str, Field(description="The workflow's key, from list_workflows.")],
        recipients: Annotated[list[RecipientSpec],
                              Field(description="Who it is for (1 to 1000 entries).")],
        data: Annotated[dict[str, Any] | None,
                        Field(description="Values for the templates; must match the workflow's "
                                          "data_schema.")] = None,
        actor: Annotated[str | dict[str, Any] | None,
                         Field(description="Who did the thing: a recipient id or profile.")]
        = None,
        tenant: TenantKey = None,
        cancellation_key: Annotated[str | None,
                                    Field(max_length=255,
                                          description="Lets `cancel` stop these runs later.")]
        = None,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        """Trigger a workflow for its recipients, exactly as POST /api/v1/workflows/{key}/trigger
        does (same validation). Returns the trigger id and one run id per recipient; pass a run
        id to `get_run` to see what was sent."""
        return call(ctx, tools.trigger, workflow=workflow, recipients=recipients, data=data,
                    actor=actor, tenant=tenant, cancellation_key=cancellation_key,
                    idempotency_key=idempotency_key)

    @server.tool()
    def notify(
        ctx: Context,
        recipient: RecipientSpec,
        title: Annotated[str, Field(description="A short headline (1 to 200 characters).")],
        body: Annotated[str, Field(description="The message (1 to 5000 characters).")],
        action_url: Annotated[str | None,
                              Field(description="An http(s) link the person can open.")] = None,
        urgency: Annotated[Literal[notify_workflow.URGENCIES],
                           Field(description="When an unread in-app message also goes out by "
                                             "email: high at once, normal after 15 minutes, "
                                             "low after an hour.")] = "normal",
        tenant: TenantKey = None,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        """Tell a person something: an in-app message first, then an email if they have not
        read it, honouring their preferences (category "agents") and quiet hours. Returns the
        run id: `get_run` tells what was delivered."""
        return call(ctx, tools.notify, recipient=recipient, title=title, body=body,
                    action_url=action_url, urgency=urgency, tenant=tenant,
                    idempotency_key=idempotency_key)

    @server.tool()
    def request_approval(
        ctx: Context,
        recipient: RecipientSpec,
        question: Annotated[str, Field(description="What to approve, as a question (1 to 500 "
                                                   "characters).")],
        details: Annotated[str | None, Field(description="Context the person needs to "
                                                         "decide.")] = None,
        timeout_minutes: Annotated[int, Field(ge=1, le=129600,
                                              description="How long to wait for an answer "
                                                          "(default a day, at most 90 days).")]
        = 1440,
        default_decision: Annotated[Literal["approved", "rejected"],
                                    Field(description="The decision when nobody answers in "
                                                      "time (the outcome is then "
                                                      "`expired`).")] = "rejected",
        tenant: TenantKey = None,
        idempotency_key: IdempotencyKey = None,
    ) -> dict[str, Any]:
        """Ask a person before you act: they get the question with Approve / Reject in their
        in-app inbox and by email (signed one-time links); the first answer wins. Returns a
        run id: poll `get_approval` with it until its status is no longer "pending"."""
        return call(ctx, tools.request_approval, recipient=recipient, question=question,
                    details=details, timeout_minutes=timeout_minutes,
                    default_decision=default_decision, tenant=tenant,
                    idempotency_key=idempotency_key)

    @server.tool(annotations=read_only)
    def get_approval(ctx: Context,
                     run_id: Annotated[str, Field(description="The run id request_approval "
                                                              "answered.")]) -> dict[str, Any]:
        """The answer to an approval: status pending, approved, rejected or expired; the
        decision to act on (for expired: the default); who answered, how and when."""
        return call(ctx, tools.approval_status, run_id=run_id)

    @server.tool(annotations=read_only)
    def get_run(ctx: Context,
                run_id: Annotated[str, Field(description="A run id from a trigger's answer.")],
                ) -> dict[str, Any]:
        """What became of one recipient's run: its status, its timeline in plain words ("email
        suppressed: opted out of marketing by email") and each message's status."""
        return call(ctx, tools.run_detail, run_id=run_id)

    @server.tool(annotations=read_only)
    def find_recipient(
        ctx: Context,
        id: Annotated[str | None, Field(description="The recipient's id.")] = None,  # noqa: A002
        email: Annotated[str | None, Field(description="An email address.")] = None,
    ) -> dict[str, Any]:
        """Look a person up by id or by email address (one of the two): their profile
        (name, email, phone, locale, timezone, data) and channel data."""
        return call(ctx, tools.recipient_find, id=id, email=email)

    @server.tool(annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True))
    def cancel(
        ctx: Context,
        workflow: Annotated[str, Field(description="The workflow's key.")],
        cancellation_key: Annotated[str, Field(description="The key given when triggering.")],
        recipients: Annotated[list[str] | None,
                              Field(description="Only these recipients' runs; all when left "
                                                "out.")] = None,
    ) -> dict[str, Any]:
        """Stop the unfinished runs of a workflow triggered with this cancellation key: their
        pending steps never run and their queued messages are not sent."""
        return call(ctx, tools.cancel, workflow=workflow, cancellation_key=cancellation_key,
                    recipients=recipients)

    @server.resource("clarion://workflows", name="workflows", mime_type="application/json",
                     description="The workflow catalogue: every active workflow with the JSON "
                                 "Schema of its data.")
    def workflows_resource() -> str:
        close_old_connections()
        try:
            return json.dumps(tools.workflow_catalogue(None), cls=DjangoJSONEncoder)
        finally:
            close_old_connections()

    @server.resource("clarion://workflows/{key}", name="workflow",
                     mime_type="application/json",
                     description="One workflow of the catalogue, by key.")
    def workflow_resource(key: str) -> str:
        close_old_connections()
        try:
            entry = tools.workflow_by_key(key)
            return json.dumps(entry, cls=DjangoJSONEncoder)
        finally:
            close_old_connections()

    return server
