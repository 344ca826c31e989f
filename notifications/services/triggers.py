"""Triggers: runs made for each recipient (directly or by fanning a topic out), cancelled,
and answered once per idempotency key."""

import dataclasses
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models import F
from django.utils import timezone
from django_q.models import OrmQ

from analytics.models import RollupDelta
from analytics.rollups import Fact, fact_rows
from clarion.db import instance_maker, rows_copy, rows_insert, transaction_conflict
from clarion.ids import new_id

from .. import engine
from ..idempotency import idempotency_record, idempotency_replay
from ..models import (
    ApiKey,
    IdempotencyRecord,
    Message,
    Recipient,
    Run,
    StepLog,
    Subscription,
    Tenant,
    Trigger,
    Workflow,
)
from ..queue import enqueue, enqueue_grouped, enqueue_many, task_rows, task_rows_apply
from .audience import (
    recipient_ids_upsert_many,
    recipient_upsert,
    recipient_upsert_rows,
)
from .group_commit import group_commit_applies, trigger_rows_write_grouped
from .trigger_batch import TriggerRows
from .trigger_statement import trigger_rows_write, workflow_unchanged

logger = logging.getLogger(__name__)

FANOUT_BUDGET_SECONDS = 20.0  # then a fan-out task hands the rest to a new task


@dataclass
class TriggerRequest:
    """A validated trigger: recipients are ids, profile dicts (with "id") or {"topic": key}."""

    workflow: Workflow
    recipients: list
    data: dict = field(default_factory=dict)
    actor: object = None
    tenant: Tenant | None = None
    cancellation_key: str = ""
    api_key: ApiKey | None = None
    idempotency_key: str = ""


def _run_create_many(trigger: Trigger, runs: Mapping[uuid.UUID, int], *,
                     lane_tasks: list[tuple] | None) -> list[Run]:
    """A new trigger (not written yet), its runs ({run id: recipient pk}) with their StepLogs,
    its advance tasks and the analytics fact (at now), in one statement on PostgreSQL
    (clarion.db.rows_insert). `lane_tasks`: the advance lane tasks' arguments, from
    _lanes_hold, called earlier in the same transaction (the held lanes stay locked until it
    commits); None: an advance_runs task per batch instead, no lane held (trigger_workflow
    says when)."""
    runs, timeline, deltas = _run_rows(trigger, runs)
    if lane_tasks is not None:
        func, batches = "notifications.tasks.advance_lane", lane_tasks
    else:
        size, ids = settings.CLARION["ADVANCE_BATCH_SIZE"], [str(run.id) for run in runs]
        func = "notifications.tasks.advance_runs"
        batches = [tuple(ids[start:start + size]) for start in range(0, len(ids), size)]
    # The advance tasks' queue rows join the statement when the broker is this database's
    # table (queue.task_rows), else enqueue_many hands them over as it would.
    tasks = task_rows(func, batches)
    rows_insert([(Trigger, [trigger]), (Run, runs), (StepLog, timeline), (OrmQ, tasks or []),
                 (RollupDelta, deltas)])
    if tasks is None:
        enqueue_many(func, batches)
    return runs


def _run_rows(trigger: Trigger, runs: Mapping[uuid.UUID, int | None]
              ) -> tuple[list[Run], list[StepLog], list[RollupDelta]]:
    """The unsaved rows of a new trigger's runs ({run id: recipient pk}): the runs, their
    first timeline entries, the analytics delta of the fact "triggered" (at now)."""
    make_run, make_entry = instance_maker(Run), instance_maker(StepLog)
    related = {"trigger": trigger, "workflow": trigger.workflow, "tenant": trigger.tenant}
    version_id = trigger.workflow.published_version_id
    runs = [make_run(related, id=run_id, recipient_id=recipient_id,
                     workflow_version_id=version_id)
            for run_id, recipient_id in runs.items()]
    detail = {"trigger_id": str(trigger.id)}
    facts = [Fact(metric="triggered", at=timezone.now(), count=len(runs),
                  workflow=trigger.workflow.key,
                  tenant=trigger.tenant.key if trigger.tenant_id else "")] if runs else []
    return runs, [make_entry(run_id=run.pk, event=StepLog.Event.TRIGGERED, detail=detail)
                  for run in runs], fact_rows(facts)[0]


