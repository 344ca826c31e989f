"""Schedules: recurring triggers of a workflow. Writes (schedule_put, schedule_delete) and the
firing (schedule_fire), which the precise wake-ups of notifications/queue.py drive.

A schedule fires per time zone of its audience (a ScheduleZone row: one zone for a fixed time
zone, one per recipients' zone for "recipient"). Each occurrence fires exactly once: the triggers
and the zone's next occurrence commit together under the zone's row lock, and an occurrence
missed while no worker ran fires once when one runs again (the next is then the first after now).
"""

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone as tz

from .models import Recipient, Schedule, ScheduleZone, Tenant, Topic, Trigger, Workflow
from .queue import enqueue_at
from .recurrence import latest_due, occurrences, zone
from .workflow_versions import is_unpublished

RECIPIENT_TIMEZONE = "recipient"


def _fire_later(schedule_zone: ScheduleZone) -> None:
    if schedule_zone.next_at is not None:
        enqueue_at("notifications.tasks.fire_schedule", schedule_zone.pk,
                   at=schedule_zone.next_at,
                   name=f"schedule:{schedule_zone.pk}@{int(schedule_zone.next_at.timestamp())}")


def schedule_next(schedule: Schedule, zone_name: str, *, after: datetime,
                  count: int = 1) -> list[datetime]:
    """The schedule's next `count` occurrences (aware, UTC) strictly after `after` in the zone
    `zone_name`: the code that fires them and that GET …/occurrences shows."""
    return occurrences(schedule.repeat, zone(zone_name), after=after, count=count,
                       starts_at=schedule.starts_at, ends_at=schedule.ends_at)


def recipient_zone(schedule: Schedule, recipient: Recipient | None) -> str:
    """The zone a recipient's occurrences are in: the schedule's fixed zone, or theirs (UTC when
    blank or unknown)."""
    if schedule.timezone != RECIPIENT_TIMEZONE:
        return schedule.timezone
    return zone(recipient.timezone if recipient else "").key


def _audience_zones(schedule: Schedule) -> set[str]:
    if schedule.timezone != RECIPIENT_TIMEZONE:
        return {schedule.timezone}
    if schedule.topic_id:
        names = (Recipient.objects.filter(subscriptions__topic_id=schedule.topic_id)
                 .values_list("timezone", flat=True).distinct())
    else:
        names = (Recipient.objects.filter(external_id__in=schedule.recipients)
                 .values_list("timezone", flat=True).distinct())
    return {zone(name).key for name in names}


def schedule_zones_sync(*, schedule: Schedule, now: datetime) -> list[ScheduleZone]:
    """Create the zone rows the audience needs and is missing, each with its next occurrence
    and a wake-up; returns the rows created."""
    existing = set(schedule.zones.values_list("timezone", flat=True))
    created = []
    for name in sorted(_audience_zones(schedule) - existing):
        nxt = schedule_next(schedule, name, after=now)
        row = ScheduleZone.objects.create(schedule=schedule, timezone=name,
                                          next_at=nxt[0] if nxt else None)
        _fire_later(row)
        created.append(row)
    return created


@transaction.atomic
def schedule_put(*, key: str, workflow: Workflow, repeat: dict, recipients: Sequence[str] = (),
                 topic: Topic | None = None, data: dict | None = None,
                 tenant: Tenant | None = None, timezone: str = RECIPIENT_TIMEZONE,
                 starts_at: datetime | None = None, ends_at: datetime | None = None,
                 active: bool = True, now: datetime | None = None) -> tuple[Schedule, bool]:
    """Create or replace the schedule `key` (validated input: `repeat` by
    recurrence.validate_repeat, `timezone` "recipient" or an IANA name). Its zones start over
    from `now` (default: the current time): the next occurrence after now fires, none before."""
    now = now or tz.now()
    from .services import recipient_upsert_many

    recipient_upsert_many(list(recipients))
    schedule, created = Schedule.objects.update_or_create(key=key, defaults={
        "workflow": workflow, "repeat": repeat, "recipients": list(recipients), "topic": topic,
        "data": data or {}, "tenant": tenant, "timezone": timezone, "starts_at": starts_at,
        "ends_at": ends_at, "active": active,
    })
    schedule.zones.all().delete()
    if active:
        schedule_zones_sync(schedule=schedule, now=now)
    return schedule, created


def schedule_delete(*, schedule: Schedule) -> None:
    """Delete it: it fires no more (its queued wake-ups find no zone)."""
    schedule.delete()


def _zone_recipients(schedule: Schedule, zone_name: str) -> list:
    """The recipient specs one zone's triggers name."""
    if schedule.timezone != RECIPIENT_TIMEZONE:
        return [{"topic": schedule.topic.key}] if schedule.topic_id else list(schedule.recipients)
    people = (Recipient.objects.filter(subscriptions__topic_id=schedule.topic_id)
              if schedule.topic_id else
              Recipient.objects.filter(external_id__in=schedule.recipients))
    return [external_id for external_id, name in
            people.order_by("pk").values_list("external_id", "timezone")
            if zone(name).key == zone_name]


def schedule_fire(*, zone_id: int, now: datetime | None = None) -> list[Trigger]:
    """Fire the zone's due occurrence, once: the triggers (one per up to
    MAX_RECIPIENTS_PER_TRIGGER recipients; a topic in a fixed zone fans out as any topic
    trigger) and the next occurrence (the first after `now`) commit together under the zone's
    row lock. Not yet due, already fired, inactive or deleted: nothing. Returns the triggers."""
    from .services import TriggerRequest, trigger_workflow

    now = now or tz.now()
    with transaction.atomic():
        row = (ScheduleZone.objects.select_for_update(skip_locked=True, of=("self",))
               .select_related("schedule__workflow", "schedule__tenant", "schedule__topic")
               .filter(pk=zone_id).first())
        if row is None or row.next_at is None or row.next_at > now:
            return []
        schedule = row.schedule
        triggers = []
        occurrence = latest_due(schedule.repeat, zone(row.timezone),
                                after=row.next_at - timedelta(microseconds=1), now=now,
                                starts_at=schedule.starts_at, ends_at=schedule.ends_at)
        if schedule.active and schedule.workflow.active and occurrence is not None \
                and not is_unpublished(schedule.workflow):  # its first draft: runs nothing
            specs = _zone_recipients(schedule, row.timezone)
            limit = settings.CLARION["MAX_RECIPIENTS_PER_TRIGGER"]
            data = {**schedule.data, "schedule": {"id": schedule.key,
                                                  "occurrence": occurrence.isoformat()}}
            for start in range(0, len(specs), limit):
                trigger, _ = trigger_workflow(TriggerRequest(
                    workflow=schedule.workflow, recipients=specs[start:start + limit],
                    data=data, tenant=schedule.tenant), lanes=False)
                triggers.append(trigger)
            row.last_fired_at = occurrence
        nxt = schedule_next(schedule, row.timezone, after=now)
        row.next_at = nxt[0] if nxt else None
        row.save(update_fields=["next_at", "last_fired_at"])
        _fire_later(row)
        if schedule.active:
            schedule_zones_sync(schedule=schedule, now=now)
    return triggers


def schedules_due(now: datetime):
    """Ids of zones whose occurrence is due (for the sweeper)."""
    return ScheduleZone.objects.filter(next_at__lte=now).values_list("id", flat=True)
