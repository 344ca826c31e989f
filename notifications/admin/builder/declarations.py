"""What the builder shows for each step type: one `StepKind` per type, listing its form fields
and where each one goes in the step's JSON (the `PUT workflows/{key}` body).

Adding a step type to the builder is one `StepKind` here; fields of kinds the builder knows
(text, path, number, select, checkbox, duration, days, time, list) need no other code.
"""

from dataclasses import dataclass, field

from ...channels import CHANNELS
from ...conditions import OPS
from ...engine import DURATION_UNITS, ENGAGEMENT_STATES
from ...engine.validation import ROUTE_CHANNELS
from ...engine.windows import DAYS

UNITS = tuple(DURATION_UNITS)  # seconds, minutes, hours, days
DAY_LABELS = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), strict=True))
OP_LABELS = {
    "eq": "is", "neq": "is not", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "in": "is one of",
    "contains": "contains", "exists": "is set", "not_exists": "is not set",
}
assert set(OP_LABELS) == set(OPS), "every operator of notifications/conditions.py has a label"


@dataclass(frozen=True)
class Field:
    """One form field of a step. `path` is where its value goes in the step's JSON (dots for
    nesting, e.g. "config.window"); `kind` says how the form's text becomes JSON:

    text, path, time: a string; integer, number: a number; select: one of `choices`; checkbox:
    true (or left out); duration: {"<unit>": number} from an amount and a unit; days: a list of
    day names; list: a list of strings from comma-separated text (`choices` limits them).
    Empty fields are left out of the JSON."""

    name: str  # the form field's name inside its step (no "-")
    label: str
    kind: str = "text"
    path: str = ""
    choices: tuple[tuple[str, str], ...] = ()
    help: str = ""
    group: str = ""  # fields with the same group are shown together under this legend
    placeholder: str = ""

    @property
    def json_path(self) -> str:
        return self.path or f"config.{self.name}"


@dataclass(frozen=True)
class StepKind:
    type: str
    label: str
    description: str
    fields: tuple[Field, ...] = ()
    channel: bool = False  # sends a message: has templates, `unless`, `send_window`, `urgent`
    nested: bool = False  # holds branches of steps (the branch step)
    templates: bool = False  # has templates of its own (a route step: one per channel)
    # A nested step whose branches have fixed names, chosen by its own outcome (an approval):
    # no conditions, no default branch, a branch without steps is left out.
    fixed_branches: tuple[str, ...] = ()

    @property
    def has_templates(self) -> bool:
        return self.channel or self.templates


def _choices(values, labels=None) -> tuple[tuple[str, str], ...]:
    return tuple((value, (labels or {}).get(value, value)) for value in values)


ENGAGEMENT_CHOICES = _choices(ENGAGEMENT_STATES)
UNIT_CHOICES = _choices(UNITS)

CHANNEL_FIELDS = (
    Field("unless_step", "Earlier step", "text", "unless.step", group="Skip if",
          help="The ref of an earlier channel step, e.g. inbox."),
    Field("unless_is", "has been", "select", "unless.is", ENGAGEMENT_CHOICES, group="Skip if"),
    Field("window_days", "Days", "days", "send_window.days", _choices(DAYS, DAY_LABELS),
          group="Send window"),
    Field("window_start", "From", "time", "send_window.start", group="Send window"),
    Field("window_end", "Until", "time", "send_window.end", group="Send window"),
    Field("window_timezone", "Time zone", "text", "send_window.timezone", group="Send window",
          placeholder="recipient", help='"recipient" (their own) or a name like Europe/Berlin.'),
    Field("urgent", "Urgent: send during the person's quiet hours (critical workflows)",
          "checkbox", "urgent"),
)

CHANNEL_CONFIG = {
    "webhook": (Field("url", "URL", "text", placeholder="https://…"),),
    "chat": (Field("channel", "Chat channel", "text", placeholder="#ops or C024BE91L"),),
    "whatsapp": (Field("template", "Approved template name", "text", placeholder="order_update"),
                 Field("language", "Template language", "text", placeholder="en_US")),
}

