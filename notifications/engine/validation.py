"""What a workflow's steps may say: the checks `PUT workflows/{key}` runs on each step's config
(StepConfigError names the problem), and the arithmetic of a delay step."""

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import conditions
from ..channels import CHANNEL_KEYS
from ..models import StepType
from ..rendering.variables import ENGAGEMENT_STATES

# Step types the engine runs (every channel, and the function steps); the others are refused
# when a workflow is saved.
SUPPORTED_STEP_TYPES = frozenset({*CHANNEL_KEYS, StepType.DELAY, StepType.THROTTLE,
                                  StepType.DIGEST, StepType.BRANCH,
                                  StepType.ROUTE, StepType.APPROVAL})
# Step types that hold branches of steps (engine/branches.py), and the names their branches may
# have: None for names the author chooses, each branch with its conditions (the branch step,
# which also has a "default" branch); a step type that picks a branch by a decision of its own
# (an approval's outcome) lists its fixed names, and its branches carry no conditions.
BRANCHING_STEP_TYPES: dict[str, tuple[str, ...] | None] = {
    StepType.BRANCH: None, StepType.APPROVAL: ("approved", "rejected", "expired")}
DEFAULT_BRANCH = "default"
DURATION_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
# The longest delay a step may ask for: ten years.
MAX_DELAY_SECONDS = 10 * 366 * 86400

class StepConfigError(ValueError):
    """A step's JSON is not valid for its type; the message says why and `field` (relative to the
    step, "config" unless told) where."""

    def __init__(self, message: str, field: str = "config"):
        super().__init__(message)
        self.field = field


def validate_delay_config(config: Mapping) -> None:
    """Raise StepConfigError unless `config` is a duration or an `until` path."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    keys = set(config)
    if "until" in keys:
        if keys != {"until"}:
            raise StepConfigError('"until" cannot be combined with a duration.')
        path = config["until"]
        if not isinstance(path, str) or path.split(".", 1)[0] not in conditions.ROOTS:
            raise StepConfigError(
                f'"until" must be a path starting with one of: {", ".join(conditions.ROOTS)}.'
            )
        return
    unknown = keys - set(DURATION_UNITS)
    if unknown or not keys:
        raise StepConfigError(
            'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.'
        )
    for unit in keys:
        value = config[unit]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise StepConfigError(f'"{unit}" must be a number ≥ 0.')
    if sum(float(config[unit]) * DURATION_UNITS[unit] for unit in keys) > MAX_DELAY_SECONDS:
        raise StepConfigError(f"A delay is at most {MAX_DELAY_SECONDS // 86400} days.")


# What a channel step's `config` may hold, by channel (docs/providers.md): push options are read
# by FCM, APNs and Web Push alike.
CHANNEL_CONFIG_KEYS = {
    "email": frozenset(), "sms": frozenset(), "in_app": frozenset(),
    "push": frozenset({"ttl", "priority", "collapse_key"}),
    "chat": frozenset({"channel"}), "webhook": frozenset({"url"}),
    "whatsapp": frozenset({"template", "language", "content_sid"}),
}
PUSH_PRIORITIES = ("very-low", "low", "normal", "high")
# FCM's longest time to live, 4 weeks (AndroidConfig.ttl, firebase.google.com/docs/reference/fcm/
# rest/v1/projects.messages#androidconfig); APNs and Web Push take longer, but one step's push
# goes to all three.
PUSH_MAX_TTL_SECONDS = 28 * 86400
# A collapse key every service takes as it is: a Web Push `Topic` is at most 32 characters of the
# URL- and filename-safe base64 alphabet (RFC 8030 section 5.4); APNs' `apns-collapse-id` takes
# up to 64 bytes, FCM's `collapse_key` any string.
PUSH_COLLAPSE_KEY = re.compile(r"[A-Za-z0-9_-]{1,32}")


def validate_channel_config(step_type: str, config: Mapping) -> None:
    """Raise StepConfigError for a key the channel does not read (a typo would otherwise be
    ignored), a webhook step without an http(s) `url`, a chat step whose `channel` is not a
    string, push options of the wrong type or out of bounds (`ttl` over FCM's 28 days, a
    `collapse_key` that is not a Web Push Topic), or a WhatsApp template of the wrong form."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    allowed = CHANNEL_CONFIG_KEYS.get(step_type)
    unknown = sorted(set(config) - allowed, key=str) if allowed is not None else []
    if unknown:
        takes = (f"takes {', '.join(f'{key!r}' for key in sorted(allowed))}"
                 if allowed else "takes no config")
        raise StepConfigError(f"Unknown key {unknown[0]!r}: a {step_type} step {takes}.")
    if step_type == "push":
        ttl = config.get("ttl")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int) or ttl < 0):
            raise StepConfigError('"ttl" must be a whole number of seconds ≥ 0.')
        if ttl is not None and ttl > PUSH_MAX_TTL_SECONDS:
            raise StepConfigError(f'"ttl" is at most {PUSH_MAX_TTL_SECONDS} seconds (28 days, '
                                  "FCM's limit).")
        if config.get("priority") is not None and config["priority"] not in PUSH_PRIORITIES:
            raise StepConfigError(f'"priority" must be one of: {", ".join(PUSH_PRIORITIES)}.')
        collapse_key = config.get("collapse_key", "")
        if not isinstance(collapse_key, str):
            raise StepConfigError('"collapse_key" must be a string.')
        if collapse_key and not PUSH_COLLAPSE_KEY.fullmatch(collapse_key):
            raise StepConfigError('"collapse_key" takes at most 32 letters, digits, "-" and "_" '
                                  "(a Web Push Topic, RFC 8030 section 5.4), e.g. \"order-42\".")
    if step_type == StepType.WEBHOOK:
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise StepConfigError('A webhook step needs {"url": "https://…"}.')
    if step_type == StepType.CHAT and not isinstance(config.get("channel", ""), str):
        raise StepConfigError('"channel" must be a string, e.g. "C024BE91L" or "#ops".')
    if step_type == "whatsapp":
        for name, example in (("template", "order_update"), ("language", "en_US"),
                              ("content_sid", "HXb5b62575e6e4ff6129ad7c8efe1f983e")):
            if not isinstance(config.get(name, ""), str):
                raise StepConfigError(f'"{name}" must be a string, e.g. "{example}".')
        sid = config.get("content_sid", "")
        if sid and not re.fullmatch(r"HX[0-9a-fA-F]{32}", sid):
            raise StepConfigError('"content_sid" must be a Twilio Content SID: "HX" and 32 '
                                  'hex digits.')


