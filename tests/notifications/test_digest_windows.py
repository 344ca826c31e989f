"""Property tests of the digest window's arithmetic (engine.window_closes_at) across DST changes,
in zones with a 1-hour change (New York, Berlin), none (Kolkata) and a 45-minute offset with a
change (Chatham)."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.engine import window_closes_at
from notifications.engine.validation import WEEKDAYS

ZONES = ("America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham")
instants = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                        timezones=st.just(UTC))
clocks = st.tuples(st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 45, 59])).map(
    lambda hm: f"{hm[0]:02d}:{hm[1]:02d}")


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _wall_time_or_jump(closes: datetime, tz: ZoneInfo, clock: str) -> bool:
    """The close reads `clock` on the local wall clock, or `clock` did not exist that day and
    the close is the moment the clocks jumped over it (the first valid minute after it)."""
    hour, minute = (int(part) for part in clock.split(":"))
    local = _local(closes, tz)
    if (local.hour, local.minute, local.second) == (hour, minute, 0):
        return True
    wanted = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    before = _local(closes - timedelta(minutes=1), tz)
    return before < wanted < local  # the wall clock skipped from `before` to `local`


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(ZONES), opened=instants, clock=clocks)
def test_a_daily_window_closes_at_the_next_local_time_within_a_day(name, opened, clock):
    tz = ZoneInfo(name)
    closes = window_closes_at({"daily": clock}, opened, name)
    assert opened < closes <= opened + timedelta(hours=26)
    assert _wall_time_or_jump(closes, tz, clock)
    # It is the next one, not a later one: opening a second before it gives the same close.
    assert window_closes_at({"daily": clock}, closes - timedelta(seconds=1), name) == closes


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(ZONES), opened=instants, clock=clocks,
       day=st.sampled_from(WEEKDAYS))
def test_a_weekly_window_closes_on_its_day_at_its_time_within_a_week(name, opened, clock, day):
    tz = ZoneInfo(name)
    closes = window_closes_at({"weekly": {"day": day, "time": clock}}, opened, name)
    assert opened < closes <= opened + timedelta(days=7, hours=2)
    assert _local(closes, tz).weekday() == WEEKDAYS.index(day)
    assert _wall_time_or_jump(closes, tz, clock)
    # Opening one second before the close gives the same close; opening at it, a week later.
    assert window_closes_at({"weekly": {"day": day, "time": clock}},
                            closes - timedelta(seconds=1), name) == closes
    later = window_closes_at({"weekly": {"day": day, "time": clock}}, closes, name)
    assert timedelta(days=6, hours=22) <= later - closes <= timedelta(days=7, hours=2)


@settings(max_examples=100, deadline=None)
@given(opened=instants, seconds=st.integers(1, 10 * 86400))
def test_a_duration_window_is_elapsed_time_whatever_the_zone(opened, seconds):
    for name in ZONES:
        assert window_closes_at({"seconds": seconds}, opened, name) == opened + timedelta(
            seconds=seconds)


def test_a_repeated_local_time_closes_at_its_first_occurrence():
    # 1 November 2026, New York: 01:30 happens at 05:30 UTC (EDT) and again at 06:30 (EST).
    opened = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert window_closes_at({"daily": "01:30"}, opened, "America/New_York") == datetime(
        2026, 11, 1, 5, 30, tzinfo=UTC)


def test_a_skipped_local_time_closes_when_the_clocks_jump():
    # 27 September 2026, Chatham: 02:45 local jumps to 03:45 (13:45 → 14:45 offset), i.e.
    # 14:00 UTC on the 26th.
    opened = datetime(2026, 9, 26, 10, 0, tzinfo=UTC)
    closes = window_closes_at({"daily": "03:00"}, opened, "Pacific/Chatham")
    assert _local(closes, ZoneInfo("Pacific/Chatham")) == datetime(2026, 9, 27, 3, 45)
    assert closes == datetime(2026, 9, 26, 14, 0, tzinfo=UTC)
