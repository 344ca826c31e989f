"""What the builder shows for each step type: one `StepKind` per type, listing its form fields
and where each one goes in the step's JSON (the `PUT workflows/{key}` body).

Adding a step type to the builder is one `StepKind` here; fields of kinds the builder knows
(text, path, number, select, checkbox, duration, days, time, list) need no other code.
"""

from dataclasses import dataclass, field

from django.utils.functional import lazy
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from ...channels import CHANNELS
from ...conditions import OPS
from ...engine import DURATION_UNITS, ENGAGEMENT_STATES
from ...engine.validation import PUSH_PRIORITIES, ROUTE_CHANNELS
from ...engine.windows import DAYS

UNITS = tuple(DURATION_UNITS)  # seconds, minutes, hours, days
DAY_LABELS = dict(zip(DAYS, (_("Mon"), _("Tue"), _("Wed"), _("Thu"), _("Fri"), _("Sat"),
                             _("Sun")), strict=True))
OP_LABELS = {
    "eq": pgettext_lazy("condition", "is"), "neq": pgettext_lazy("condition", "is not"),
    "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "in": pgettext_lazy("condition", "is one of"),
    "contains": pgettext_lazy("condition", "contains"),
    "exists": pgettext_lazy("condition", "is set"),
    "not_exists": pgettext_lazy("condition", "is not set"),
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
    label: str  # str or a lazy translation, as are help, group and placeholder
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


ENGAGEMENT_CHOICES = _choices(ENGAGEMENT_STATES, {
    "sent": pgettext_lazy("engagement", "sent"),
    "delivered": pgettext_lazy("engagement", "delivered"),
    "seen": pgettext_lazy("engagement", "seen"), "read": pgettext_lazy("engagement", "read"),
    "clicked": pgettext_lazy("engagement", "clicked"),
    "interacted": pgettext_lazy("engagement", "interacted")})
UNIT_CHOICES = _choices(UNITS, {"seconds": _("seconds"), "minutes": _("minutes"),
                                "hours": _("hours"), "days": _("days")})

CHANNEL_FIELDS = (
    Field("unless_step", _("Earlier step"), "text", "unless.step", group=_("Skip if"),
          help=_("The ref of an earlier channel step, e.g. inbox.")),
    Field("unless_is", _("has been"), "select", "unless.is", ENGAGEMENT_CHOICES,
          group=_("Skip if")),
    Field("window_days", _("Days"), "days", "send_window.days", _choices(DAYS, DAY_LABELS),
          group=_("Send window")),
    Field("window_start", _("From"), "time", "send_window.start", group=_("Send window")),
    Field("window_end", _("Until"), "time", "send_window.end", group=_("Send window")),
    Field("window_timezone", _("Time zone"), "text", "send_window.timezone",
          group=_("Send window"), placeholder="recipient",
          help=_('"recipient" (their own) or a name like Europe/Berlin.')),
    Field("urgent", _("Urgent: send during the person's quiet hours (critical workflows)"),
          "checkbox", "urgent"),
)

# The channel step types' names in the builder (channels.py's `label`, translated).
CHANNEL_LABELS = {
    "email": pgettext_lazy("step type", "Email"), "sms": pgettext_lazy("step type", "SMS"),
    "push": pgettext_lazy("step type", "Push"), "chat": pgettext_lazy("step type", "Chat"),
    "whatsapp": pgettext_lazy("step type", "WhatsApp"),
    "in_app": pgettext_lazy("step type", "In-app"),
    "webhook": pgettext_lazy("step type", "Webhook"),
}
assert set(CHANNEL_LABELS) == {spec.key for spec in CHANNELS}, "every channel has a label"
_lower = lazy(lambda text: str(text).lower(), str)

PUSH_PRIORITY_CHOICES = _choices(PUSH_PRIORITIES, {
    "very-low": pgettext_lazy("push priority", "very low"),
    "low": pgettext_lazy("push priority", "low"),
    "normal": pgettext_lazy("push priority", "normal"),
    "high": pgettext_lazy("push priority", "high")})

# Each channel's `config` options: engine/validation.py's CHANNEL_CONFIG_KEYS, with the names,
# units and values the providers read (docs/providers.md). tests/notifications/
# test_workflow_builder_options.py fails for an option of the JSON without a field here.
CHANNEL_CONFIG = {
    "webhook": (Field("url", _("URL"), "text", placeholder="https://…"),),
    "chat": (Field("channel", _("Chat channel"), "text", placeholder="#ops or C024BE91L"),),
    "push": (
        Field("ttl", _("Time to live (seconds)"), "integer", placeholder="3600",
              help=_("How long APNs, FCM and Web Push keep trying to reach a device that is "
                     "offline; 0: now or never, at most 2419200 (28 days). Empty: each service's "
                     "default.")),
        Field("priority", _("Priority"), "select", choices=PUSH_PRIORITY_CHOICES,
              help=_("High wakes the device at once. Android treats the lower ones as "
                     "normal; Apple delays normal and low to save power and very low until "
                     "the device is awake.")),
        Field("collapse_key", _("Collapse key"), "text", placeholder="order-42",
              help=_("A newer push with the same key replaces one not yet delivered. Up to 32 "
                     "letters, digits, - and _.")),
    ),
    "whatsapp": (Field("template", _("Approved template name"), "text",
                       placeholder="order_update", help=_("Meta's name of the template.")),
                 Field("language", _("Template language"), "text", placeholder="en_US"),
                 Field("content_sid", _("Twilio Content SID"), "text",
                       placeholder="HXb5b62575e6e4ff6129ad7c8efe1f983e",
                       help=_('The same approved template in Twilio\'s Content API: "HX" and 32 '
                              'hex digits. Needed to send through Twilio.'))),
}

KINDS: dict[str, StepKind] = {
    **{spec.key: StepKind(spec.key, CHANNEL_LABELS[spec.key],
                          format_lazy(_("Send {channel}"),
                                      channel=_lower(CHANNEL_LABELS[spec.key])),
                          (*CHANNEL_CONFIG.get(spec.key, ()), *CHANNEL_FIELDS), channel=True)
       for spec in CHANNELS},
    "delay": StepKind("delay", _("Delay"),
                      _("Wait for a while, or until a moment in the data"), (
        Field("duration", _("Wait"), "duration", "config"),
        Field("until", _("or wait until (a date in the data)"), "path", "config.until",
              placeholder="data.due_at",
              help=_("Leave the duration empty to wait until this ISO 8601 timestamp.")),
    )),
    "throttle": StepKind("throttle", _("Throttle"),
                         _("Let only a few runs through per window"), (
        Field("limit", _("At most"), "integer", "config.limit", help=_("runs per person")),
        Field("window", _("per"), "duration", "config.window"),
        Field("key", _("and per value of"), "path", "config.key", placeholder="data.order_id"),
    )),
    "digest": StepKind("digest", _("Digest"), _(
        "Collect the events of a window into one message; later steps see steps.<ref>.count, "
        ".events and .actors"), (
        Field("window", _("Collect for"), "duration", "config.window",
              help=_("From the first event; or choose a daily or weekly time instead.")),
        Field("daily", _("or until daily at"), "time", "config.window.daily"),
        Field("weekly_day", _("or until weekly on"), "select", "config.window.weekly.day",
              _choices(DAYS, DAY_LABELS)),
        Field("weekly_time", _("at"), "time", "config.window.weekly.time"),
        Field("key", _("One batch per value of"), "path", "config.key",
              placeholder="data.thread_id"),
        Field("max_events", _("Send early at"), "integer", "config.max_events",
              help=_("events")),
        Field("first_at_once", _("Send the first event at once"), "checkbox",
              "config.first_at_once"),
        Field("skip_read", _("Leave out events already read in-app"), "checkbox",
              "config.skip_read"),
    )),
    "route": StepKind("route", _("Route"), _(
        "Try the cheapest channel first; send the next only if no earlier one succeeded in "
        "time"), (
        Field("channels", _("Channels, cheapest first"), "list", "config.channels",
              placeholder="in_app, push, email, sms",
              help=format_lazy(_("Separated by commas; of: {channels}."),
                               channels=", ".join(ROUTE_CHANNELS))),
        Field("ttl", _("Give up after"), "duration", "config.ttl",
              help=_("Spread evenly: each next channel waits ttl ÷ (channels − 1).")),
        Field("success", _("Success is when a message is"), "select", "config.success",
              ENGAGEMENT_CHOICES),
        Field("always", _("Always send on"), "list", "config.always", placeholder="in_app",
              help=_("Channels sent at once whatever happens (comma-separated).")),
        *(spec for spec in CHANNEL_FIELDS if not spec.name.startswith("unless")),
    ), templates=True),
    "approval": StepKind("approval", _("Approval"), _(
        "Ask the person to approve or reject (in-app buttons, email links); go on down the "
        "branch of the outcome"), (
        Field("question", _("Question"), "text", placeholder="Deploy {{ data.version }}?"),
        Field("details", _("Details"), "text"),
        Field("timeout", _("Expires after"), "duration", "config.timeout"),
        Field("until", _("or expires at (a date in the data)"), "path", "config.until",
              placeholder="data.deadline"),
        Field("default", _("When it expires, count it as"), "select", "config.default",
              _choices(("approved", "rejected"))),
        Field("channels", _("Ask on"), "list", "config.channels", placeholder="in_app, email",
              help=_("in_app and/or email, comma-separated.")),
    ), nested=True, fixed_branches=("approved", "rejected", "expired")),
    "branch": StepKind("branch", _("Branch"), _(
        "The first branch whose conditions hold is taken; the default when none does"),
        nested=True),
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