def delay_until(config: Mapping, variables: Mapping, now: datetime) -> tuple[datetime | None, str]:
    """When a delay step ends (UTC); (None, reason) when its timestamp is missing, unreadable or
    beyond what a datetime holds (year 1 with a positive offset, a duration past year 9999)."""
    if "until" in config:
        raw = conditions.resolve(config["until"], variables)
        try:
            moment = parse_datetime(raw) if isinstance(raw, str) else None
            if moment is not None:
                if timezone.is_naive(moment):
                    moment = timezone.make_aware(moment, UTC)
                moment = moment.astimezone(UTC)
        except (ValueError, OverflowError):  # well formed but impossible, e.g. month 13
            moment = None
        if moment is None:
            raw = None if raw is conditions.MISSING else raw
            return None, f"{config['until']} is not an ISO 8601 timestamp: {raw!r}"[:300]
        return moment, ""
    seconds = sum(float(config[unit]) * factor for unit, factor in DURATION_UNITS.items()
                  if unit in config)
    try:
        return now + timedelta(seconds=seconds), ""
    except OverflowError:  # a delay stored before MAX_DELAY_SECONDS was checked
        return None, f"A delay of {seconds:.0f} seconds ends beyond the year 9999."



# What `unless.is` may name: rendering.variables.engagement_at says when each is reached.


UNLESS_KEYS = ("step", "is")


