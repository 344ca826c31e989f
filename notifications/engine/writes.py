"""What passes decide, written a table at a time: one statement per table for a whole batch.

A pass (context.Pass) does not write its Messages, InboxItems, delivery and wake-up tasks and
its run's new state as it decides them: it hands them to a `Writes`, which writes each kind in
one statement when flushed (`Writes.flush`), and then `record` writes the passes' timelines,
outbound events and analytics facts, also once each. A batch of N runs (batch.advance_batch)
therefore costs the same few statements whatever N; one run (walk.advance) the same as before.

Order and visibility: a step that reads what earlier steps or runs wrote (conditions on
`steps.*`, `unless`, route, digest and approval steps) calls `Pass.flush()` first, so it reads
exactly what it would have read had every row been written at once.

Nothing is written twice. A batch (batch.py) read every message of its runs after locking them,
and a fan-out chunk's runs are new and have none: a Message their passes decide on cannot exist
yet, so it is copied in (COPY: clarion.db.rows_copy) without ON CONFLICT and not read back; one
whose (run, step_ref, channel) was taken all the same (written without the run's lock: not
expected) is an IntegrityError that undoes the batch, whose runs then go one at a time
(tasks._advance_batch). One run at a time (walk.advance without a batch), Messages are inserted
with ON CONFLICT DO NOTHING on that key and read back: a Message whose key was already taken (an
earlier attempt that committed) is a duplicate: its InboxItem, its delivery, its timeline
entries, events and facts are dropped, and the stored one stands. InboxItems belong to Messages
this transaction inserted, which no other can have given an item: they are copied in, as are
timelines. The runs'
UPDATE is guarded by the status each pass read under the run's lock; a run that moved on raises
RunMovedOn, and the caller rolls the whole transaction back.
"""

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Q

from analytics.models import RollupDelta
from analytics.rollups import Fact, fact_rows, message_fact, suppression_metric
from clarion.db import rows_copy
from events.outbox import MESSAGE_STATUS_EVENTS, events_record, message_event, run_event

from ..models import Message, Run, StepLog
from ..queue import enqueue_at_many, enqueue_many

logger = logging.getLogger(__name__)


class RunMovedOn(Exception):
    """A run of a batch left the status its pass read under the lock (it cannot while the lock
    is held): the batch's transaction is undone and its runs go one at a time."""


@dataclass
class _Item:
    """An in-app Message's InboxItem to write, and the timeline entry that names it."""

    message: Message
    content: dict
    entry: StepLog


@dataclass
class Writes:
    """The rows passes decided on and not yet written (see the module's docstring)."""

    messages: list[Message] = field(default_factory=list)
    items: list[_Item] = field(default_factory=list)
    deliveries: list[Message] = field(default_factory=list)
    wakes: list[tuple[str, tuple, datetime, str]] = field(default_factory=list)
    runs: list[tuple[Run, str]] = field(default_factory=list)  # (run, status read under lock)
    duplicates: set[str] = field(default_factory=set)  # ids of Messages not written: see above
    # Every message the runs have was read under their locks (a batch), or they have none (runs
    # created in this transaction, a fan-out chunk's): Messages are copied in without ON
    # CONFLICT and not read back (a conflict would be an IntegrityError, undoing the caller's
    # transaction or savepoint).
    messages_read: bool = False
    # The runs are not written yet (batch.advance_new_runs): each is inserted, in the state its
    # pass left it, instead of updated. The rows that refer to them are written before them in
    # the same transaction (foreign keys are checked at commit).
    insert_runs: bool = False

    def message(self, message: Message) -> None:
        """Write `message` (a new Message, its id set) with the others."""
        self.messages.append(message)

    def inbox_item(self, message: Message, content: dict, entry: StepLog) -> None:
        """Write the InboxItem of in-app `message`; `entry.detail["inbox_item_id"]` gets its id."""
        self.items.append(_Item(message, content, entry))

    def deliver(self, message: Message) -> None:
        """Enqueue `message`'s delivery (tasks.deliver_message) with the others."""
        self.deliveries.append(message)

    def wake(self, func: str, *args, at: datetime, name: str) -> None:
        """queue.enqueue_at(func, *args, at=at, name=name), with the others."""
        self.wakes.append((func, tuple(args), at, name))

    def run(self, run: Run, from_status: str) -> None:
        """Write `run`'s status, cursor, wake_at, step_refs, state and updated_at, if it still
        has `from_status` (else RunMovedOn); with `insert_runs`, insert the whole run."""
        self.runs.append((run, from_status))

    def flush(self) -> None:
        """Write everything held, a statement per table: Messages, InboxItems, delivery and
        wake-up tasks, runs (updated, or with `insert_runs` inserted). Raises RunMovedOn (see
        `run`)."""
        if self.messages:
            self._write_messages()
        if self.items:
            self._write_items()
        if self.deliveries:
            enqueue_many("notifications.tasks.deliver_message",
                         [(str(m.id),) for m in self.deliveries if str(m.id) not in
                          self.duplicates])
            self.deliveries = []
        if self.wakes:
            enqueue_at_many(self.wakes)
            self.wakes = []
        if self.runs:
            if self.insert_runs:
                rows_copy(Run, [run for run, _ in self.runs], keep_times=True)
            else:
                runs_update(self.runs)
            self.runs = []

    def _write_messages(self) -> None:
        messages, self.messages = self.messages, []
        if self.messages_read:
            rows_copy(Message, messages)
            return
        Message.objects.bulk_create(messages, ignore_conflicts=True)
        ids = [m.id for m in messages]
        stored = set(Message.objects.filter(pk__in=ids).values_list("pk", flat=True))
        skipped = [m for m in messages if m.id not in stored]
        if skipped:  # not expected under the runs' locks: say so
            logger.warning("%d messages were not written, their (run, step, channel) had one "
                           "already: %s", len(skipped),
                           ", ".join(f"{m.run_id}/{m.step_ref}/{m.channel}" for m in skipped))
            self.duplicates.update(str(m.id) for m in skipped)

    def _write_items(self) -> None:
        from inbox.services import inbox_items_create

        items = [item for item in self.items if str(item.message.id) not in self.duplicates]
        self.items = []
        created = inbox_items_create(items=[(item.message, item.content) for item in items],
                                     new=True)  # their Messages were inserted just now
        ids = {item.message_id: item.pk for item in created}
        for item in items:
            item.entry.detail["inbox_item_id"] = ids.get(item.message.id)

    def keeps(self, entry: StepLog) -> bool:
        """Whether timeline `entry` is written: not when it names a duplicate Message."""
        return str(entry.detail.get("message_id")) not in self.duplicates