def _lanes_hold(run_ids: Sequence[uuid.UUID]) -> list[tuple]:
    """In the caller's transaction, before its recipients' upserts (_trigger_write's lock
    order): the lanes that the runs `run_ids` (in order) fall in held (engine.lanes_hold), and
    the advance lane tasks' arguments for them ((lane, *run ids), engine/claim.py): the runs in
    batches of ADVANCE_BATCH_SIZE, the batches spread over consecutive lanes from one the first
    run's id picks; one task for each lane no task holds, with the lane's first batch (its
    other batches, and those of held lanes, are taken by the lanes' claims)."""
    by_lane = _lane_candidates(run_ids)
    if not by_lane:
        return []
    held = engine.lanes_hold(list(by_lane), now=timezone.now())
    return [(lane, *batch) for lane, batch in by_lane.items() if lane not in held]


def _lane_candidates(run_ids: Sequence[uuid.UUID]) -> dict[int, tuple]:
    """{lane: its first batch of the runs' ids (str)}, for _lanes_hold and the statement."""
    if not run_ids:
        return {}
    conf = settings.CLARION
    ids, size, count = [str(run_id) for run_id in run_ids], conf["ADVANCE_BATCH_SIZE"], \
        conf["ADVANCE_LANES"]
    first = run_ids[0].int % count
    by_lane: dict[int, tuple] = {}
    for number, start in enumerate(range(0, len(ids), size)):
        by_lane.setdefault((first + number) % count, tuple(ids[start:start + size]))
    return by_lane


@dataclass(frozen=True)
class _TriggerIds:
    """The ids a new trigger will have, known before anything is written (so that its answer
    can be stored with its idempotency record first): the trigger's, and a run's per distinct
    direct recipient, in the request's order."""

    trigger_id: uuid.UUID
    runs: dict[str, uuid.UUID]  # recipient external id → run id

    @classmethod
    def new(cls, request: TriggerRequest) -> "_TriggerIds":
        runs = {}
        for spec in request.recipients:
            if isinstance(spec, Mapping):
                if "topic" in spec:
                    continue
                spec = spec["id"]
            runs.setdefault(str(spec), None)
        return cls(new_id(), {external_id: new_id() for external_id in runs})

    def answer(self) -> dict:
        """The trigger's answer, for the runs these ids will be: {"trigger_id": str, "runs":
        [{"id": str, "recipient": str (external id)}]}."""
        return {"trigger_id": str(self.trigger_id),
                "runs": [{"id": str(run_id), "recipient": external_id}
                         for external_id, run_id in self.runs.items()]}


def trigger_workflow(request: TriggerRequest, *, lanes: bool = True) -> tuple[Trigger, list[Run]]:
    """One transaction: the trigger, inline recipient upserts, and a run per direct recipient.

    Topic audiences fan out in a task (they may be large); their runs appear on the trigger.
    `lanes=False` for a caller whose transaction writes several triggers (a schedule's
    occurrence): their runs get an advance_runs task per batch and hold no advance lane, since
    a trigger in a lane that a transaction marked held waits for that transaction to commit.
    """
    with transaction.atomic():
        return _trigger_write(request, _TriggerIds.new(request), lanes=lanes)


