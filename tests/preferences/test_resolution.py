"""The decision is a pure function of preference rows: most specific wins, critical ignores all."""

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from preferences.resolution import Choices, QuietHours, decide, quiet_hours_of, quiet_until


def sets(source, channel_types=None, categories=None, workflows=None, quiet_hours=None):
    return Choices(source=source, channel_types=channel_types or {}, categories=categories or {},
                   workflows=workflows or {}, quiet_hours=quiet_hours)


def person(**sections):
    return sets("recipient", **sections)


def for_tenant(**sections):
    return sets("recipient_tenant", **sections)


def tenant_default(**sections):
    return sets("tenant_default", **sections)


OFF, ON = False, True
EMAIL_OFF = {"channel_types": {"email": OFF}}
EMAIL_ON = {"channel_types": {"email": ON}}

# (case, person sets most specific first, tenant default, workflow default, critical,
#  expected allowed, expected rule). Workflow "welcome" in category "marketing", channel email.
CASES = [
    ("nothing decided: allowed", [], None, {}, False, ON, "default"),
    ("channel", [person(channel_types={"email": OFF})], None, {}, False, OFF,
     "recipient:channel_types.email"),
    ("another channel does not count", [person(channel_types={"sms": OFF})], None, {}, False, ON,
     "default"),
    ("category beats channel",
     [person(channel_types={"email": OFF}, categories={"marketing": ON})], None, {}, False, ON,
     "recipient:categories.marketing"),
    ("category × channel beats category",
     [person(categories={"marketing": EMAIL_OFF})], None, {}, False, OFF,
     "recipient:categories.marketing.channel_types.email"),
    ("category × channel beats channel",
     [person(channel_types={"email": OFF}, categories={"marketing": EMAIL_ON})], None, {}, False,
     ON, "recipient:categories.marketing.channel_types.email"),
    ("workflow beats category × channel",
     [person(categories={"marketing": EMAIL_OFF}, workflows={"welcome": ON})], None, {}, False,
     ON, "recipient:workflows.welcome"),
    ("workflow × channel beats workflow",
     [person(workflows={"welcome": EMAIL_OFF}, categories={"marketing": ON})], None, {}, False,
     OFF, "recipient:workflows.welcome.channel_types.email"),
    ("workflow × channel for another channel falls through to the category",
     [person(workflows={"welcome": {"channel_types": {"sms": OFF}}},
             categories={"marketing": OFF})], None, {}, False, OFF,
     "recipient:categories.marketing"),
    ("another workflow does not count", [person(workflows={"digest": OFF})], None, {}, False, ON,
     "default"),
    ("tenant default applies to people who have not decided", [],
     tenant_default(categories={"marketing": OFF}), {}, False, OFF,
     "tenant_default:categories.marketing"),
    ("the person's channel choice beats the tenant's workflow default",
     [person(channel_types={"email": ON})], tenant_default(workflows={"welcome": OFF}), {},
     False, ON, "recipient:channel_types.email"),
    ("tenant default beats workflow default", [], tenant_default(channel_types={"email": ON}),
     {"email": OFF}, False, ON, "tenant_default:channel_types.email"),
    ("workflow default: off until opted in", [], None, {"email": OFF}, False, OFF,
     "workflow_default:channel_types.email"),
    ("opting in beats the workflow default", [person(workflows={"welcome": EMAIL_ON})], None,
     {"email": OFF}, False, ON, "recipient:workflows.welcome.channel_types.email"),
    ("the person's set for the tenant beats their own set, level for level",
     [for_tenant(channel_types={"email": ON}), person(channel_types={"email": OFF})], None, {},
     False, ON, "recipient_tenant:channel_types.email"),
    ("a more specific level in their own set beats a channel in the tenant's set",
     [for_tenant(channel_types={"email": ON}), person(categories={"marketing": OFF})], None, {},
     False, OFF, "recipient:categories.marketing"),
    ("critical ignores every opt-out",
     [for_tenant(workflows={"welcome": OFF}), person(channel_types={"email": OFF})],
     tenant_default(channel_types={"email": OFF}), {"email": OFF}, True, ON, "critical"),
]


