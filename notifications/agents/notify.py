"""The built-in workflow behind the `notify` tool: a one-off message from an agent to a person,
routed in-app first, then by email if it is still unread after a wait that depends on its
urgency (a route step: cheapest channel first, stop when read). The route goes through the
engine like any workflow's steps, so the person's preferences (category `agents`) and quiet
hours apply."""

from datetime import timedelta

from django.db import IntegrityError

from ..models import Workflow
from ..services import StepSpec, workflow_put

NOTIFY_WORKFLOW = "clarion-notify"
NOTIFY_CATEGORY = "agents"
URGENCIES = ("low", "normal", "high")
# How long an unread in-app message waits before it goes out by email (high: at once).
EMAIL_AFTER = {"low": timedelta(hours=1), "normal": timedelta(minutes=15),
               "high": timedelta(0)}

NOTIFY_DATA_SCHEMA = {
    "type": "object",
    "required": ["title", "body", "urgency"],
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "body": {"type": "string", "minLength": 1, "maxLength": 5000},
        "action_url": {"type": "string", "maxLength": 2000, "pattern": "^https?://"},
        "urgency": {"enum": list(URGENCIES)},
    },
    "additionalProperties": False,
}

_TEMPLATES = {
    "in_app": {"en": {"body": "{{ data.title }}: {{ data.body }}",
                      "action_url": "{{ data.action_url }}"}},
    "email": {"en": {
        "subject": "{{ data.title }}",
        "html": "<p>{{ data.body }}</p>{% if data.action_url %}<p><a href=\"{{ data.action_url }}"
                "\">Open</a></p>{% endif %}",
        "text": "{{ data.body }}{% if data.action_url %}\n\n{{ data.action_url }}{% endif %}",
    }},
}


def _route(urgency: str) -> StepSpec:
    """The route step of one urgency (engine/route.py): in-app first, then email if the in-app
    message is still unread after the urgency's wait; high sends both at once."""
    wait = EMAIL_AFTER[urgency] or timedelta(minutes=1)
    config = {"channels": ["in_app", "email"], "ttl": {"seconds": int(wait.total_seconds())},
              "success": "read"}
    if urgency == "high":
        config["always"] = ["in_app", "email"]
    return StepSpec(ref=f"route-{urgency}", type="route", config=config, templates=_TEMPLATES,
                    conditions={"path": "data.urgency", "op": "eq", "value": urgency})


# One route step per urgency; the trigger's data.urgency picks which one runs.
_STEPS = [_route(urgency) for urgency in ("high", "normal", "low")]


def notify_workflow() -> Workflow:
    """The built-in notify workflow, created the first time it is asked for. Once created it is
    an ordinary workflow: an admin may edit its templates, and edits are kept."""
    workflow = Workflow.objects.filter(key=NOTIFY_WORKFLOW).first()
    if workflow is not None:
        return workflow
    try:
        workflow, _ = workflow_put(key=NOTIFY_WORKFLOW, name="Message from an agent",
                                   category=NOTIFY_CATEGORY, data_schema=NOTIFY_DATA_SCHEMA,
                                   steps=_STEPS)
    except IntegrityError:  # created meanwhile by another call
        workflow = Workflow.objects.get(key=NOTIFY_WORKFLOW)
    return workflow


def notify_data(*, title: str, body: str, action_url: str | None, urgency: str) -> dict:
    """The trigger data of one notify call."""
    data = {"title": title, "body": body, "urgency": urgency}
    if action_url:
        data["action_url"] = action_url
    return data


# --- The built-in approval workflow (the request_approval tool) ------------------------------

APPROVAL_WORKFLOW = "clarion-approval"
APPROVAL_DATA_SCHEMA = {
    "type": "object",
    "required": ["question", "expires_at"],
    "properties": {
        "question": {"type": "string", "minLength": 1, "maxLength": 500},
        "details": {"type": "string", "maxLength": 5000},
        "expires_at": {"type": "string", "format": "date-time"},
        "default_decision": {"enum": ["approved", "rejected"]},
    },
    "additionalProperties": False,
}
_APPROVAL_STEPS = [
    StepSpec(ref="ask", type="approval", config={
        "question": "{{ data.question }}", "details": "{{ data.details }}",
        "until": "data.expires_at",
        "default": "{{ data.default_decision | default: 'rejected' }}",
    }),
]


def approval_workflow() -> Workflow:
    """The built-in workflow of the request_approval tool (one approval step), created the first
    time it is asked for; an admin may add steps after `ask` (conditions on steps.ask.outcome)."""
    workflow = Workflow.objects.filter(key=APPROVAL_WORKFLOW).first()
    if workflow is not None:
        return workflow
    try:
        workflow, _ = workflow_put(key=APPROVAL_WORKFLOW, name="Approval asked by an agent",
                                   category=NOTIFY_CATEGORY, data_schema=APPROVAL_DATA_SCHEMA,
                                   steps=_APPROVAL_STEPS)
    except IntegrityError:
        workflow = Workflow.objects.get(key=APPROVAL_WORKFLOW)
    return workflow