def _trigger_write(request: TriggerRequest, ids: _TriggerIds, *,
                   lanes: bool = True) -> tuple[Trigger, list[Run]]:
    """trigger_workflow's rows, with `ids`, in the caller's transaction.

    LOCK_ORDER, the one-statement trigger's too (trigger_statement.py, trigger_batch.py): the
    idempotency record (the caller's, first), the advance lanes (engine.lanes_hold: their
    shared advisory locks and the row of each lane it marks held), the recipients' rows (the
    actor's among the direct recipients', in external id order: audience.LOCK_ORDER,
    _recipients_upsert; their channel data), then only rows of the trigger's own (the trigger,
    its runs, their timeline, tasks and fact; the fan-out task); the rows they refer to
    (workflow, version, tenant, API key, recipients) are locked FOR KEY SHARE by the foreign
    keys' checks at the commit, which no trigger's write conflicts with. With the recipients
    before the lanes (as here until then), or the actor before the other recipients, a trigger
    written here and one written as a statement, naming the same people, each waited for what
    the other held: PostgreSQL aborted one (40P01)."""
    topics = _request_topics(request)
    lane_tasks = _lanes_hold(list(ids.runs.values())) if lanes else None
    direct = _recipients_upsert(request)
    trigger = _trigger_row(request, ids, topics=topics, runs=len(direct))
    runs = _run_create_many(trigger, {run_id: direct[external_id]
                                      for external_id, run_id in ids.runs.items()},
                            lane_tasks=lane_tasks)
    if topics:
        enqueue("notifications.tasks.fanout_trigger", str(trigger.id))
    return trigger, runs


def _recipients_upsert(request: TriggerRequest) -> dict[str, int]:
    """The request's direct recipients upserted, with its actor's profile if it gives one, in
    external id order (LOCK_ORDER): the recipients before the actor's id, the actor's, then the
    rest (the actor's own id among them, whose recipient's profile is written after the
    actor's, as before). Returns {external id: primary key} of the direct recipients, in the
    request's order."""
    specs = [spec for spec in request.recipients
             if not (isinstance(spec, Mapping) and "topic" in spec)]
    if not isinstance(request.actor, Mapping):
        return recipient_ids_upsert_many(specs)
    actor = dict(request.actor)
    actor_id = str(actor.pop("id"))

    def external_id(spec) -> str:
        return str(spec["id"] if isinstance(spec, Mapping) else spec)

    pks = recipient_ids_upsert_many([spec for spec in specs if external_id(spec) < actor_id])
    recipient_upsert(external_id=actor_id, **actor)
    pks.update(recipient_ids_upsert_many(
        [spec for spec in specs if external_id(spec) >= actor_id]))
    return {external_id(spec): pks[external_id(spec)] for spec in specs}


def _request_topics(request: TriggerRequest) -> list[str]:
    return [spec["topic"] for spec in request.recipients
            if isinstance(spec, Mapping) and "topic" in spec]


def _trigger_row(request: TriggerRequest, ids: _TriggerIds, *, topics: list[str],
                 runs: int) -> Trigger:
    """The request's Trigger row, unsaved: written with its runs, without save()'s machinery
    (no signal listens for a Trigger; made as clarion.db.instance_maker makes rows)."""
    return instance_maker(Trigger)(
        {"workflow": request.workflow, "tenant": request.tenant, "api_key": request.api_key},
        id=ids.trigger_id, actor=request.actor, data=request.data, recipients=request.recipients,
        cancellation_key=request.cancellation_key, idempotency_key=request.idempotency_key,
        fanout=Trigger.Fanout.PENDING if topics else Trigger.Fanout.DONE,
        runs_created=runs, recipients_total=None if topics else runs,
    )


class WorkflowChanged(Exception):
    """The workflow a process kept (trigger_workflow_idempotent's `workflow_kept`) was changed
    since it was read: nothing was written; read it again and validate the request again."""


def _statement_rows(request: TriggerRequest) -> tuple[list[str], list[Recipient]] | None:
    """The recipients' upsert (audience.recipient_upsert_rows) when the request's rows can be
    one statement (_trigger_statement): PostgreSQL, the ORM broker in this database, direct
    recipients with the same profile fields and no channel data, no topic, no actor profile;
    else None."""
    if (connection.vendor != "postgresql" or _request_topics(request)
            or isinstance(request.actor, Mapping)
            or not task_rows_apply("notifications.tasks.advance_lane")):
        return None
    return recipient_upsert_rows(request.recipients)


