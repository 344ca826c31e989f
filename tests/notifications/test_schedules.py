"""Schedules: the API, firing each occurrence exactly once with a controlled clock, recovery
after downtime, per-recipient time zones, and tenant isolation."""

from datetime import UTC, datetime, timedelta

import pytest

from notifications import schedules, services
from notifications.models import Run, Schedule, ScheduleZone, Subscription, Topic, Trigger
from notifications.tasks import sweep

from ..conftest import in_app_step, queued_tasks

T0 = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)  # a Friday, two days before New York's DST


@pytest.fixture
def digest(make_workflow):
    return make_workflow("weekly-digest", steps=[in_app_step()])


def put(digest, now=T0, **fields):
    fields.setdefault("repeat", {"frequency": "daily", "at": "09:00", "days": [],
                                 "day_of_month": None})
    fields.setdefault("recipients", ["ny", "berlin"])
    schedule, _ = schedules.schedule_put(key="morning", workflow=digest, now=now, **fields)
    return schedule


@pytest.fixture
def people(db):
    services.recipient_upsert(external_id="ny", timezone="America/New_York")
    services.recipient_upsert(external_id="berlin", timezone="Europe/Berlin")


def fire_due(now):
    """What the wake-ups (or the sweeper) do at `now`: fire every due zone."""
    return [t for zone_id in list(schedules.schedules_due(now))
            for t in schedules.schedule_fire(zone_id=zone_id, now=now)]


def test_each_recipients_zone_fires_at_its_own_local_time_once(digest, people):
    put(digest)
    zones = {z.timezone: z.next_at for z in ScheduleZone.objects.all()}
    assert zones == {"America/New_York": datetime(2026, 3, 6, 14, 0, tzinfo=UTC),
                     "Europe/Berlin": datetime(2026, 3, 7, 8, 0, tzinfo=UTC)}
    assert ((str(ScheduleZone.objects.get(timezone="America/New_York").pk),),
            zones["America/New_York"]) in [
        ((str(args[0]),), at) for args, at in queued_tasks("notifications.tasks.fire_schedule")]

    first = fire_due(datetime(2026, 3, 6, 14, 0, 1, tzinfo=UTC))
    again = fire_due(datetime(2026, 3, 6, 14, 0, 2, tzinfo=UTC))  # the task ran twice

    assert [t.runs.get().recipient.external_id for t in first] == ["ny"]
    assert again == []
    assert first[0].data == {"schedule": {"id": "morning",
                                          "occurrence": "2026-03-06T14:00:00+00:00"}}
    # After New York's clocks moved (Sunday), 09:00 is 13:00 UTC.
    fire_due(datetime(2026, 3, 7, 14, 0, 1, tzinfo=UTC))
    fire_due(datetime(2026, 3, 8, 13, 0, 1, tzinfo=UTC))
    assert ScheduleZone.objects.get(timezone="America/New_York").next_at == datetime(
        2026, 3, 9, 13, 0, tzinfo=UTC)


def test_occurrences_missed_while_workers_were_down_fire_once_on_recovery(digest, people):
    put(digest, recipients=["ny"])

    fired = fire_due(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))  # five slots missed

    assert len(fired) == 1
    assert fired[0].data["schedule"]["occurrence"] == "2026-03-10T13:00:00+00:00"
    assert ScheduleZone.objects.get().next_at == datetime(2026, 3, 11, 13, 0, tzinfo=UTC)
    assert Trigger.objects.count() == 1


def test_the_sweeper_fires_a_due_schedule_whose_wake_up_was_lost(digest, people, run_tasks):
    from django_q.models import OrmQ

    put(digest, recipients=["ny"], now=datetime.now(UTC) - timedelta(days=2))
    OrmQ.objects.all().delete()  # the wake-up is lost

    assert sweep()["schedules"] == 1
    run_tasks()
    assert Trigger.objects.count() == 1


