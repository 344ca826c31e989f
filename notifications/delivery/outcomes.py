"""The end of a delivery pass: each message's outcome, its timeline entry, events, analytics
and wake-up, written in one transaction with the last calls' attempts (`_finish`)."""

from __future__ import annotations

import logging
from datetime import datetime

from django.db import connection, transaction

from analytics.models import RollupDelta
from analytics.rollups import Fact, fact_rows, message_fact
from clarion.db import instance_maker, numbered_cursor, rows_copy, rows_update
from events.outbox import MESSAGE_STATUS_EVENTS, events_record, message_event

from ..models import DeliveryAttempt, Message, MessageEvent, Run, StepLog
from ..queue import enqueue_at, enqueue_many
from .calls import ATTEMPT_RESULT_FIELDS, Delivery
from .fanout import merge_device_sets, unsent_sets_error
from .status import message_events_replay

logger = logging.getLogger(__name__)


MESSAGE_OUTCOME_FIELDS = ["status", "error", "provider", "provider_message_id",
                          "next_attempt_at", "updated_at", "sent_at", "attempts",
                          "estimated_cost", "cost_currency"]


def _finish(deliveries: list[Delivery], now: datetime, *,
            attempts: list[DeliveryAttempt] = ()) -> None:
    """Write the last calls' attempts, each message's outcome and its timeline entry, in one
    transaction. Only messages still `sending` in the same send (row-locked first) move: one
    that something else moved meanwhile (the sweeper, after a stall; then perhaps a resend that
    another worker is sending) keeps that status; its attempts, the ledger, are written all
    the same. A deferred message (its call could not start before the batch's deadline) is
    queued again at once, for the next pass. A push message sent by some device sets but not
    all is `sent` with the others' errors (fanout.unsent_sets_error)."""
    logs, changed, schedules, deferred = [], [], [], []
    make_log = instance_maker(StepLog)
    for d in merge_device_sets(deliveries):
        if d.outcome is None:  # cannot happen; never leave a message in `sending`
            d.outcome = ("failed", d.last_provider, "")
        message = d.message
        state, provider, value = d.outcome
        detail = {"message_id": str(message.id), "provider": provider,
                  "attempts": message.attempts}
        if len(d.tried) > 1:
            detail["tried"] = d.tried
        if d.sets:
            detail["device_sets"] = d.sets
        if d.devices:
            detail["devices"] = d.devices
        message.updated_at = now
        message.provider = provider or message.provider
        message.next_attempt_at = None
        if state == "sent":
            message.status, message.sent_at = Message.Status.SENT, now
            message.error = unsent_sets_error(d.sets, d.last_error)[:2000]
            if message.error:
                detail["error"] = message.error[:500]
            message.provider_message_id = value
            message.estimated_cost, message.cost_currency = d.cost or (None, "")
            event, detail["provider_message_id"] = StepLog.Event.SENT, value
        elif state == "deferred":
            message.status = Message.Status.QUEUED
            if not d.tried:  # no call was made: this pass does not count as an attempt
                message.attempts = max(message.attempts - 1, 0)
                detail["attempts"] = message.attempts
            event = StepLog.Event.RETRYING
            detail["reason"] = ("the delivery task's time ran out before this message's "
                                "provider call could start; queued for the next pass")
            deferred.append(message)
        elif state in ("retry", "wait"):
            message.status, message.next_attempt_at = Message.Status.QUEUED, value
            message.error = (d.last_error if state == "retry" else
                             f"Every {message.channel} provider's circuit is open; "
                             f"waiting until {value.isoformat()}.")[:2000]
            event = StepLog.Event.RETRYING
            detail.update(retry_at=value.isoformat(), error=message.error[:500])
            schedules.append((message, value))
        else:
            message.status, message.error = Message.Status.FAILED, d.last_error[:2000]
            event, detail["error"] = StepLog.Event.FAILED, d.last_error[:500]
        changed.append(message)
        logs.append(make_log(run_id=message.run_id, step_ref=message.step_ref, event=event,
                             detail=detail))
    with transaction.atomic():
        rows_update(DeliveryAttempt, list(attempts), ATTEMPT_RESULT_FIELDS)
        owned = _messages_write(changed)
        if len(owned) < len(changed):
            logger.warning("messages %s left `sending` while being delivered; not overwritten",
                           [str(m.pk) for m in changed if m.pk not in owned])
            logs = [log for log, m in zip(logs, changed, strict=True) if m.pk in owned]
            changed = [m for m in changed if m.pk in owned]
        # The timeline and the analytics' deltas copied in (COPY on PostgreSQL: their values
        # formatted in psycopg's C code, none by Django's insert compiler).
        rows_copy(StepLog, logs)
        events_record([message_event(MESSAGE_STATUS_EVENTS[m.status], m) for m in changed
                       if m.status in (Message.Status.SENT, Message.Status.FAILED)])
        rows_copy(RollupDelta, fact_rows(_facts(deliveries, changed, now))[0])
        _replay_early_events([m.pk for m in changed if m.status == Message.Status.SENT])
        for message, at in schedules:
            if message.pk in owned:
                enqueue_at("notifications.tasks.deliver_message", str(message.id), at=at,
                           name=f"msg:{message.id}#{message.send_number}.{message.attempts}")
        enqueue_many("notifications.tasks.deliver_message",
                     [(str(m.id),) for m in deferred if m.pk in owned])