def _trigger_statement(request: TriggerRequest, ids: _TriggerIds, upsert: tuple, *,
                       record: IdempotencyRecord | None = None,
                       workflow_kept: bool = False) -> tuple[bool, IdempotencyRecord | None]:
    """_trigger_write's rows (and `record`, the key's answer) in one statement, sent outside
    a transaction (services/trigger_statement.py; in the caller's, if any), for a request
    whose `upsert` _statement_rows gave. Returns whether it wrote (False: `record`'s key is
    taken) and, when it did not, the key's record as the statement read it (None when it did
    not see it). With `workflow_kept`, only while the workflow's row is as it was read; else
    raises WorkflowChanged, nothing written."""
    update_fields, recipients = upsert
    trigger = _trigger_row(request, ids, topics=[], runs=len(ids.runs))
    runs, timeline, deltas = _run_rows(trigger, dict.fromkeys(ids.runs.values()))
    candidates = _lane_candidates([run.id for run in runs])
    tasks = task_rows("notifications.tasks.advance_lane",
                      [(lane, *batch) for lane, batch in candidates.items()])
    groups = [(Trigger, [trigger]), (Run, runs), (StepLog, timeline), (RollupDelta, deltas)]
    if record is not None and workflow_kept and group_commit_applies():
        # With the process's other triggers in flight, if any (services/group_commit.py).
        written, unchanged, taken = trigger_rows_write_grouped(TriggerRows(
            record=record, recipients=recipients, update_fields=update_fields, groups=groups,
            run_recipients=list(ids.runs), tasks=tasks, task_lanes=list(candidates),
            now=timezone.now(), workflow=request.workflow))
    else:
        # In a caller's transaction, in a savepoint: a failed statement undoes itself alone,
        # as the transactional path's atomic block does.
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            written, unchanged, taken = trigger_rows_write(
                record=record, recipients=recipients, update_fields=update_fields,
                groups=groups, run_recipients=list(ids.runs), tasks=tasks,
                task_lanes=list(candidates), now=timezone.now(),
                workflow=request.workflow if workflow_kept else None)
    if not unchanged:
        raise WorkflowChanged()
    return written, taken


def _topic_keys(trigger: Trigger) -> list[str]:
    return [spec["topic"] for spec in trigger.recipients
            if isinstance(spec, Mapping) and "topic" in spec]


def _actor_pk(trigger: Trigger) -> int | None:
    """The primary key of the trigger's actor, left out of its topic audiences (who did the
    thing is not told about it)."""
    actor = trigger.actor
    external_id = actor.get("id") if isinstance(actor, Mapping) else actor
    if external_id in (None, ""):
        return None
    return (Recipient.objects.filter(external_id=str(external_id))
            .values_list("pk", flat=True).first())


def _subscriber_ids(trigger: Trigger, actor_pk: int | None):
    """Recipient pks subscribed to the trigger's topics, distinct, ascending (keyset order;
    the subscription_unique index (topic, recipient) serves it)."""
    ids = (Subscription.objects.filter(topic__key__in=_topic_keys(trigger))
           .order_by("recipient_id").values_list("recipient_id", flat=True).distinct())
    return ids.exclude(recipient_id=actor_pk) if actor_pk is not None else ids


