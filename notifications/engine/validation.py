"""What a workflow's steps may say: the checks `PUT workflows/{key}` runs on each step's config
(StepConfigError names the problem), and the arithmetic of a delay step."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .. import conditions
from ..channels import CHANNEL_KEYS
from ..models import StepType

# Step types the engine runs (every channel, and the function steps); the others are refused
# when a workflow is saved.
SUPPORTED_STEP_TYPES = frozenset({*CHANNEL_KEYS, StepType.DELAY, StepType.THROTTLE,
                                  StepType.ROUTE})
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


def validate_channel_config(step_type: str, config: Mapping) -> None:
    """Raise StepConfigError for a webhook step without an http(s) `url`, or a chat step whose
    `channel` is not a string."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    if step_type == StepType.WEBHOOK:
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise StepConfigError('A webhook step needs {"url": "https://…"}.')
    if step_type == StepType.CHAT and not isinstance(config.get("channel", ""), str):
        raise StepConfigError('"channel" must be a string, e.g. "C024BE91L" or "#ops".')
    if step_type == "whatsapp":
        for name, example in (("template", "order_update"), ("language", "en_US")):
            if not isinstance(config.get(name, ""), str):
                raise StepConfigError(f'"{name}" must be a string, e.g. "{example}".')


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



# What `unless.is` may name, and which Message timestamps (or statuses) prove the state reached.
ENGAGEMENT_STATES = ("seen", "read", "clicked", "delivered")


def validate_unless(unless, earlier: Mapping[str, str]) -> None:
    """Raise StepConfigError (its `field` relative to the step: "unless.step", "unless.is") unless
    `unless` is {"step": <ref>, "is": one of ENGAGEMENT_STATES}, where <ref> is a channel step
    before this one. `earlier` maps each earlier step's ref to its type, in workflow order."""
    if not isinstance(unless, Mapping):
        raise StepConfigError('Expected {"step": "<earlier ref>", "is": "read"}.', "unless")
    unknown = set(unless) - {"step", "is"}
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


def validate_throttle_config(config: Mapping) -> None:
    """Raise StepConfigError unless `config` is {"limit": int ≥ 1, "window": duration,
    "key": optional path}."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    unknown = set(config) - {"limit", "window", "key"}
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
