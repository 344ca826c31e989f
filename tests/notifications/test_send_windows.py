"""Send windows: the arithmetic (property tests across DST in four zones, against a minute-by-
minute reference) and the engine (a run outside its window waits, never drops; quiet hours still
apply on top; cancellation stops a waiting run)."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_q.models import OrmQ
from hypothesis import given, settings
from hypothesis import strategies as st

from notifications.engine.windows import DAYS, SendWindow, is_open, next_open, parse_window
from notifications.models import Message, Run
from notifications.services import TriggerRequest, trigger_workflow, workflow_cancel
from preferences.models import PreferenceSet

from ..conftest import advance_at, email_step, in_app_step, invalid
from ..conftest import timeline_events as events

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Chatham"]
# Around the DST changes of 2026 in the zones above (Kolkata has none: a control).
AROUND = [datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC),
          datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 10, 25, tzinfo=UTC),
          datetime(2026, 4, 5, tzinfo=UTC), datetime(2026, 9, 27, tzinfo=UTC)]

clocks = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 1, 59]))
windows = st.builds(
    lambda days, start, end: SendWindow(frozenset(days), start, end, "recipient"),
    st.sets(st.integers(0, 6), min_size=1), clocks, clocks,
).filter(lambda window: window.start != window.end)
moments = st.builds(lambda base, minutes, seconds: base + timedelta(minutes=minutes,
                                                                    seconds=seconds),
                    st.sampled_from(AROUND), st.integers(-4 * 1440, 4 * 1440),
                    st.integers(0, 59))


def reference_next_open(window, now, tz):
    """The first whole minute after `now` at which the window is open, found by walking."""
    if is_open(window, now, tz):
        return None
    moment = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for _ in range(9 * 1440):
        if is_open(window, moment, tz):
            return moment
        moment += timedelta(minutes=1)
    raise AssertionError("never opens")


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=60, deadline=None)
@given(window=windows, now=moments)
def test_next_open_is_the_first_open_minute_after_now(zone, window, now):
    tz = ZoneInfo(zone)
    assert next_open(window, now, tz) == reference_next_open(window, now, tz)


@pytest.mark.parametrize("zone", ZONES)
@settings(max_examples=100, deadline=None)
@given(window=windows, now=moments)
def test_the_wake_up_is_inside_the_window_and_the_minute_before_is_not(zone, window, now):
    tz = ZoneInfo(zone)
    opens = next_open(window, now, tz)
    if opens is None:
        assert is_open(window, now, tz)
        return
    assert opens > now
    assert opens - now <= timedelta(days=8)
    assert is_open(window, opens, tz)
    assert not is_open(window, opens - timedelta(minutes=1), tz)
    assert opens.tzinfo is UTC


def test_a_start_skipped_by_spring_forward_opens_at_the_first_minute_after_the_gap():
    # New York skips 02:00-03:00 on Sunday 8 March 2026.
    window = parse_window({"days": ["sun"], "start": "02:30", "end": "05:00"})
    tz = ZoneInfo("America/New_York")
    opens = next_open(window, datetime(2026, 3, 8, 5, 0, tzinfo=UTC), tz)  # 00:00 EST
    assert opens.astimezone(tz).strftime("%H:%M %Z") == "03:00 EDT"


def test_a_window_in_the_repeated_hour_of_fall_back_is_open_both_times():
    # Berlin repeats 02:00-03:00 on Sunday 25 October 2026 (00:00-01:00 UTC, then 01:00-02:00).
    window = parse_window({"days": ["sun"], "start": "02:15", "end": "02:45",
                           "timezone": "Europe/Berlin"})
    tz = window.zone("")
    first = next_open(window, datetime(2026, 10, 24, 23, 0, tzinfo=UTC), tz)
    second = next_open(window, first + timedelta(minutes=30), tz)
    assert (first, second) == (datetime(2026, 10, 25, 0, 15, tzinfo=UTC),
                               datetime(2026, 10, 25, 1, 15, tzinfo=UTC))


def test_an_overnight_window_belongs_to_the_day_it_starts():
    window = parse_window({"days": ["fri"], "start": "22:00", "end": "06:00",
                           "timezone": "Asia/Kolkata"})
    tz = window.zone("")
    saturday_5am = datetime(2026, 3, 7, 5, 0, tzinfo=tz)
    saturday_11pm = datetime(2026, 3, 7, 23, 0, tzinfo=tz)
    assert is_open(window, saturday_5am, tz)
    assert not is_open(window, saturday_11pm, tz)
    assert next_open(window, saturday_11pm, tz) == datetime(2026, 3, 13, 22, 0, tzinfo=tz)


@pytest.mark.parametrize(("raw", "field", "message"), [
    ({"days": ["monday"], "start": "08:00", "end": "17:00"}, "days",
     f"Expected a non-empty list of: {', '.join(DAYS)}."),
    ({"days": [], "start": "08:00", "end": "17:00"}, "days",
     f"Expected a non-empty list of: {', '.join(DAYS)}."),
    ({"start": "8:00", "end": "17:00"}, "start", 'Expected a time "HH:MM", e.g. "08:00".'),
    ({"start": "08:00", "end": "24:00"}, "end", 'Expected a time "HH:MM", e.g. "08:00".'),
    ({"start": "08:00", "end": "08:00"}, "end", "The window must not end when it starts."),
    ({"start": "08:00", "end": "17:00", "timezone": "Mars/Olympus"}, "timezone",
     'Unknown time zone \'Mars/Olympus\'; expected "recipient" or an IANA name such as '
     '"Europe/Berlin".'),
])
def test_put_refuses_a_bad_send_window_naming_the_field(api, db, raw, field, message):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "mail", "type": "email", "send_window": raw,
         "templates": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}}}]}, format="json")
    assert response.status_code == 400
    assert response.json() == invalid({f"steps[0].send_window.{field}": [message]})


def test_put_refuses_send_window_and_urgent_on_a_function_step(api, db):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "wait", "type": "delay", "config": {"minutes": 1}, "urgent": True,
         "send_window": {"start": "08:00", "end": "17:00"}}]}, format="json")
    assert response.json() == invalid({
        "steps[0].send_window": ['Only channel steps can have "send_window".'],
        "steps[0].urgent": ['Only channel steps can have "urgent".']})


def test_put_and_get_round_trip_send_window_and_urgent(api, db):
    step = {"ref": "mail", "type": "email", "send_window": {
        "days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:30",
        "timezone": "recipient"}, "urgent": True,
        "templates": {"en": {"subject": "Hi", "html": "<p>Hi</p>"}}}
    assert api.put("/api/v1/workflows/w", {"name": "W", "critical": True, "steps": [step]},
                   format="json").status_code == 201
    got = api.get("/api/v1/workflows/w").json()
    assert got["steps"] == [step]
    assert api.put("/api/v1/workflows/w", got, format="json").json() == got


# --- The engine --------------------------------------------------------------------------------

OFFICE = {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "17:30",
          "timezone": "recipient"}
FRIDAY_6PM_NY = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)  # 18:00 EST, Friday
MONDAY_8AM_NY = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)  # 08:00 EDT (DST began on Sunday)


def _trigger(workflow) -> Run:
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, cancellation_key="report-1",
                                              recipients=[{
                                                  "id": "u1", "name": "Ada",
                                                  "email": "ada@example.com",
                                                  "timezone": "America/New_York"}]))
    OrmQ.objects.all().delete()
    return runs[0]


@pytest.fixture
def office_mail(make_workflow):
    return make_workflow("report", steps=[in_app_step(), email_step(send_window=OFFICE)])


def test_outside_the_window_the_run_waits_until_it_opens_then_sends(office_mail):
    run = advance_at(_trigger(office_mail), FRIDAY_6PM_NY)
    assert run.status == Run.Status.WAITING
    assert run.wake_at == MONDAY_8AM_NY
    assert events(run)[-1] == ("mail", "send_window")
    assert run.step_logs.last().detail == {"until": MONDAY_8AM_NY.isoformat(), "window": OFFICE,
                                           "timezone": "America/New_York"}
    assert not Message.objects.filter(channel="email").exists()
    run = advance_at(run, MONDAY_8AM_NY - timedelta(seconds=1))
    assert run.status == Run.Status.WAITING
    run = advance_at(run, MONDAY_8AM_NY)
    assert run.status == Run.Status.COMPLETED
    assert events(run)[-3:] == [("mail", "resumed"), ("mail", "queued"), ("", "completed")]
    assert Message.objects.get(channel="email").status == Message.Status.QUEUED


def test_inside_the_window_the_step_sends_at_once(office_mail):
    run = advance_at(_trigger(office_mail), MONDAY_8AM_NY + timedelta(hours=2))
    assert events(run)[-2:] == [("mail", "queued"), ("", "completed")]


def test_quiet_hours_still_apply_inside_the_window(office_mail):
    run = _trigger(office_mail)
    PreferenceSet.objects.create(recipient=run.recipient,
                                 quiet_hours={"start": "07:00", "end": "09:00"})
    run = advance_at(run, FRIDAY_6PM_NY)
    assert run.wake_at == MONDAY_8AM_NY
    run = advance_at(run, MONDAY_8AM_NY)  # the window opens, but 08:00 is quiet until 09:00
    assert events(run)[-2:] == [("mail", "resumed"), ("mail", "quiet_hours")]
    assert run.wake_at == MONDAY_8AM_NY + timedelta(hours=1)
    run = advance_at(run, run.wake_at)
    assert events(run)[-3:] == [("mail", "resumed"), ("mail", "queued"), ("", "completed")]


def test_a_cancelled_run_waiting_for_its_window_sends_nothing(office_mail):
    run = advance_at(_trigger(office_mail), FRIDAY_6PM_NY)
    workflow_cancel(workflow=office_mail, cancellation_key="report-1")
    run = advance_at(run, MONDAY_8AM_NY)
    assert run.status == Run.Status.CANCELLED
    assert not Message.objects.filter(channel="email").exists()


def test_a_window_inside_the_persons_quiet_hours_every_day_is_skipped_not_waited_on_forever(
        office_mail):
    run = _trigger(office_mail)
    PreferenceSet.objects.create(recipient=run.recipient,  # quiet 07:00-18:00: all office hours
                                 quiet_hours={"start": "07:00", "end": "18:00"})
    run = advance_at(run, FRIDAY_6PM_NY)
    assert run.status == Run.Status.COMPLETED
    assert events(run)[-2:] == [("mail", "skipped"), ("", "completed")]
    detail = run.step_logs.get(event="skipped").detail
    assert detail["reason"] == ("the send window never falls outside the person's quiet hours "
                                "in the next 15 days")
    assert (detail["window"], detail["quiet_hours"]) == (OFFICE, "07:00-18:00")
    mail = Message.objects.get(channel="email")
    assert mail.status == Message.Status.SUPPRESSED and "quiet hours" in mail.error


def test_a_window_that_overlaps_the_waking_hours_only_on_some_days_waits_for_them(make_workflow):
    late = {"days": ["mon", "sat"], "start": "06:00", "end": "08:00", "timezone": "recipient"}
    workflow = make_workflow("late", steps=[email_step(send_window=late)])
    run = _trigger(workflow)
    PreferenceSet.objects.create(recipient=run.recipient,
                                 quiet_hours={"start": "22:00", "end": "07:30"})
    run = advance_at(run, FRIDAY_6PM_NY)
    assert run.status == Run.Status.WAITING and events(run)[-1] == ("mail", "send_window")