def trigger_fanout(*, trigger_id: str, budget_seconds: float = FANOUT_BUDGET_SECONDS) -> int:
    """Create the runs of a trigger's topic audiences, CLARION["FANOUT_BATCH_SIZE"] subscribers
    at a time, for up to `budget_seconds`; then hand the rest to a new task. Returns how many
    runs it created.

    Each chunk is one transaction under the trigger's row lock: the runs, their StepLogs, their
    first walk (what they decided: messages, inbox items, deliveries, wake-ups; see
    _fanout_runs_walk), the keyset cursor (`fanout_after`) and the progress counters commit
    together, so a worker killed mid-fan-out loses nothing and the next task (or the sweeper)
    resumes after the last committed chunk. The unique (trigger, recipient) constraint and the
    lock make a second fan-out of the same trigger create nothing twice. Safe to run twice,
    concurrently.
    """
    created, started = 0, time.monotonic()
    while True:
        with transaction.atomic():
            trigger = (Trigger.objects.select_for_update(of=("self",))
                       .select_related("workflow", "tenant").filter(pk=trigger_id).first())
            if trigger is None or trigger.fanout == Trigger.Fanout.DONE:
                return created
            now = timezone.now()
            if trigger.cancelled_at is not None:
                Trigger.objects.filter(pk=trigger.pk).update(fanout=Trigger.Fanout.DONE,
                                                             fanout_at=now)
                return created
            actor_pk = _actor_pk(trigger)
            updates: dict = {"fanout_at": now}
            if trigger.recipients_total is None:
                direct = trigger.runs.values_list("recipient_id", flat=True)
                updates["recipients_total"] = direct.count() + _subscriber_ids(
                    trigger, actor_pk).exclude(recipient_id__in=direct).count()
            size = settings.CLARION["FANOUT_BATCH_SIZE"]
            chunk = list(_subscriber_ids(trigger, actor_pk)
                         .filter(recipient_id__gt=trigger.fanout_after)[:size])
            if not chunk:
                Trigger.objects.filter(pk=trigger.pk).update(fanout=Trigger.Fanout.DONE,
                                                             **updates)
                return created
            runs = _fanout_runs_create(trigger, chunk)
            created += len(runs)
            if len(chunk) < size:  # the last chunk: done with it, not after one more read
                updates["fanout"] = Trigger.Fanout.DONE
            Trigger.objects.filter(pk=trigger.pk).update(
                fanout_after=chunk[-1], runs_created=F("runs_created") + len(runs), **updates)
            if len(chunk) < size:
                return created
            if time.monotonic() - started >= budget_seconds:
                enqueue("notifications.tasks.fanout_trigger", str(trigger.pk))
                return created


# Runs per advance task of a fan-out chunk whose walk failed (_fanout_runs_walk): a batch
# writes a table at a time whatever its size (engine/writes.py), each a few seconds long at
# most (well under Q_CLUSTER["timeout"]).
FANOUT_ADVANCE_CHUNK = 250


def _fanout_runs_create(trigger: Trigger, recipient_ids: list[int]) -> list[Run]:
    """Runs for the recipients (pks) of one fan-out chunk that have none on this trigger yet
    (a direct recipient who is also a subscriber), with their StepLogs, walked at once."""
    existing = set(trigger.runs.filter(recipient_id__in=recipient_ids)
                   .values_list("recipient_id", flat=True))
    # New rows under the trigger's lock (and not those of `existing`): copied in, not INSERTed
    # (clarion.db.rows_copy), as the chunk's timeline and what its walk writes. The runs
    # themselves are written by their walk, each in the state it leaves it (_fanout_runs_walk).
    now = timezone.now()
    runs = [_fanout_run(trigger, pk, now) for pk in recipient_ids if pk not in existing]
    keys = _topic_keys(trigger)
    via = {}
    if len(keys) > 1:  # which topic reached each recipient: the first named in the trigger
        for pk, key in (Subscription.objects.filter(topic__key__in=keys,
                                                    recipient_id__in=recipient_ids)
                        .values_list("recipient_id", "topic__key")):
            if pk not in via or keys.index(key) < keys.index(via[pk]):
                via[pk] = key
    rows_copy(StepLog, [
        StepLog(run_id=run.pk, event=StepLog.Event.TRIGGERED,
                detail={"trigger_id": str(trigger.id),
                        "via": f"topic:{via.get(run.recipient_id, keys[0])}"})
        for run in runs
    ])
    _fanout_runs_walk(runs)
    return runs


def _fanout_run(trigger: Trigger, recipient_id: int, now, pk: uuid.UUID | None = None) -> Run:
    """A new run of fan-out `trigger` for `recipient_id`, not written yet, created `now`."""
    return Run(id=pk or new_id(), trigger=trigger, workflow=trigger.workflow,
               recipient_id=recipient_id, tenant=trigger.tenant,
               workflow_version_id=trigger.workflow.published_version_id, created_at=now,
               updated_at=now)