def validate_unless(unless, earlier: Mapping[str, str]) -> None:
    """Raise StepConfigError (its `field` relative to the step: "unless.step", "unless.is") unless
    `unless` is {"step": <ref>, "is": one of ENGAGEMENT_STATES}, where <ref> is a channel step
    before this one. `earlier` maps each earlier step's ref to its type, in workflow order."""
    if not isinstance(unless, Mapping):
        raise StepConfigError('Expected {"step": "<earlier ref>", "is": "read"}.', "unless")
    unknown = set(unless) - set(UNLESS_KEYS)
    if unknown:
        raise StepConfigError(f"Unknown keys: {', '.join(sorted(unknown))}.", "unless")
    ref = unless.get("step")
    if not isinstance(ref, str) or not ref:
        raise StepConfigError("Expected the ref of an earlier channel step.", "unless.step")
    if ref not in earlier:
        raise StepConfigError(f"No step {ref!r} before this one: \"unless\" names an earlier "
                              "channel step.", "unless.step")
    if earlier[ref] not in CHANNEL_KEYS:
        raise StepConfigError(f"Step {ref!r} is a {earlier[ref]} step: it sends no message.",
                              "unless.step")
    if unless.get("is") not in ENGAGEMENT_STATES:
        raise StepConfigError(f"Expected one of: {', '.join(ENGAGEMENT_STATES)}.", "unless.is")


def duration_seconds(config: Mapping) -> float:
    """The seconds of a duration {"seconds"|"minutes"|"hours"|"days": number, …}, added up."""
    return sum(float(config[unit]) * factor for unit, factor in DURATION_UNITS.items()
               if unit in config)


def validate_duration(value, field: str) -> None:
    """Raise StepConfigError (at `field`) unless `value` is a duration longer than 0."""
    if (not isinstance(value, Mapping) or not value or set(value) - set(DURATION_UNITS)
            or any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0
                   for v in value.values())
            or duration_seconds(value) <= 0):
        raise StepConfigError('Expected {"seconds"|"minutes"|"hours"|"days": number}, longer '
                              'than 0.', field)


THROTTLE_KEYS = ("limit", "window", "key")