def runs_update(runs: Sequence[tuple[Run, str]]) -> None:
    """Write each run's status, cursor, wake_at, step_refs, state and updated_at where it still
    has the status its pass read (run, from_status), in one statement (PostgreSQL) or two.
    RunMovedOn when a run had moved on: the caller rolls back."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE notifications_run AS r SET status = v.status, cursor = v.cursor, "
                "wake_at = v.wake_at, step_refs = v.step_refs::jsonb, state = v.state::jsonb, "
                "updated_at = v.updated_at "
                "FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::int[], %s::timestamptz[], "
                "%s::text[], %s::text[], %s::timestamptz[]) "
                "AS v(id, from_status, status, cursor, wake_at, step_refs, state, updated_at) "
                "WHERE r.id = v.id AND r.status = v.from_status RETURNING r.id",
                [[run.pk for run, _ in runs], [status for _, status in runs],
                 [run.status for run, _ in runs], [run.cursor for run, _ in runs],
                 [run.wake_at for run, _ in runs],
                 [json.dumps(run.step_refs) for run, _ in runs],
                 [json.dumps(run.state) for run, _ in runs],
                 [run.updated_at for run, _ in runs]])
            updated = {row[0] for row in cursor.fetchall()}
    else:  # no UPDATE … FROM a list of rows: check the guard, then one bulk UPDATE
        still = Q(pk__in=[])
        for status in {status for _, status in runs}:
            still |= Q(pk__in=[run.pk for run, s in runs if s == status], status=status)
        updated = set(Run.objects.filter(still).values_list("pk", flat=True))
        if len(updated) == len(runs):
            Run.objects.bulk_update([run for run, _ in runs], ["status", "cursor", "wake_at",
                                                              "step_refs", "state",
                                                              "updated_at"])
    moved = [str(run.pk) for run, _ in runs if run.pk not in updated]
    if moved:
        raise RunMovedOn(", ".join(moved))


def record(passes: Sequence, writes: Writes) -> None:
    """Write what `passes` (context.Pass) decided, after `writes` was flushed: their
    timelines, outbound events and analytics facts, one statement each (duplicates left out:
    see the module)."""
    rows_copy(StepLog, [entry for p in passes for entry in p.timeline if writes.keeps(entry)])
    events, facts = [], []
    for p in passes:
        messages = [m for m in p.messages if str(m.id) not in writes.duplicates]
        events += [message_event(MESSAGE_STATUS_EVENTS[m.status], m) for m in messages
                   if m.status in MESSAGE_STATUS_EVENTS]
        if p.run.status in RUN_STATUS_EVENTS:
            events.append(run_event(RUN_STATUS_EVENTS[p.run.status], p.run))
        facts += _facts(p, messages, writes)
    events_record(events)
    # analytics.rollups.facts_record's deltas, copied in (no bulk_create compiling of a
    # row per run: the in-app sends' latencies differ, so they do not merge)
    rows_copy(RollupDelta, fact_rows(facts)[0])


RUN_STATUS_EVENTS = {Run.Status.COMPLETED: "run.completed", Run.Status.FAILED: "run.failed"}

# Timeline entries that count as a suppression by that reason in the analytics.
SUPPRESSING_LOGS = {StepLog.Event.QUIET_HOURS: "suppressed_quiet_hours",
                    StepLog.Event.THROTTLED: "suppressed_throttled",
                    StepLog.Event.DIGESTED: "suppressed_digested"}


def _facts(p, messages: list[Message], writes: Writes) -> list[Fact]:
    """What pass `p` decided, for the analytics rollups."""
    run, facts = p.run, []
    for m in messages:
        if m.status == "sent":
            latency = int((p.now - run.created_at).total_seconds() * 1000)
            facts.append(message_fact("sent", m, at=p.now, latency_ms=max(latency, 0)))
        elif m.status == "failed":
            facts.append(message_fact("failed", m, at=p.now))
        elif m.status in ("suppressed", "undeliverable"):
            facts.append(message_fact(suppression_metric(m.status, m.error), m, at=p.now))
    tenant = run.tenant.key if run.tenant_id else ""
    facts += [Fact(metric=SUPPRESSING_LOGS[log.event], at=p.now, workflow=run.workflow.key,
                   tenant=tenant) for log in p.timeline
              if log.event in SUPPRESSING_LOGS and writes.keeps(log)]
    return facts