def test_a_fixed_zone_topic_schedule_fires_one_topic_trigger(digest, people):
    topic = Topic.objects.create(key="all")
    services.topic_subscribe(topic=topic, recipients=services.recipient_upsert_many(
        ["ny", "berlin"]).values())
    put(digest, recipients=[], topic=topic, timezone="Asia/Kolkata")

    [trigger] = fire_due(datetime(2026, 3, 7, 3, 30, tzinfo=UTC))  # 09:00 IST

    assert trigger.recipients == [{"topic": "all"}]
    assert ScheduleZone.objects.get().timezone == "Asia/Kolkata"


def test_a_recipient_zone_topic_schedule_reaches_only_that_zones_subscribers(digest, people):
    topic = Topic.objects.create(key="all")
    for external_id in ("ny", "berlin"):
        Subscription.objects.create(topic=topic, recipient=services.recipient_upsert(
            external_id=external_id)[0])
    put(digest, recipients=[], topic=topic)

    assert fire_due(datetime(2026, 3, 6, 13, 59, tzinfo=UTC)) == []
    ny = fire_due(datetime(2026, 3, 6, 14, 0, 1, tzinfo=UTC))
    berlin = fire_due(datetime(2026, 3, 7, 8, 0, 1, tzinfo=UTC))

    assert [t.recipients for t in ny] == [["ny"]]
    assert [t.recipients for t in berlin] == [["berlin"]]


def test_an_inactive_schedule_or_one_past_its_end_fires_nothing(digest, people):
    put(digest, recipients=["ny"], ends_at=datetime(2026, 3, 7, tzinfo=UTC))

    fire_due(datetime(2026, 3, 6, 14, 0, 1, tzinfo=UTC))
    assert ScheduleZone.objects.get().next_at is None
    assert fire_due(datetime(2026, 3, 9, tzinfo=UTC)) == []
    assert Trigger.objects.count() == 1


# --- API --------------------------------------------------------------------------------------

BODY = {"workflow": "weekly-digest", "recipients": ["ny"], "data": {"kind": "daily"},
        "repeat": {"frequency": "weekly", "at": "09:00", "days": ["mon", "thu"]},
        "timezone": "recipient", "starts_at": None, "ends_at": None}


def test_put_get_delete_a_schedule(api, digest, people):
    created = api.put("/api/v1/schedules/morning", BODY)
    again = api.put("/api/v1/schedules/morning", BODY)
    read = api.get("/api/v1/schedules/morning")

    assert created.status_code == 201, created.content
    assert again.status_code == 200
    body = read.json()
    assert {k: body[k] for k in BODY} == {**BODY, "repeat": {
        "frequency": "weekly", "at": "09:00", "days": ["mon", "thu"], "day_of_month": None}}
    assert body["id"] == "morning" and body["topic"] is None and body["active"] is True
    assert api.delete("/api/v1/schedules/morning").status_code == 204
    assert api.get("/api/v1/schedules/morning").status_code == 404
    assert not Schedule.objects.exists()


def test_occurrences_are_listed_for_a_recipient_in_utc(api, digest, people):
    api.put("/api/v1/schedules/morning", {**BODY, "repeat": {"frequency": "daily",
                                                              "at": "02:30"}})

    ny = api.get("/api/v1/schedules/morning/occurrences?recipient=ny&count=3").json()
    berlin = api.get("/api/v1/schedules/morning/occurrences?recipient=berlin&count=3").json()

    assert ny["timezone"] == "America/New_York" and berlin["timezone"] == "Europe/Berlin"
    assert len(ny["occurrences"]) == 3
    first_ny = datetime.fromisoformat(ny["occurrences"][0].replace("Z", "+00:00"))
    first_berlin = datetime.fromisoformat(berlin["occurrences"][0].replace("Z", "+00:00"))
    schedule = Schedule.objects.get()
    assert first_ny == schedules.schedule_next(schedule, "America/New_York",
                                               after=first_ny - timedelta(days=1))[0]
    assert first_ny != first_berlin


