"""When a schedule's occurrences fall: pure arithmetic on a repeat rule, a time zone and a clock.

A repeat rule is a dict: `{"frequency": "hourly" | "daily" | "weekly" | "monthly", "at": "HH:MM",
"days": ["mon", …], "day_of_month": 1..31}`. Hourly fires at the minute of `at` every hour;
daily at `at` every day; weekly at `at` on `days`; monthly at `at` on `day_of_month` (the month's
last day when it is shorter). `days` also narrows hourly and daily rules.

Local times are turned into instants by the IANA rules of `zoneinfo` (PEP 495): a local time
that occurs twice (clocks going back) fires once, at its first occurrence (fold=0); one that does
not exist (clocks going forward) fires at the first valid minute after it, i.e. the moment the
clocks jump. Instants are strictly increasing, so two local times that land on the same instant
fire once.
"""

import calendar
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FREQUENCIES = ("hourly", "daily", "weekly", "monthly")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RepeatError(ValueError):
    """A repeat rule that cannot be used: `field` names the bad key, the message says why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def validate_repeat(repeat: Mapping) -> dict:
    """The rule, normalised ({"frequency", "at", "days", "day_of_month"}); raises RepeatError."""
    if not isinstance(repeat, Mapping):
        raise RepeatError("repeat", "Expected an object.")
    unknown = sorted(set(repeat) - {"frequency", "at", "days", "day_of_month"})
    if unknown:
        raise RepeatError(unknown[0], "Unknown field.")
    frequency = repeat.get("frequency")
    if frequency not in FREQUENCIES:
        raise RepeatError("frequency", f"Expected one of {', '.join(FREQUENCIES)}.")
    at = repeat.get("at", "00:00")
    try:
        hour, minute = (int(part) for part in str(at).split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60) or len(str(at)) != 5:
            raise ValueError
    except ValueError:
        raise RepeatError("at", 'Expected a local time "HH:MM", e.g. "09:00".') from None
    days = repeat.get("days") or []
    if not isinstance(days, list) or any(day not in DAYS for day in days):
        raise RepeatError("days", f"Expected a list of {', '.join(DAYS)}.")
    if frequency == "weekly" and not days:
        raise RepeatError("days", "A weekly rule names at least one day.")
    day_of_month = repeat.get("day_of_month")
    if frequency == "monthly" and (not isinstance(day_of_month, int)
                                   or isinstance(day_of_month, bool)
                                   or not 1 <= day_of_month <= 31):
        raise RepeatError("day_of_month", "A monthly rule needs a day_of_month from 1 to 31.")
    return {"frequency": frequency, "at": f"{hour:02d}:{minute:02d}",
            "days": [day for day in DAYS if day in days],
            "day_of_month": day_of_month if frequency == "monthly" else None}


def zone(name: str) -> ZoneInfo:
    """The ZoneInfo of an IANA name; UTC for a blank or unknown one (a recipient's profile)."""
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    """The instant (aware, UTC) of the naive local wall time `local` in `tz`: the first of two
    for a repeated time, the moment the clocks jump for a skipped one (see the module doc)."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == local:
        return first  # exists (and, if repeated, this is its first occurrence)
    # Skipped: fold=1 reads it with the offset after the jump, an instant before the jump.
    moment = local.replace(tzinfo=tz, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while moment.astimezone(tz).replace(tzinfo=None) < local:
        moment += timedelta(minutes=1)
    return moment


def _local_times(rule: Mapping, start: date) -> Iterator[datetime]:
    """The rule's naive local wall times from `start` on, in order, forever."""
    hour, minute = (int(part) for part in rule["at"].split(":"))
    days = {DAYS.index(day) for day in rule["days"]}
    day = start
    while True:
        if not days or day.weekday() in days or rule["frequency"] == "monthly":
            if rule["frequency"] == "hourly":
                for h in range(24):
                    yield datetime.combine(day, time(h, minute))
            elif rule["frequency"] in ("daily", "weekly") or day.day == min(rule["day_of_month"],
                                calendar.monthrange(day.year, day.month)[1]):
                yield datetime.combine(day, time(hour, minute))
        day += timedelta(days=1)


def occurrences(repeat: Mapping, tz: ZoneInfo, *, after: datetime, count: int,
                starts_at: datetime | None = None,
                ends_at: datetime | None = None) -> list[datetime]:
    """The next `count` occurrences (aware, UTC, strictly increasing) strictly after `after`
    (aware), none before `starts_at` nor at or after `ends_at`. `repeat` is a validated rule."""
    rule = validate_repeat(repeat)
    floor = max(after, starts_at - timedelta(microseconds=1)) if starts_at else after
    found: list[datetime] = []
    start = (floor.astimezone(tz) - timedelta(days=2)).date()
    for local in _local_times(rule, start):
        moment = local_to_utc(local, tz)
        if ends_at is not None and moment >= ends_at:
            break
        if moment > floor and (not found or moment > found[-1]):
            found.append(moment)
            if len(found) == count:
                break
        if local.date() > start + timedelta(days=400 * max(count, 1)):
            break  # a rule that never matches would otherwise loop forever
    return found


def latest_due(repeat: Mapping, tz: ZoneInfo, *, after: datetime, now: datetime,
               starts_at: datetime | None = None,
               ends_at: datetime | None = None) -> datetime | None:
    """The last occurrence in (`after`, `now`], or None: the one a schedule fires when it was
    missed (workers down), so missed slots fire once, not once each."""
    latest = None
    cursor = after
    while True:
        [*nxt] = occurrences(repeat, tz, after=cursor, count=64, starts_at=starts_at,
                             ends_at=ends_at)
        due = [moment for moment in nxt if moment <= now]
        if due:
            latest = due[-1]
        if len(due) < len(nxt) or not nxt:
            return latest
        cursor = due[-1]
