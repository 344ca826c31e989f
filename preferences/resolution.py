"""The decision: may this workflow reach this person on this channel, and may it now?

Pure functions of preference rows and a clock (no queries here; selectors.py loads the rows).
Most specific wins, first among the person's own sets (their set for the tenant, then their own
set), then in the tenant's default set, then the workflow's default:

    workflow × channel → workflow → category × channel → category → channel
      → (same levels in the tenant default) → workflow default → allowed

`critical` workflows are always allowed. The Decision names the rule that decided, e.g.
`recipient:categories.marketing.channel_types.email`, so a run's timeline can say why.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Levels from most to least specific: (name, section, wants the channel's entry).
LEVELS = (
    ("workflow_channel", "workflows", True),
    ("workflow", "workflows", False),
    ("category_channel", "categories", True),
    ("category", "categories", False),
    ("channel", "channel_types", True),
)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # critical, recipient_tenant, recipient, tenant_default, workflow_default or default
    source: str
    path: str = ""  # where in that set, e.g. "workflows.welcome.channel_types.email"

    def __bool__(self) -> bool:
        return self.allowed

    @property
    def rule(self) -> str:
        return f"{self.source}:{self.path}" if self.path else self.source


@dataclass(frozen=True)
class Choices:
    """The part of a PreferenceSet the decision reads; built from a row or a dict."""

    source: str
    channel_types: Mapping
    categories: Mapping
    workflows: Mapping
    quiet_hours: object = None

    @classmethod
    def of(cls, row) -> "Choices":
        return cls(source=row.scope, channel_types=row.channel_types or {},
                   categories=row.categories or {}, workflows=row.workflows or {},
                   quiet_hours=row.quiet_hours)


def _lookup(choices: Choices, level: str, section: str, wants_channel: bool, *,
            workflow_key: str, category: str, channel: str) -> tuple[bool, str] | None:
    if section == "channel_types":
        value = choices.channel_types.get(channel)
        return (value, f"channel_types.{channel}") if isinstance(value, bool) else None
    key = workflow_key if section == "workflows" else category
    if not key:
        return None
    entry = getattr(choices, section).get(key)
    if wants_channel:
        if isinstance(entry, Mapping):
            value = (entry.get("channel_types") or {}).get(channel)
            if isinstance(value, bool):
                return value, f"{section}.{key}.channel_types.{channel}"
        return None
    return (entry, f"{section}.{key}") if isinstance(entry, bool) else None


def decide(*, workflow_key: str, category: str, critical: bool, channel: str,
           person: Sequence[Choices] = (), tenant_default: Choices | None = None,
           workflow_default: Mapping | None = None) -> Decision:
    """The decision for one channel of one workflow. `person` is most specific first
    (the person's set for the tenant, then their own set)."""
    if critical:
        return Decision(True, "critical")
    where = {"workflow_key": workflow_key, "category": category, "channel": channel}
    for layer in (tuple(person), (tenant_default,) if tenant_default else ()):
        for level in LEVELS:
            for choices in layer:
                found = _lookup(choices, *level, **where)
                if found is not None:
                    return Decision(found[0], choices.source, found[1])
    value = (workflow_default or {}).get(channel)
    if isinstance(value, bool):
        return Decision(value, "workflow_default", f"channel_types.{channel}")
    return Decision(True, "default")


# --- Quiet hours ------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time
    source: str

    @classmethod
    def parse(cls, value, source: str) -> "QuietHours | None":
        if not isinstance(value, Mapping):
            return None
        try:
            start, end = time.fromisoformat(value["start"]), time.fromisoformat(value["end"])
        except (KeyError, TypeError, ValueError):
            return None
        return None if start == end else cls(start, end, source)


def quiet_hours_of(sets: Sequence[Choices]) -> QuietHours | None:
    """The first set (most specific first) that says anything: a window, or `false` (none)."""
    for choices in sets:
        if choices.quiet_hours is not None:
            return QuietHours.parse(choices.quiet_hours, choices.source)
    return None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _at(day, moment: time, tz: ZoneInfo) -> datetime:
    """A wall-clock time on a local day, in UTC. A time skipped by a DST change (the gap) is
    read with the offset from before the change, so it lands just after the gap."""
    return datetime.combine(day, moment, tzinfo=tz).astimezone(UTC)


def quiet_until(window: QuietHours | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the quiet window `now` falls in ends (UTC), or None outside it.

    Windows are wall-clock times in the person's zone, [start, end), and may span midnight
    (22:00–08:00). Computed on local dates, so a DST change in the night moves the UTC end.
    """
    if window is None:
        return None
    local = now.astimezone(tz)
    wall, today = local.time().replace(tzinfo=None), local.date()
    if window.start < window.end:
        inside, end_day = window.start <= wall < window.end, today
    else:
        inside = wall >= window.start or wall < window.end
        end_day = today + timedelta(days=1) if wall >= window.start else today
    if not inside:
        return None
    end = _at(end_day, window.end, tz)
    return end if end > now else None