@pytest.mark.parametrize(
    ("person_sets", "default_set", "workflow_default", "critical", "allowed", "rule"),
    [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_most_specific_rule_decides_and_is_named(
        person_sets, default_set, workflow_default, critical, allowed, rule):
    decision = decide(workflow_key="welcome", category="marketing", critical=critical,
                      channel="email", person=person_sets, tenant_default=default_set,
                      workflow_default=workflow_default)
    assert (decision.allowed, decision.rule) == (allowed, rule)
    assert bool(decision) is allowed


def test_a_workflow_without_category_skips_the_category_levels():
    decision = decide(workflow_key="welcome", category="", critical=False, channel="email",
                      person=[person(categories={"": OFF}, channel_types={"email": ON})])
    assert decision.rule == "recipient:channel_types.email"


# --- Quiet hours ------------------------------------------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
NIGHT = QuietHours(time(22), time(8), "recipient")


def test_quiet_hours_come_from_the_most_specific_set_and_false_means_none():
    tenant_window = {"start": "21:00", "end": "07:00"}
    assert quiet_hours_of([tenant_default(quiet_hours=tenant_window)]).start == time(21)
    assert quiet_hours_of([person(quiet_hours={"start": "23:00", "end": "06:00"}),
                           tenant_default(quiet_hours=tenant_window)]).start == time(23)
    assert quiet_hours_of([person(quiet_hours=False),
                           tenant_default(quiet_hours=tenant_window)]) is None
    assert quiet_hours_of([person()]) is None


@pytest.mark.parametrize(("now", "until"), [
    # Outside the window.
    (datetime(2026, 6, 10, 16, 0, tzinfo=UTC), None),  # 12:00 EDT
    (datetime(2026, 6, 11, 12, 0, tzinfo=UTC), None),  # 08:00 EDT: the end is not inside
    # Before midnight (23:30 EDT): until 08:00 the next morning.
    (datetime(2026, 6, 11, 3, 30, tzinfo=UTC), datetime(2026, 6, 11, 12, 0, tzinfo=UTC)),
    # After midnight: until 08:00 the same morning.
    (datetime(2026, 6, 11, 9, 30, tzinfo=UTC), datetime(2026, 6, 11, 12, 0, tzinfo=UTC)),
    # 22:00 EDT, the start, is inside.
    (datetime(2026, 6, 11, 2, 0, tzinfo=UTC), datetime(2026, 6, 11, 12, 0, tzinfo=UTC)),
])
def test_quiet_until_in_the_persons_time_zone(now, until):
    assert quiet_until(NIGHT, now, NEW_YORK) == until


def test_spring_forward_night_ends_at_8_local_one_hour_sooner_in_utc():
    # 2026-03-08 02:00 EST → 03:00 EDT. At 23:00 EST (04:00Z) the night is 9 hours, not 10.
    now = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)
    assert quiet_until(NIGHT, now, NEW_YORK) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)


def test_fall_back_night_ends_at_8_local_one_hour_later_in_utc():
    # 2026-11-01 02:00 EDT → 01:00 EST. At 23:00 EDT (03:00Z) the night is 10 hours.
    now = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    assert quiet_until(NIGHT, now, NEW_YORK) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)


def test_a_window_ending_in_the_skipped_hour_ends_just_after_the_gap():
    window = QuietHours(time(1), time(2, 30), "recipient")
    now = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)  # 01:30 EST
    # 02:30 does not exist that night; it is read with the offset before the change: 03:30 EDT.
    assert quiet_until(window, now, NEW_YORK) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_a_daytime_window_and_no_window():
    lunch = QuietHours(time(12), time(13), "tenant_default")
    assert quiet_until(lunch, datetime(2026, 6, 10, 16, 30, tzinfo=UTC), NEW_YORK) == \
        datetime(2026, 6, 10, 17, 0, tzinfo=UTC)
    assert quiet_until(lunch, datetime(2026, 6, 10, 18, 0, tzinfo=UTC), NEW_YORK) is None
    assert quiet_until(None, datetime(2026, 6, 10, 16, 30, tzinfo=UTC), NEW_YORK) is None
