"""Reads for support ("did this person get notified, and why not?"): finding a notification from
whatever id or address someone has at hand, a run's timeline in time order, and a recipient's
latest runs and messages with the reason for each suppression or failure.

The admin shows these (`notifications/admin/support.py`); they are plain reads on rows, so a
test or another interface can use them too.
"""

import dataclasses
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Model, Prefetch, Q
from django.utils.translation import gettext as _

from .models import (
    DeliveryAttempt,
    IdempotencyRecord,
    Message,
    MessageEvent,
    Recipient,
    Run,
    StepLog,
    Trigger,
)

FIND_LIMIT = 50  # matches of one kind listed at most


# --- Find a notification ------------------------------------------------------------------

@dataclass(frozen=True)
class Found:
    """One row a search term names: `kind` ("recipient", "trigger", "run", "message"), the row,
    and `matched`, what the term matched (e.g. "provider message id")."""

    kind: str
    obj: Model
    matched: str


def _as_uuid(term: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(term)
    except ValueError:
        return None


def notification_find(term: str) -> list[Found]:
    """Every recipient, trigger, run and message `term` names, in that order: a recipient id
    (exactly as given) or email address (any case), a trigger, run or message id, an
    Idempotency-Key (the triggers sent with it), or a provider message id (the messages it
    names). Surrounding spaces are ignored unless the recipient id has them. [] for a blank
    term. Each kind lists at most FIND_LIMIT rows."""
    stripped = term.strip()
    if not stripped:
        return []
    found: list[Found] = []
    recipients = Recipient.objects.filter(
        Q(external_id__in={term, stripped}) | Q(email__iexact=stripped)).order_by("external_id")
    for recipient in recipients[:FIND_LIMIT]:
        matched = "recipient id" if recipient.external_id in (term, stripped) else "email"
        found.append(Found("recipient", recipient, matched))
    value = _as_uuid(stripped)
    triggers = Trigger.objects.filter(idempotency_key=stripped).select_related("workflow")
    keyed = {trigger.pk for trigger in triggers[:FIND_LIMIT]}
    # Triggers made before the key was kept on the trigger: their replay record (24 hours).
    for body in IdempotencyRecord.objects.filter(key=stripped).values_list("response_body",
                                                                              flat=True):
        trigger_id = _as_uuid(str((body or {}).get("trigger_id", "")))
        if trigger_id is not None:
            keyed.add(trigger_id)
    if keyed:
        for trigger in Trigger.objects.filter(pk__in=keyed).select_related("workflow"):
            found.append(Found("trigger", trigger, "Idempotency-Key"))
    if value is not None:
        found += [Found("trigger", trigger, "trigger id")
                  for trigger in Trigger.objects.filter(pk=value).select_related("workflow")]
        found += [Found("run", run, "run id")
                  for run in Run.objects.filter(pk=value).select_related("workflow", "recipient")]
        found += [Found("message", message, "message id")
                  for message in Message.objects.filter(pk=value).select_related("recipient")]
    messages = (Message.objects.filter(provider_message_id=stripped)
                .select_related("recipient").order_by("-created_at"))
    found += [Found("message", message, "provider message id")
              for message in messages[:FIND_LIMIT]]
    return found


# --- A run's timeline ---------------------------------------------------------------------

@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to a run, at `at`.

    `kind` says what it is ("trigger", "step", "message", "attempt", "provider event",
    "engagement", or another source's own); `title` is one line for people; `step_ref` the
    step it concerns ("" for the run as a whole); `detail` JSON-safe facts; `obj` the row it
    comes from (the admin links to it), if any. `rank` orders entries of the same instant:
    what causes comes before what follows from it.
    """

    at: datetime
    kind: str
    title: str
    step_ref: str = ""
    detail: dict = field(default_factory=dict)
    obj: Model | None = None
    rank: int = 0


# A source reads one run's entries of one kind. Other features add theirs to TIMELINE_SOURCES
# (e.g. a digest's collected events) and the admin's run page shows them in place.
TimelineSource = Callable[[Run], Iterable[TimelineEntry]]


def trigger_entries(run: Run) -> Iterable[TimelineEntry]:
    """The API call that started the run: its API key, Idempotency-Key, tenant and data."""
    trigger = run.trigger
    api_key = trigger.api_key
    detail = {
        "trigger_id": str(trigger.pk),
        "api_key": f"{api_key.name} ({api_key.prefix}…)" if api_key else None,
        "idempotency_key": trigger.idempotency_key or None,
        "tenant": trigger.tenant.key if trigger.tenant_id else None,
        "cancellation_key": trigger.cancellation_key or None,
        "actor": trigger.actor,
        "data": trigger.data,
    }
    title = (_("Triggered by API key %(name)s") % {"name": api_key.name} if api_key
             else _("Triggered"))
    yield TimelineEntry(trigger.created_at, "trigger", title,
                        detail={k: v for k, v in detail.items() if v is not None},
                        obj=trigger, rank=0)


def step_log_entries(run: Run) -> Iterable[TimelineEntry]:
    """Every decision the engine wrote (StepLog), as written."""
    for log in run.step_logs.all():
        yield TimelineEntry(log.created_at, "step", log.get_event_display(),
                            step_ref=log.step_ref, detail=log.detail, obj=log, rank=1)


def message_entries(run: Run) -> Iterable[TimelineEntry]:
    """Each message when it was made, with its status now; each provider call (DeliveryAttempt)
    with its status code, duration and redacted request and response; each status event the
    provider sent back; and the person's engagement (seen, read, clicked, archived)."""
    for message in run.messages.all():
        yield TimelineEntry(
            message.created_at, "message",
            _("%(channel)s message: %(status)s") % {
                "channel": message.get_channel_display(), "status": message.get_status_display()},
            step_ref=message.step_ref,
            detail={key: value for key, value in {
                "status": message.status, "to": message.to, "provider": message.provider,
                "provider_message_id": message.provider_message_id,
                "reason": message.error}.items() if value},
            obj=message, rank=2)
        for attempt in message.delivery_attempts.all():
            yield TimelineEntry(
                attempt.started_at, "attempt",
                _("Provider call to %(provider)s: %(outcome)s") % {
                    "provider": attempt.provider, "outcome": attempt.get_outcome_display()},
                step_ref=message.step_ref,
                detail={"provider": attempt.provider, "provider_kind": attempt.provider_kind,
                        "status_code": attempt.status_code, "duration_ms": attempt.duration_ms,
                        "outcome": attempt.outcome, "error": attempt.error,
                        "request": attempt.request, "response": attempt.response},
                obj=attempt, rank=3)
        reported = set()
        for event in message.events.all():
            reported.add(event.kind)
            yield TimelineEntry(
                event.occurred_at, "provider event",
                _("%(provider)s reported: %(event)s") % {
                    "provider": event.provider_kind, "event": event.get_kind_display()},
                step_ref=message.step_ref,
                detail={"provider_kind": event.provider_kind,
                        "description": event.description, "payload": event.raw},
                obj=event, rank=4)
        item = getattr(message, "inbox_item", None)
        engagement = [(_("Seen by the recipient"), message.seen_at),
                      (_("Read by the recipient"), message.read_at),
                      (_("Clicked by the recipient"),
                       message.clicked_at if "clicked" not in reported else None),
                      (_("Archived by the recipient"),
                       item.archived_at if item is not None else None)]
        for title, moment in engagement:
            if moment is not None:
                yield TimelineEntry(moment, "engagement", title,
                                    step_ref=message.step_ref, obj=message, rank=5)


TIMELINE_SOURCES: list[TimelineSource] = [trigger_entries, step_log_entries, message_entries]


def run_for_timeline(run_id) -> Run | None:
    """The run with everything its timeline reads prefetched (a fixed number of queries)."""
    return (Run.objects.filter(pk=run_id)
            .select_related("workflow", "recipient", "tenant", "trigger__api_key",
                            "trigger__tenant")
            .prefetch_related(
                Prefetch("step_logs", queryset=StepLog.objects.order_by("id")),
                Prefetch("messages", queryset=Message.objects.select_related("inbox_item")
                         .order_by("created_at", "id")),
                Prefetch("messages__delivery_attempts",
                         queryset=DeliveryAttempt.objects.order_by("started_at", "id")),
                Prefetch("messages__events",
                         queryset=MessageEvent.objects.order_by("occurred_at", "id")),
            ).first())


def run_timeline(run: Run) -> list[TimelineEntry]:
    """Every entry of every TIMELINE_SOURCES source for `run`, in time order (ties: trigger,
    then steps, messages, provider calls, provider events, engagement; then as each source
    gave them). Read the run with run_for_timeline to keep the queries few."""
    entries = [entry for source in TIMELINE_SOURCES for entry in source(run)]
    # The engine makes a message a moment before it writes the StepLog that queued it, in one
    # transaction: the message is shown at that log's time, after it, so the cause reads first
    # and the times shown still only go forward.
    logged_at: dict[str, datetime] = {}
    for entry in entries:
        if entry.kind == "step" and entry.detail and entry.detail.get("message_id"):
            logged_at.setdefault(str(entry.detail["message_id"]), entry.at)
    entries = [dataclasses.replace(entry, at=max(entry.at, logged_at[str(entry.obj.pk)]))
               if entry.kind == "message" and entry.obj is not None
               and str(entry.obj.pk) in logged_at else entry
               for entry in entries]
    return sorted(entries, key=lambda entry: (entry.at, entry.rank))


# --- A recipient's latest activity --------------------------------------------------------

PROBLEM_EVENTS = {
    StepLog.Event.SKIPPED, StepLog.Event.CONDITION_FALSE, StepLog.Event.OPTED_OUT,
    StepLog.Event.QUIET_HOURS, StepLog.Event.FAILED, StepLog.Event.RATE_LIMITED,
    StepLog.Event.THROTTLED, StepLog.Event.SEND_WINDOW, StepLog.Event.CANCELLED,
    StepLog.Event.DELAYED, StepLog.Event.RETRYING,
}


def step_log_reason(log: StepLog) -> str:
    """A StepLog as one line: its step, event and the reason, rule or time in its detail."""
    detail = log.detail or {}
    why = (detail.get("reason") or detail.get("rule") or detail.get("error")
           or (f"until {detail['until']}" if detail.get("until") else ""))
    prefix = f"{log.step_ref}: " if log.step_ref else ""
    return f"{prefix}{log.get_event_display()}" + (f" ({why})" if why else "")


@dataclass(frozen=True)
class RunSummary:
    run: Run
    reasons: list[str]  # why steps were not sent (or not yet), newest last


def recipient_recent_runs(recipient: Recipient, *, limit: int = 20) -> list[RunSummary]:
    """The recipient's latest runs, newest first, each with the reasons its steps were skipped,
    suppressed, held or failed (from its StepLogs)."""
    problems = StepLog.objects.filter(event__in=PROBLEM_EVENTS).order_by("id")
    runs = (recipient.runs.select_related("workflow", "tenant").order_by("-created_at")
            .prefetch_related(Prefetch("step_logs", queryset=problems,
                                       to_attr="problem_logs"))[:limit])
    return [RunSummary(run, [step_log_reason(log) for log in run.problem_logs]) for run in runs]


def recipient_recent_messages(recipient: Recipient, *, limit: int = 20) -> list[Message]:
    """The recipient's latest messages, newest first (`error` holds the reason a message was
    suppressed or failed)."""
    return list(recipient.messages.select_related("workflow", "run")
                .order_by("-created_at")[:limit])


def trigger_idempotency_record(trigger: Trigger) -> IdempotencyRecord | None:
    """The Idempotency-Key record that answered `trigger`'s request (its API key and key, and
    its stored answer naming the trigger), or None: sent without a key, or the record is gone
    (kept IDEMPOTENCY_TTL_SECONDS; the key may since have been claimed by another trigger)."""
    if not trigger.idempotency_key or trigger.api_key_id is None:
        return None
    record = IdempotencyRecord.objects.filter(api_key_id=trigger.api_key_id,
                                              key=trigger.idempotency_key).first()
    if record is None or not isinstance(record.response_body, dict) \
            or record.response_body.get("trigger_id") != str(trigger.pk):
        return None
    return record


def idempotency_record_trigger(record: IdempotencyRecord) -> Trigger | None:
    """The trigger an Idempotency-Key record's answer names, or None (still in progress, or
    the trigger is gone)."""
    body = record.response_body
    trigger_id = _as_uuid(str(body.get("trigger_id", ""))) if isinstance(body, dict) else None
    if trigger_id is None:
        return None
    return Trigger.objects.filter(pk=trigger_id).select_related("workflow").first()
