"""Occurrence arithmetic of schedules: properties across DST in four zones, and the rules."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.recurrence import (
    RepeatError,
    latest_due,
    local_to_utc,
    occurrences,
    validate_repeat,
    zone,
)

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

times = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.integers(0, 59))
rules = st.one_of(
    st.fixed_dictionaries({"frequency": st.just("daily"), "at": times}),
    st.fixed_dictionaries({"frequency": st.just("weekly"), "at": times,
                           "days": st.lists(st.sampled_from(DAYS), min_size=1, unique=True)}),
    st.fixed_dictionaries({"frequency": st.just("monthly"), "at": times,
                           "day_of_month": st.integers(1, 31)}),
    st.fixed_dictionaries({"frequency": st.just("hourly"), "at": times}),
)
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31),
                        timezones=st.just(UTC))


def wall(moment: datetime, tz) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


@settings(max_examples=200, deadline=None)
@given(rule=rules, name=st.sampled_from(ZONES), after=instants)
def test_occurrences_are_strictly_increasing_after_the_start_and_each_fires_once(rule, name,
                                                                                 after):
    found = occurrences(rule, zone(name), after=after, count=12)

    assert len(found) == 12
    assert all(moment > after for moment in found)
    assert all(a < b for a, b in zip(found, found[1:], strict=False))
    assert all(moment.tzinfo is UTC or moment.utcoffset() == timedelta(0) for moment in found)


@settings(max_examples=200, deadline=None)
@given(rule=rules, name=st.sampled_from(ZONES), after=instants)
def test_each_occurrence_is_at_the_rules_local_time_or_the_first_valid_minute_after_it(
        rule, name, after):
    tz = zone(name)
    hour, minute = (int(part) for part in rule["at"].split(":"))
    for moment in occurrences(rule, tz, after=after, count=6):
        local = wall(moment, tz)
        if local.minute == minute and (rule["frequency"] == "hourly" or local.hour == hour):
            continue
        # Skipped by a DST jump: the instant is the jump, where the local clock jumped past.
        before = wall(moment - timedelta(minutes=1), tz)
        assert local - before > timedelta(minutes=1), (moment, local)


@settings(max_examples=100, deadline=None)
@given(rule=rules, name=st.sampled_from(ZONES), after=instants,
       split=st.integers(1, 10))
def test_asking_from_any_occurrence_continues_the_same_sequence(rule, name, after, split):
    tz = zone(name)
    found = occurrences(rule, tz, after=after, count=12)

    assert occurrences(rule, tz, after=found[split - 1], count=12 - split) == found[split:]


@settings(max_examples=100, deadline=None)
@given(rule=rules, name=st.sampled_from(ZONES), after=instants, gap=st.integers(0, 30 * 24))
def test_a_missed_stretch_has_one_latest_due_occurrence(rule, name, after, gap):
    tz = zone(name)
    now = after + timedelta(hours=gap)
    due = [m for m in occurrences(rule, tz, after=after, count=800) if m <= now]

    assert latest_due(rule, tz, after=after, now=now) == (due[-1] if due else None)


def test_a_time_that_occurs_twice_fires_once_at_its_first_occurrence():
    ny = zone("America/New_York")  # 2026-11-01 01:30 happens at 05:30 and 06:30 UTC
    found = occurrences({"frequency": "daily", "at": "01:30"}, ny,
                        after=datetime(2026, 10, 31, 12, tzinfo=UTC), count=2)

    assert found == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
                     datetime(2026, 11, 2, 6, 30, tzinfo=UTC)]


@pytest.mark.parametrize("name, local, expected", [
    # New York springs forward at 02:00 → 03:00 on 2026-03-08.
    ("America/New_York", datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
    # Berlin at 02:00 → 03:00 on 2026-03-29.
    ("Europe/Berlin", datetime(2026, 3, 29, 2, 15), datetime(2026, 3, 29, 1, 0, tzinfo=UTC)),
    # Chatham at 02:45 → 03:45 on 2026-09-27.
    ("Pacific/Chatham", datetime(2026, 9, 27, 3, 0), datetime(2026, 9, 26, 14, 0, tzinfo=UTC)),
    # Kolkata has no DST: every local time exists once.
    ("Asia/Kolkata", datetime(2026, 3, 8, 2, 30), datetime(2026, 3, 7, 21, 0, tzinfo=UTC)),
])
def test_a_time_that_does_not_exist_fires_at_the_first_valid_minute_after(name, local, expected):
    assert local_to_utc(local, zone(name)) == expected


def test_weekly_monthly_and_hourly_rules_in_a_fixed_zone():
    berlin = zone("Europe/Berlin")
    after = datetime(2026, 1, 1, tzinfo=UTC)  # a Thursday

    weekly = occurrences({"frequency": "weekly", "at": "09:00", "days": ["mon", "fri"]},
                         berlin, after=after, count=3)
    monthly = occurrences({"frequency": "monthly", "at": "08:00", "day_of_month": 31},
                          berlin, after=after, count=3)
    hourly = occurrences({"frequency": "hourly", "at": "00:15"}, berlin, after=after, count=2)

    assert [wall(m, berlin) for m in weekly] == [
        datetime(2026, 1, 2, 9), datetime(2026, 1, 5, 9), datetime(2026, 1, 9, 9)]
    assert [wall(m, berlin) for m in monthly] == [  # the month's last day when shorter
        datetime(2026, 1, 31, 8), datetime(2026, 2, 28, 8), datetime(2026, 3, 31, 8)]
    assert hourly == [datetime(2026, 1, 1, 0, 15, tzinfo=UTC),
                      datetime(2026, 1, 1, 1, 15, tzinfo=UTC)]


def test_start_and_end_bound_the_occurrences():
    utc = zone("UTC")
    starts, ends = datetime(2026, 5, 10, tzinfo=UTC), datetime(2026, 5, 13, 9, tzinfo=UTC)

    found = occurrences({"frequency": "daily", "at": "09:00"}, utc,
                        after=datetime(2026, 1, 1, tzinfo=UTC), count=10, starts_at=starts,
                        ends_at=ends)

    assert found == [datetime(2026, 5, d, 9, tzinfo=UTC) for d in (10, 11, 12)]


@pytest.mark.parametrize("repeat, field", [
    ({"frequency": "yearly"}, "frequency"),
    ({"frequency": "daily", "at": "9:00"}, "at"),
    ({"frequency": "daily", "at": "24:00"}, "at"),
    ({"frequency": "weekly", "at": "09:00"}, "days"),
    ({"frequency": "weekly", "days": ["monday"]}, "days"),
    ({"frequency": "monthly"}, "day_of_month"),
    ({"frequency": "monthly", "day_of_month": 32}, "day_of_month"),
    ({"frequency": "daily", "every": 2}, "every"),
])
def test_a_bad_rule_names_its_field(repeat, field):
    with pytest.raises(RepeatError) as raised:
        validate_repeat(repeat)
    assert raised.value.field == field