def _messages_write(changed: list[Message]) -> set:
    """Write the outcomes of the messages still `sending` in the same send (their status and
    send_number unchanged since the claim); returns the primary keys of those written. On
    PostgreSQL one UPDATE … RETURNING, whose row locks and re-check of each row (READ
    COMMITTED re-reads a row another transaction changed meanwhile) decide; elsewhere the rows
    are read under lock (SELECT … FOR UPDATE, a no-op on SQLite, whose writers are serialized)
    and those still ours written."""
    if connection.vendor == "postgresql":
        return rows_update(Message, changed, MESSAGE_OUTCOME_FIELDS,
                           status=Message.Status.SENDING, match=("send_number",))
    sends = {m.pk: m.send_number for m in changed}
    owned = {pk for pk, send_number in Message.objects.select_for_update()
             .filter(pk__in=list(sends), status=Message.Status.SENDING)
             .values_list("pk", "send_number") if send_number == sends[pk]}
    rows_update(Message, [m for m in changed if m.pk in owned], MESSAGE_OUTCOME_FIELDS,
                status=Message.Status.SENDING)
    return owned


def _facts(deliveries: list[Delivery], changed: list[Message], now: datetime) -> list[Fact]:
    """The analytics of a batch's outcomes: sent (with the trigger-to-sent latency and the
    estimated cost) and failed messages, and each provider's calls and errors."""
    written = {m.pk for m in changed}
    # The runs' creation, read with the messages at their claim (claim.locked), else here.
    started = {m.run_id: m.run_created_at for m in changed if hasattr(m, "run_created_at")}
    unread = {m.run_id for m in changed if m.run_id not in started}
    if unread:
        started.update(Run.objects.filter(pk__in=unread).values_list("id", "created_at"))
    facts, counted = [], set()
    for d in deliveries:  # a push message's device sets are one Delivery each
        m = d.message
        if m.pk not in written:
            continue
        if m.pk not in counted:
            counted.add(m.pk)
            if m.status == Message.Status.SENT:
                latency = int((now - started.get(m.run_id, now)).total_seconds() * 1000)
                facts.append(message_fact("sent", m, at=now, latency_ms=max(latency, 0),
                                          cost=m.estimated_cost))
            elif m.status == Message.Status.FAILED:
                facts.append(message_fact("failed", m, at=now))
        took = d.outcome[1] if d.outcome is not None and d.outcome[0] == "sent" else None
        for provider in d.tried:
            key = {"at": now, "workflow": m.workflow.key, "channel": m.channel,
                   "tenant": m.tenant.key if m.tenant_id else "", "provider": provider}
            facts.append(Fact(metric="provider_calls", **key))
            if provider != took:
                facts.append(Fact(metric="provider_errors", **key))
    return facts


def _replay_early_events(sent_ids: list) -> None:
    """Apply the status events that arrived while these messages were `sending` (recorded,
    but their status change left to us): our write of `sent` would otherwise hide a fast
    "delivered" or "opened". Runs after that write, in its transaction: an event whose own
    UPDATE waited on our row lock applies itself to `sent` once we commit, and one committed
    before is read here. One query per batch; the replay only for messages with events."""
    if not sent_ids:
        return
    for message_id in _with_events(sent_ids):
        message_events_replay(message_id=message_id)


def _with_events(message_ids: list) -> set:
    """Which of `message_ids` have status events (one query). On PostgreSQL a statement kept
    per process, the ids one array parameter bound by the server: the query set was compiled
    for each batch with its 100 ids quoted into the text (and that text parsed again by
    psycopg), ~6 % of a delivery batch's loop thread in py-spy."""
    if connection.vendor != "postgresql":
        return set(MessageEvent.objects.filter(message_id__in=message_ids).order_by()
                   .values_list("message_id", flat=True).distinct())
    global _with_events_sql
    if _with_events_sql is None:
        quote = connection.ops.quote_name
        column = quote(MessageEvent._meta.get_field("message").column)
        _with_events_sql = (f"SELECT DISTINCT {column} FROM "
                            f"{quote(MessageEvent._meta.db_table)} WHERE {column} = ANY($1)")
    with numbered_cursor() as cursor:
        cursor.execute(_with_events_sql, [[Message._meta.pk.to_python(pk) for pk in message_ids]])
        return {message_id for (message_id,) in cursor.fetchall()}


_with_events_sql = None  # _with_events' statement on PostgreSQL