def validate_throttle_config(config: Mapping) -> None:
    """Raise StepConfigError unless `config` is {"limit": int ≥ 1, "window": duration,
    "key": optional path}."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    unknown = set(config) - set(THROTTLE_KEYS)
    if unknown:
        raise StepConfigError(f"Unknown keys: {', '.join(sorted(unknown))}.")
    limit = config.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise StepConfigError("Expected a whole number ≥ 1.", "config.limit")
    validate_duration(config.get("window"), "config.window")
    key = config.get("key")
    if key is not None and (not isinstance(key, str) or key.split(".", 1)[0]
                            not in conditions.ROOTS):
        raise StepConfigError(f"Expected a path starting with one of: "
                              f"{', '.join(conditions.ROOTS)}.", "config.key")


def validate_branches(step_type: str, branches: list, has_default: bool) -> None:
    """Raise StepConfigError (its `field` relative to the step, e.g. "branches[1].name") unless
    `branches` (each {"name", "conditions"?}, their steps checked elsewhere) suit `step_type`:
    only BRANCHING_STEP_TYPES have branches; a branch step has at least one, each with
    conditions, named uniquely (not "default"); a step with fixed branch names uses only those,
    without conditions, and has no "default"."""
    if step_type not in BRANCHING_STEP_TYPES:
        field = "branches" if branches else "default"
        raise StepConfigError(f"Only {' and '.join(sorted(BRANCHING_STEP_TYPES))} steps have "
                              f"branches.", field)
    fixed = BRANCHING_STEP_TYPES[step_type]
    if fixed is None and not branches:
        raise StepConfigError('Expected at least one branch: [{"name": "pro", "conditions": '
                              '{…}, "steps": […]}].', "branches")
    if fixed is not None and has_default:
        raise StepConfigError(f"A {step_type} step has no default branch; its branches are: "
                              f"{', '.join(fixed)}.", "default")
    seen: set[str] = set()
    for index, item in enumerate(branches):
        name, where = item.get("name"), f"branches[{index}]"
        if name in seen:
            raise StepConfigError(f"Branch names must be unique: {name}.", f"{where}.name")
        seen.add(name)
        if fixed is None:
            if name == DEFAULT_BRANCH:
                raise StepConfigError('"default" is the default branch: give it as '
                                      '{"default": {"steps": […]}}.', f"{where}.name")
            if not item.get("conditions"):
                raise StepConfigError("Each branch needs conditions; the default branch is "
                                      "taken when none holds.", f"{where}.conditions")
        else:
            if name not in fixed:
                raise StepConfigError(f"Expected one of: {', '.join(fixed)}.", f"{where}.name")
            if item.get("conditions"):
                raise StepConfigError(f"The branches of a {step_type} step have no conditions.",
                                      f"{where}.conditions")

DIGEST_KEYS = ("window", "key", "max_events", "first_at_once", "skip_read")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_HELP = ('Expected {"seconds"|"minutes"|"hours"|"days": number}, {"daily": "HH:MM"} or '
                '{"weekly": {"day": "mon", "time": "HH:MM"}}.')


def _clock(value, field: str) -> None:
    if (not isinstance(value, str) or len(value) != 5 or value[2] != ":"
            or not (value[:2].isdigit() and value[3:].isdigit())
            or int(value[:2]) > 23 or int(value[3:]) > 59):
        raise StepConfigError('Expected a local time "HH:MM", e.g. "09:00".', field)


def validate_digest_config(config: Mapping) -> None:
    """Raise StepConfigError (its `field` e.g. "config.window.daily") unless `config` is
    {"window": duration | {"daily": "HH:MM"} | {"weekly": {"day": "mon", "time": "HH:MM"}},
    "key": optional path, "max_events": optional int ≥ 1, "first_at_once": optional bool,
    "skip_read": optional bool}."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    unknown = set(config) - set(DIGEST_KEYS)
    if unknown:
        raise StepConfigError(f"Unknown keys: {', '.join(sorted(unknown))}.")
    window = config.get("window")
    if not isinstance(window, Mapping) or not window:
        raise StepConfigError(_WINDOW_HELP, "config.window")
    if "daily" in window or "weekly" in window:
        if len(window) != 1:
            raise StepConfigError(_WINDOW_HELP, "config.window")
        if "daily" in window:
            _clock(window["daily"], "config.window.daily")
        else:
            weekly = window["weekly"]
            if not isinstance(weekly, Mapping):
                raise StepConfigError('Expected {"day": "mon", "time": "HH:MM"}.',
                                      "config.window.weekly")
            extra = set(weekly) - {"day", "time"}
            if extra:
                raise StepConfigError(f"Unknown keys: {', '.join(sorted(extra))}.",
                                      "config.window.weekly")
            if weekly.get("day") not in WEEKDAYS:
                raise StepConfigError(f"Expected one of: {', '.join(WEEKDAYS)}.",
                                      "config.window.weekly.day")
            _clock(weekly.get("time"), "config.window.weekly.time")
    else:
        validate_duration(window, "config.window")
        if duration_seconds(window) > MAX_DELAY_SECONDS:
            raise StepConfigError(f"A window is at most {MAX_DELAY_SECONDS // 86400} days.",
                                  "config.window")
    key = config.get("key")
    if key is not None and (not isinstance(key, str) or key.split(".", 1)[0]
                            not in conditions.ROOTS):
        raise StepConfigError(f"Expected a path starting with one of: "
                              f"{', '.join(conditions.ROOTS)}.", "config.key")
    max_events = config.get("max_events")
    if max_events is not None and (isinstance(max_events, bool)
                                   or not isinstance(max_events, int) or max_events < 1):
        raise StepConfigError("Expected a whole number ≥ 1.", "config.max_events")
    for name in ("first_at_once", "skip_read"):
        if name in config and not isinstance(config[name], bool):
            raise StepConfigError("Expected true or false.", f"config.{name}")


APPROVAL_KEYS = ("question", "details", "timeout", "until", "default", "channels")