KINDS: dict[str, StepKind] = {
    **{spec.key: StepKind(spec.key, spec.label, f"Send {spec.label.lower()}",
                          (*CHANNEL_CONFIG.get(spec.key, ()), *CHANNEL_FIELDS), channel=True)
       for spec in CHANNELS},
    "delay": StepKind("delay", "Delay", "Wait for a while, or until a moment in the data", (
        Field("duration", "Wait", "duration", "config"),
        Field("until", "or wait until (a date in the data)", "path", "config.until",
              placeholder="data.due_at",
              help="Leave the duration empty to wait until this ISO 8601 timestamp."),
    )),
    "throttle": StepKind("throttle", "Throttle", "Let only a few runs through per window", (
        Field("limit", "At most", "integer", "config.limit", help="runs per person"),
        Field("window", "per", "duration", "config.window"),
        Field("key", "and per value of", "path", "config.key", placeholder="data.order_id"),
    )),
    "digest": StepKind("digest", "Digest", "Collect the events of a window into one message; "
                       "later steps see steps.<ref>.count, .events and .actors", (
        Field("window", "Collect for", "duration", "config.window",
              help="From the first event; or choose a daily or weekly time instead."),
        Field("daily", "or until daily at", "time", "config.window.daily"),
        Field("weekly_day", "or until weekly on", "select", "config.window.weekly.day",
              _choices(DAYS, DAY_LABELS)),
        Field("weekly_time", "at", "time", "config.window.weekly.time"),
        Field("key", "One batch per value of", "path", "config.key",
              placeholder="data.thread_id"),
        Field("max_events", "Send early at", "integer", "config.max_events", help="events"),
        Field("first_at_once", "Send the first event at once", "checkbox",
              "config.first_at_once"),
        Field("skip_read", "Leave out events already read in-app", "checkbox",
              "config.skip_read"),
    )),
    "route": StepKind("route", "Route", "Try the cheapest channel first; send the next only if "
                      "no earlier one succeeded in time", (
        Field("channels", "Channels, cheapest first", "list", "config.channels",
              placeholder="in_app, push, email, sms",
              help=f"Separated by commas; of: {', '.join(ROUTE_CHANNELS)}."),
        Field("ttl", "Give up after", "duration", "config.ttl",
              help="Spread evenly: each next channel waits ttl ÷ (channels − 1)."),
        Field("success", "Success is when a message is", "select", "config.success",
              ENGAGEMENT_CHOICES),
        Field("always", "Always send on", "list", "config.always", placeholder="in_app",
              help="Channels sent at once whatever happens (comma-separated)."),
        *(spec for spec in CHANNEL_FIELDS if not spec.name.startswith("unless")),
    ), templates=True),
    "approval": StepKind("approval", "Approval", "Ask the person to approve or reject (in-app "
                         "buttons, email links); go on down the branch of the outcome", (
        Field("question", "Question", "text", placeholder="Deploy {{ data.version }}?"),
        Field("details", "Details", "text"),
        Field("timeout", "Expires after", "duration", "config.timeout"),
        Field("until", "or expires at (a date in the data)", "path", "config.until",
              placeholder="data.deadline"),
        Field("default", "When it expires, count it as", "select", "config.default",
              _choices(("approved", "rejected"))),
        Field("channels", "Ask on", "list", "config.channels", placeholder="in_app, email",
              help="in_app and/or email, comma-separated."),
    ), nested=True, fixed_branches=("approved", "rejected", "expired")),
    "branch": StepKind("branch", "Branch", "The first branch whose conditions hold is taken; "
                       "the default when none does", nested=True),
}


def kind_for(step_type: str) -> StepKind | None:
    """The builder's declaration of `step_type`, or None (its JSON is kept as it is)."""
    return KINDS.get(step_type)


def addable_kinds(supported) -> list[StepKind]:
    """The kinds a step can be added as: declared and run by the engine (`supported`)."""
    return [kind for key, kind in KINDS.items() if key in supported]


@dataclass
class Problems:
    """Error messages by form field name ("steps-2-limit"); "__all__" for the whole form."""

    by_name: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, message: str) -> None:
        self.by_name.setdefault(name, []).append(message)

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def get(self, name: str) -> list[str]:
        return self.by_name.get(name, [])
