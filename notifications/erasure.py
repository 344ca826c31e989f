"""Erasing a person (GDPR art. 17): everything that names them goes, anonymous counts stay.

Deleting the Recipient cascades to their channel data, subscriptions, preference sets, runs (and
their step logs), messages (their attempts, with the redacted requests and responses, and the
providers' status events with their raw payloads) and inbox items. What is left elsewhere is
scrubbed: the triggers that named them (as a recipient, as the actor, or inside `data`), the
schedules that list them, outbound events about them (and their deliveries), the idempotency
records whose stored answer names them, the SMS rate-limit counter of their phone number, and
the audit log's entries about their preference sets or made by them (their erasure itself is not
audited: the entry would name them).
The analytics rollups (analytics/) never held anything about a person, so their
counts stay as they were.
"""

from collections.abc import Mapping
from datetime import timedelta

from auditlog.context import disable_auditlog
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.utils import timezone

from events.models import Event
from preferences.models import PreferenceSet

from .models import IdempotencyRecord, RateLimitCounter, Recipient, Schedule, Trigger

ERASED = "[erased]"


def _scrubber(recipient: Recipient):
    """A function that returns a JSON value with everything naming `recipient` replaced by
    ERASED: a profile or id of theirs, and strings that contain their email address or phone
    number or are their name."""
    external_id = recipient.external_id
    inside = [value.lower() for value in (recipient.email, recipient.phone) if value]
    exact = {value for value in (external_id, recipient.name) if value}

    def scrub(value):
        if isinstance(value, Mapping):
            if "id" in value and str(value.get("id")) == external_id:
                return ERASED
            return {key: scrub(item) for key, item in value.items()}
        if isinstance(value, list):
            return [scrub(item) for item in value]
        if isinstance(value, str) and (value in exact
                                       or any(part in value.lower() for part in inside)):
            return ERASED
        return value

    return scrub


@transaction.atomic
def recipient_erase(*, recipient: Recipient) -> None:
    """Erase `recipient` and scrub every other row that names them (see the module's
    docstring). One transaction: all of it happens, or none."""
    external_id = recipient.external_id
    scrub = _scrubber(recipient)
    named = Trigger.objects.filter(runs__recipient=recipient).values_list("pk", flat=True)
    acted = Trigger.objects.filter(actor__id=external_id).values_list("pk", flat=True)
    bare = Trigger.objects.filter(actor=external_id).values_list("pk", flat=True)
    for trigger in Trigger.objects.filter(pk__in={*named, *acted, *bare}):
        trigger.recipients = scrub(trigger.recipients)
        trigger.actor = scrub(trigger.actor)
        trigger.data = scrub(trigger.data)
        trigger.save(update_fields=["recipients", "actor", "data"])
    for schedule in Schedule.objects.exclude(recipients=[]).only("pk", "recipients"):
        kept = [spec for spec in schedule.recipients if scrub(spec) == spec]
        if kept != schedule.recipients:
            schedule.recipients = kept
            schedule.save(update_fields=["recipients", "updated_at"])
    Event.objects.filter(recipient=external_id).delete()
    kept_since = timezone.now() - timedelta(
        seconds=settings.CLARION["IDEMPOTENCY_TTL_SECONDS"] * 2)
    for record in IdempotencyRecord.objects.filter(created_at__gte=kept_since).only(
            "pk", "response_body").iterator():
        if scrub(record.response_body) != record.response_body:
            record.delete()
    if recipient.phone:
        RateLimitCounter.objects.filter(key=f"sms:{recipient.phone}").delete()
    sets = [str(pk) for pk in PreferenceSet.objects.filter(recipient=recipient)
            .values_list("pk", flat=True)]
    LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(PreferenceSet),
                            object_pk__in=sets).delete()
    LogEntry.objects.filter(additional_data__recipient__id=external_id).delete()
    with disable_auditlog():
        recipient.delete()