@pytest.mark.parametrize("body, field", [
    ({**BODY, "repeat": {"frequency": "yearly"}}, "repeat.frequency"),
    ({**BODY, "repeat": {"frequency": "weekly", "at": "09:00"}}, "repeat.days"),
    ({**BODY, "timezone": "Mars/Olympus"}, "timezone"),
    ({**BODY, "workflow": "nope"}, "workflow"),
    ({**BODY, "recipients": []}, "recipients"),
    ({**BODY, "topic": "nope", "recipients": []}, "topic"),
    ({**BODY, "starts_at": "2026-05-01T00:00:00Z", "ends_at": "2026-04-01T00:00:00Z"},
     "ends_at"),
    ({**BODY, "every": 2}, "every"),
])
def test_a_bad_schedule_is_a_400_naming_the_field(api, digest, people, body, field):
    response = api.put("/api/v1/schedules/morning", body)

    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    assert not Schedule.objects.exists()


def test_occurrences_of_a_recipient_zone_schedule_need_a_recipient(api, digest, people):
    api.put("/api/v1/schedules/morning", BODY)

    response = api.get("/api/v1/schedules/morning/occurrences?count=500")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"count"} or "recipient" in response.json()["fields"]


def test_a_tenant_restricted_key_sees_and_changes_only_its_tenants_schedules(
        api, acme_api, acme, globex, digest, people):
    api.put("/api/v1/schedules/globex-morning", {**BODY, "tenant": "globex"})

    assert acme_api.get("/api/v1/schedules/globex-morning").status_code == 404
    assert acme_api.get("/api/v1/schedules/globex-morning/occurrences?recipient=ny"
                        ).status_code == 404
    assert acme_api.delete("/api/v1/schedules/globex-morning").status_code == 404
    assert acme_api.put("/api/v1/schedules/globex-morning", BODY).status_code == 403
    assert acme_api.put("/api/v1/schedules/mine", {**BODY, "tenant": "globex"}
                        ).status_code == 403
    mine = acme_api.put("/api/v1/schedules/mine", BODY)
    assert mine.status_code == 201 and mine.json()["tenant"] == "acme"
    assert Schedule.objects.get(key="globex-morning").tenant == globex


def test_a_fired_schedule_runs_the_workflow_for_its_recipients(digest, people, run_tasks):
    put(digest, recipients=["ny"])
    [trigger] = fire_due(datetime(2026, 3, 6, 14, 0, 1, tzinfo=UTC))
    run_tasks()

    run = Run.objects.get(trigger=trigger)
    assert (run.recipient.external_id, run.status) == ("ny", Run.Status.COMPLETED)


def test_a_schedule_is_created_in_the_admin_with_form_fields(admin_client, digest, people):
    response = admin_client.post("/admin/notifications/schedule/add/", {
        "key": "from-admin", "workflow": digest.pk, "recipients": '["ny"]', "data": "{}",
        "frequency": "weekly", "at": "08:30", "days": ["mon", "wed"], "day_of_month": "",
        "timezone": "recipient", "active": "on",
    })

    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get(key="from-admin")
    assert schedule.repeat == {"frequency": "weekly", "at": "08:30", "days": ["mon", "wed"],
                               "day_of_month": None}
    assert ScheduleZone.objects.get(schedule=schedule).timezone == "America/New_York"
    assert admin_client.get(f"/admin/notifications/schedule/{schedule.pk}/change/"
                            ).status_code == 200


def test_the_admin_names_a_bad_rule(admin_client, digest, people):
    response = admin_client.post("/admin/notifications/schedule/add/", {
        "key": "bad", "workflow": digest.pk, "recipients": '["ny"]', "data": "{}",
        "frequency": "weekly", "at": "08:30", "timezone": "recipient",
    })

    assert response.status_code == 200
    assert "A weekly rule names at least one day." in response.content.decode()
    assert not Schedule.objects.exists()