def _fanout_runs_walk(runs: list[Run]) -> None:
    """Write and walk a chunk's new runs in the chunk's transaction (engine.advance_new_runs:
    each run inserted in the state its walk leaves it), their deliveries queued as
    `deliver_messages` tasks: no advance task, no second read, lock and claim of each run (a
    fan-out's runs were 250 to an advance task; bench/fanout.py). If the walk fails, its
    savepoint is undone, the runs are written as they were created and go to advance tasks
    instead, whose batch (or, failing that, each run on its own) a worker walks; the sweeper
    backs both."""
    if not runs:
        return
    try:
        with transaction.atomic(), enqueue_grouped(
                "notifications.tasks.deliver_message", into="notifications.tasks.deliver_messages",
                size=settings.CLARION["DELIVERY_BATCH_SIZE"]):
            engine.advance_new_runs(runs, now=timezone.now())
        return
    except Exception:
        logger.warning("the walk of a fan-out chunk of %d runs failed; they go to advance "
                       "tasks", len(runs), exc_info=True)
    rows_copy(Run, [_fanout_run(run.trigger, run.recipient_id, run.created_at, run.pk)
                    for run in runs], keep_times=True)
    ids = [str(run.id) for run in runs]
    enqueue_many("notifications.tasks.advance_runs",
                 [tuple(ids[i:i + FANOUT_ADVANCE_CHUNK])
                  for i in range(0, len(ids), FANOUT_ADVANCE_CHUNK)])


@transaction.atomic
def workflow_cancel(*, workflow: Workflow, cancellation_key: str,
                    recipient_ids: Sequence[str] | None = None,
                    tenant: Tenant | None = None) -> list[Run]:
    """Stop the unfinished runs of `workflow` triggered with `cancellation_key`.

    Their pending steps never run and their queued messages are not sent (a message already
    handed to a provider cannot be recalled). Without `recipient_ids`, a topic fan-out that is
    still creating runs stops too. `tenant` limits it to one tenant's runs.
    """
    now = timezone.now()
    triggers = Trigger.objects.filter(workflow=workflow, cancellation_key=cancellation_key)
    if tenant is not None:
        triggers = triggers.filter(tenant=tenant)
    if recipient_ids is None:
        triggers.filter(cancelled_at__isnull=True).update(cancelled_at=now)
    runs = Run.objects.select_for_update(of=("self",)).filter(
        trigger__in=triggers, status__in=[Run.Status.RUNNING, Run.Status.WAITING]
    )
    if recipient_ids is not None:
        runs = runs.filter(recipient__external_id__in=list(recipient_ids))
    runs = list(runs.select_related("recipient"))
    unfinished = [Run.Status.RUNNING, Run.Status.WAITING]
    Run.objects.filter(pk__in=[run.pk for run in runs], status__in=unfinished).update(
        status=Run.Status.CANCELLED, wake_at=None, updated_at=now
    )
    # Messages still waiting for (or between) delivery attempts, also of runs already completed.
    # Only `queued` ones, row-locked: a worker's claim (queued → sending) waits for this
    # transaction and then finds them cancelled; one already `sending` is the worker's to
    # finish (its provider may have accepted it), never overwritten here.
    messages = (Message.objects.select_for_update(of=("self",))
                .filter(run__trigger__in=triggers, status=Message.Status.QUEUED))
    if recipient_ids is not None:
        messages = messages.filter(recipient__external_id__in=list(recipient_ids))
    messages = list(messages.values_list("id", "run_id", "step_ref"))
    Message.objects.filter(pk__in=[m[0] for m in messages], status=Message.Status.QUEUED).update(
        status=Message.Status.CANCELLED, next_attempt_at=None, updated_at=now
    )
    detail = {"cancellation_key": cancellation_key}
    StepLog.objects.bulk_create(
        [StepLog(run=run, event=StepLog.Event.CANCELLED, detail=detail) for run in runs]
        + [StepLog(run_id=run_id, step_ref=step_ref, event=StepLog.Event.CANCELLED,
                   detail={**detail, "message_id": str(message_id)})
           for message_id, run_id, step_ref in messages]
    )
    return runs



# --- Idempotency ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TriggerResponse:
    """What a trigger answers: the HTTP status, the body, and whether it is a replay of the
    first response to the same Idempotency-Key."""

    status: int
    body: dict
    replayed: bool = False