def validate_approval_config(config: Mapping) -> None:
    """Raise StepConfigError (naming "config.<key>") unless `config` is an approval's:
    {"question": text, "details": text, "timeout": duration | "until": "data.<path>",
    "default": "approved" | "rejected" (or Liquid), "channels": ["in_app", "email"]}."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    unknown = set(config) - set(APPROVAL_KEYS)
    if unknown:
        raise StepConfigError(f"Unknown keys: {', '.join(sorted(unknown))}; expected: "
                              f"{', '.join(APPROVAL_KEYS)}.")
    question = config.get("question")
    if not isinstance(question, str) or not question.strip():
        raise StepConfigError("An approval asks a question (text or Liquid).", "config.question")
    if not isinstance(config.get("details", ""), str):
        raise StepConfigError("Expected text.", "config.details")
    if "timeout" in config and "until" in config:
        raise StepConfigError('Give "timeout" or "until", not both.', "config.timeout")
    if "timeout" in config:
        validate_duration(config["timeout"], "config.timeout")
        if duration_seconds(config["timeout"]) > MAX_DELAY_SECONDS:
            raise StepConfigError("At most ten years.", "config.timeout")
    if "until" in config:
        path = config["until"]
        if not isinstance(path, str) or path.split(".", 1)[0] not in conditions.ROOTS:
            raise StepConfigError(f"Expected a path starting with one of: "
                                  f"{', '.join(conditions.ROOTS)}.", "config.until")
    default = config.get("default", "rejected")
    if not isinstance(default, str) or (default not in ("approved", "rejected")
                                        and "{{" not in default):
        raise StepConfigError('Expected "approved" or "rejected".', "config.default")
    channels = config.get("channels", ["in_app", "email"])
    if (not isinstance(channels, list) or not channels
            or any(channel not in ("in_app", "email", "chat") for channel in channels)):
        raise StepConfigError('Expected a non-empty list of "in_app", "email" and "chat" '
                              '(Slack).', "config.channels")


# The channels a route step may try: every channel whose address is the recipient's own (a
# webhook's address is its step's url, so it has no place in a person's route).
ROUTE_CHANNELS = tuple(key for key in CHANNEL_KEYS if key != StepType.WEBHOOK)
ROUTE_KEYS = ("channels", "ttl", "success", "always")


def validate_route_config(config: Mapping) -> None:
    """Raise StepConfigError (its `field` "config.<key>") unless `config` is {"channels": [two
    or more distinct ROUTE_CHANNELS, cheapest first], "ttl": duration, "success": one of
    ENGAGEMENT_STATES, "always": optional channels of `channels`}."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    unknown = set(config) - set(ROUTE_KEYS)
    if unknown:
        raise StepConfigError(f"Unknown keys: {', '.join(sorted(map(str, unknown)))}.")
    channels = config.get("channels")
    if (not isinstance(channels, list) or len(channels) < 2
            or not all(isinstance(c, str) for c in channels)):
        raise StepConfigError('Expected two or more channels, cheapest first, e.g. '
                              '["in_app", "email", "sms"].', "config.channels")
    unknown = [c for c in channels if c not in ROUTE_CHANNELS]
    if unknown:
        raise StepConfigError(f"Unknown channels: {', '.join(unknown)}. A route may use: "
                              f"{', '.join(ROUTE_CHANNELS)}.", "config.channels")
    repeated = sorted({c for c in channels if channels.count(c) > 1})
    if repeated:
        raise StepConfigError(f"Each channel once: {', '.join(repeated)} is repeated.",
                              "config.channels")
    validate_duration(config.get("ttl"), "config.ttl")
    if duration_seconds(config["ttl"]) > MAX_DELAY_SECONDS:
        raise StepConfigError(f"A ttl is at most {MAX_DELAY_SECONDS // 86400} days.",
                              "config.ttl")
    if config.get("success") not in ENGAGEMENT_STATES:
        raise StepConfigError(f"Expected one of: {', '.join(ENGAGEMENT_STATES)}.",
                              "config.success")
    always = config.get("always", [])
    if not isinstance(always, list) or not all(isinstance(c, str) for c in always):
        raise StepConfigError('Expected a list of the route\'s channels, e.g. ["in_app"].',
                              "config.always")
    outside = [c for c in always if c not in channels]
    if outside:
        raise StepConfigError(f"Not among the route's channels: {', '.join(outside)}.",
                              "config.always")


def route_interval_seconds(config: Mapping) -> float:
    """How long a route waits for success before its next channel: ttl ÷ (channels − 1)."""
    return duration_seconds(config["ttl"]) / (len(config["channels"]) - 1)
