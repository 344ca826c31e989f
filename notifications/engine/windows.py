"""Send windows: the days and wall-clock hours in which a channel step may send.

A window is `{"days": ["mon", …], "start": "08:00", "end": "17:30", "timezone": "recipient" |
IANA name}`. It is open while the local wall clock (in that zone) reads a time in [start, end) on
one of `days`; an `end` before `start` spans midnight and belongs to the day it starts on
(fri 22:00–06:00 is open Friday night until Saturday 06:00). Wall-clock semantics across DST
changes (zone data: the IANA tz database through `zoneinfo`):

- a start time skipped by a spring-forward change opens the window at the first minute after the
  gap (02:30 on the night New York skips 02:00–03:00 opens at 03:00 EDT);
- an hour repeated by a fall-back change is in the window both times if its wall-clock times are.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON_DAYS = 8  # every window with at least one day opens within a week and a day


class WindowError(ValueError):
    """A send window that is not well formed; `field` names where (relative to the window)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class SendWindow:
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: time
    end: time
    timezone: str  # "recipient" or an IANA name

    def zone(self, recipient_timezone: str) -> ZoneInfo:
        """The window's zone: its own, or the recipient's (UTC when unknown or unset)."""
        name = recipient_timezone if self.timezone == "recipient" else self.timezone
        try:
            return ZoneInfo(name) if name else ZoneInfo("UTC")
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")


def _clock(value, field: str) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise WindowError(field, 'Expected a time "HH:MM", e.g. "08:00".')
    try:
        return time(int(value[:2]), int(value[3:]))
    except ValueError as exc:
        raise WindowError(field, 'Expected a time "HH:MM", e.g. "08:00".') from exc


WINDOW_KEYS = ("days", "start", "end", "timezone")  # what a step's `send_window` may hold


def parse_window(raw) -> SendWindow:
    """The SendWindow of a step's `send_window` JSON; WindowError naming the bad key."""
    if not isinstance(raw, Mapping):
        raise WindowError("", 'Expected {"days": [...], "start": "HH:MM", "end": "HH:MM", '
                              '"timezone": "recipient"}.')
    unknown = set(raw) - set(WINDOW_KEYS)
    if unknown:
        raise WindowError("", f"Unknown keys: {', '.join(sorted(unknown))}.")
    days = raw.get("days", list(DAYS))
    if (not isinstance(days, list) or not days
            or any(not isinstance(day, str) or day not in DAYS for day in days)):
        raise WindowError("days", f"Expected a non-empty list of: {', '.join(DAYS)}.")
    start, end = _clock(raw.get("start"), "start"), _clock(raw.get("end"), "end")
    if start == end:
        raise WindowError("end", "The window must not end when it starts.")
    tz = raw.get("timezone", "recipient")
    if not isinstance(tz, str) or not tz:
        raise WindowError("timezone", 'Expected "recipient" or an IANA time zone name.')
    if tz != "recipient":
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise WindowError("timezone", f"Unknown time zone {tz!r}; expected \"recipient\" "
                                          "or an IANA name such as \"Europe/Berlin\".") from exc
    return SendWindow(frozenset(DAYS.index(day) for day in days), start, end, tz)


def is_open(window: SendWindow, moment: datetime, tz: ZoneInfo) -> bool:
    """Whether the window is open at aware `moment`, read on the wall clock of `tz`."""
    local = moment.astimezone(tz)
    wall, weekday = local.time().replace(tzinfo=None), local.weekday()
    if window.start < window.end:
        return weekday in window.days and window.start <= wall < window.end
    return ((weekday in window.days and wall >= window.start)
            or ((weekday - 1) % 7 in window.days and wall < window.end))


def _transitions(tz: ZoneInfo, begin: datetime, end: datetime) -> list[datetime]:
    """The instants (UTC, whole minutes) in (begin, end] at which `tz`'s UTC offset changes."""
    found, step = [], timedelta(hours=1)
    moment = begin
    while moment < end:
        after = min(moment + step, end)
        if moment.astimezone(tz).utcoffset() != after.astimezone(tz).utcoffset():
            low, high = moment, after  # the offset of `low` differs from that of `high`
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                middle = middle.replace(second=0, microsecond=0)
                if middle <= low:
                    break
                if middle.astimezone(tz).utcoffset() == low.astimezone(tz).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high.replace(second=0, microsecond=0))
        moment = after
    return found


def next_open(window: SendWindow, now: datetime, tz: ZoneInfo) -> datetime | None:
    """None when the window is open at aware `now`; else the first instant after `now` (UTC)
    at which it is open. The window opens either at a start time (either occurrence of a
    repeated one) or when a DST change moves the wall clock into it, so those are the
    candidates; the earliest that is open is the answer."""
    if is_open(window, now, tz):
        return None
    now = now.astimezone(UTC)
    today = now.astimezone(tz).date()
    candidates = []
    for offset in range(-1, HORIZON_DAYS + 1):
        naive = datetime.combine(today + timedelta(days=offset), window.start)
        for fold in (0, 1):
            candidates.append(naive.replace(tzinfo=tz, fold=fold).astimezone(UTC))
    horizon = now + timedelta(days=HORIZON_DAYS + 1)
    candidates += _transitions(tz, now, horizon)
    opening = [c for c in candidates if c > now and is_open(window, c, tz)]
    return min(opening) if opening else None