def trigger_workflow_idempotent(*, request: TriggerRequest, idempotency_key: str | None,
                                request_fingerprint: object,
                                workflow_kept: bool = False) -> TriggerResponse:
    """Trigger once per (API key, Idempotency-Key): the first request triggers and its answer is
    stored; the same key with the same `request_fingerprint` (any JSON-able value, e.g. the path
    and body) within IDEMPOTENCY_TTL_SECONDS answers it again and triggers nothing.

    Without `idempotency_key` it simply triggers. With it, one transaction stores the answer
    (its ids chosen beforehand) and then writes the trigger: a concurrent request with the same
    key waits for that transaction, then replays the answer, or triggers if it rolled back; a
    trigger that fails leaves the key free. Raises IdempotencyConflict for a key an older
    Clarion still holds (409), IdempotencyMismatch for another request with the same key (422).
    The rule is the IETF draft "The Idempotency-Key HTTP Header Field" (its error scenarios).
    On PostgreSQL most triggers are one statement (services/trigger_statement.py).

    `workflow_kept`: the request's workflow is a copy the process kept, not checked for this
    request; it is checked here (in the trigger's statement when it is one), and
    WorkflowChanged raised, nothing written, when its row changed.

    A trigger whose transaction PostgreSQL undid for another's sake (a deadlock, a
    serialization failure: clarion.db.transaction_conflict; nothing of it written, its key
    free again) is written once more, with new ids, outside a caller's transaction; the
    second time, or in a caller's transaction, the OperationalError is raised (the API
    answers 503 with Retry-After).
    """
    try:
        return _trigger_idempotent(request=request, idempotency_key=idempotency_key,
                                   request_fingerprint=request_fingerprint,
                                   workflow_kept=workflow_kept)
    except OperationalError as exc:
        if connection.in_atomic_block or not transaction_conflict(exc):
            raise
        logger.info("a trigger of %s undone by PostgreSQL (%s) is written again",
                    request.workflow.key, str(exc).splitlines()[0])
    return _trigger_idempotent(request=request, idempotency_key=idempotency_key,
                               request_fingerprint=request_fingerprint,
                               workflow_kept=workflow_kept)


def _trigger_idempotent(*, request: TriggerRequest, idempotency_key: str | None,
                        request_fingerprint: object, workflow_kept: bool) -> TriggerResponse:
    """trigger_workflow_idempotent's work, once."""
    statement = _statement_rows(request)
    if workflow_kept and statement is None and not workflow_unchanged(request.workflow):
        raise WorkflowChanged()
    if idempotency_key is None:
        ids = _TriggerIds.new(request)
        if statement is not None:
            _trigger_statement(request, ids, statement, workflow_kept=workflow_kept)
        else:
            with transaction.atomic():
                _trigger_write(request, ids)
        return TriggerResponse(202, ids.answer())
    request_hash = hashlib.sha256(
        json.dumps(request_fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()
    request = dataclasses.replace(request, idempotency_key=idempotency_key)
    ids = _TriggerIds.new(request)
    body = ids.answer()
    if statement is not None:
        record = instance_maker(IdempotencyRecord)(
            {"api_key": request.api_key}, key=idempotency_key, request_hash=request_hash,
            response_status=202, response_body=body)
        written, taken = _trigger_statement(request, ids, statement, record=record,
                                            workflow_kept=workflow_kept)
        if written:
            return TriggerResponse(202, body)
        # The key is taken: replayed, unless its record is gone or outdated; read again when
        # the statement did not see it (committed while the statement waited on the key).
        record = idempotency_replay(api_key=request.api_key, key=idempotency_key,
                                    request_hash=request_hash, record=taken)
        if record is not None:
            return TriggerResponse(record.response_status, record.response_body, replayed=True)
    with transaction.atomic():
        record = idempotency_record(api_key=request.api_key, key=idempotency_key,
                                    request_hash=request_hash, status=202, body=body)
        if record is not None:
            return TriggerResponse(record.response_status, record.response_body, replayed=True)
        _trigger_write(request, ids)
    return TriggerResponse(202, body)
