"""Claiming the messages one delivery pass sends: queued → sending, by one worker only.

A claim is an UPDATE of the messages' status (and attempts) committed before any provider call:
a message another worker claimed is not sent twice, and one whose worker died while it was
`sending` is the sweeper's (tasks._sweep_sending, recovery.py). A claim whose messages could not
be read afterwards is given back at once (claim_given_back).
"""

import logging
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import F, Q, QuerySet

from clarion.db import instance_reader, model_columns, numbered_cursor, rows_by_pk

from ..models import Message, Recipient, Run, Step, Tenant, Workflow

logger = logging.getLogger(__name__)

MESSAGE_RELATIONS = ("tenant", "workflow", "recipient", "step")
_RELATED = {"tenant": Tenant, "workflow": Workflow, "recipient": Recipient, "step": Step}


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def locked(rows: QuerySet, limit: int | None = None) -> list[Message]:
    """The messages of `rows` (up to `limit`), each with its run's `created_at` as
    `run_created_at` (the trigger-to-sent latency's start, outcomes._facts), without their
    relations (with_relations)."""
    rows = rows.annotate(run_created_at=F("run__created_at"))
    return list(rows[:limit] if limit is not None else rows)


def with_relations(messages: list[Message],
                   names: tuple[str, ...] = MESSAGE_RELATIONS) -> list[Message]:
    """`messages` with their tenant, workflow, recipient and step loaded (MESSAGE_RELATIONS):
    one query per relation for the distinct rows. A batch's messages share few tenants,
    workflows and steps; joined (select_related), each message built its own copies and
    decoded their JSON columns again. A message whose recipient or workflow is gone (deleted
    meanwhile, and the message with it) is left out, as the join left it out; one whose tenant
    or step is gone is read without it, as the join read it (SET_NULL)."""
    gone = set()
    for name in names:
        model = _RELATED[name]
        field = Message._meta.get_field(name)
        ids = {getattr(m, field.attname) for m in messages} - {None}
        found = rows_by_pk(model, ids)
        for message in messages:
            pk = getattr(message, field.attname)
            related = found.get(pk) if pk is not None else None
            if related is None and pk is not None:
                if not field.null:
                    gone.add(message.pk)
                    continue
                setattr(message, field.attname, None)
            field.set_cached_value(message, related)
    return [m for m in messages if m.pk not in gone]


def claim_batch(*, now: datetime, limit: int,
                first: str | list[str] | None = None) -> list[Message]:
    """Claim `first` (when given; nothing at all if it is not ours to send; a list: those of it
    still ours, nothing if none is) and up to `limit` due queued messages in all. SKIP LOCKED
    where the database has it (PostgreSQL): concurrent workers take disjoint batches; SQLite
    serializes writers (IMMEDIATE transactions). `first` is claimed on its own statement, before
    the others are read; when what follows fails, its claim is given back (claim_given_back)."""
    claim = {"status": Message.Status.SENDING, "attempts": F("attempts") + 1, "updated_at": now}
    if isinstance(first, list):
        return _claim_listed(first, now=now, limit=limit, claim=claim)
    if first is None:
        return _claimed_with([], now=now, limit=limit, claim=claim)
    # One statement, no transaction: the common no-op is one round trip.
    if not Message.objects.filter(_due(now), pk=first,
                                  status=Message.Status.QUEUED).update(**claim):
        return []
    try:
        return _claimed_with([first], now=now, limit=limit, claim=claim)
    except BaseException:
        claim_given_back(first, now=now)
        raise


def claim_given_back(message_id: str, *, now: datetime) -> None:
    """Put the message `message_id`, claimed at `now` by this worker but not to be sent by it
    (reading it after the claim failed), back from `sending` to `queued`, its attempts as
    before: the sweeper's pass over queued messages sends it within a few minutes, where one
    left `sending` waited for STUCK_AFTER_SECONDS and the sweeper's check of its provider calls.
    Inside a caller's transaction nothing is done (its rollback takes the claim back). Outside
    one, a connection the failure left unusable is closed first (the next statement opens
    another); when it cannot be given back (the database still unreachable) that is logged and
    the message is left to the sweeper as before."""
    if connection.in_atomic_block:
        return
    try:
        connection.close_if_unusable_or_obsolete()
        Message.objects.filter(pk=message_id, status=Message.Status.SENDING,
                               updated_at=now).update(status=Message.Status.QUEUED,
                                                      attempts=F("attempts") - 1)
    except DatabaseError:
        logger.warning("Message %s stays sending until the sweeper queues it again: its claim "
                       "could not be given back", message_id, exc_info=True)


def _claimed_with(ids: list[str], *, now: datetime, limit: int, claim: dict) -> list[Message]:
    """claim_batch after its `first` is claimed (`ids`, that one or none): it, and other due
    queued messages claimed up to `limit` in all, with their relations."""
    first = ids[0] if ids else None
    if limit <= len(ids):
        return with_relations(locked(Message.objects.filter(pk__in=ids)))
    with transaction.atomic():
        # Our own message (claimed above) and the others, locked in one query.
        rows = (Message.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(Q(pk__in=ids) | Q(_due(now), status=Message.Status.QUEUED))
                .order_by("-status"))  # "sending" (ours, claimed above) before "queued"
        messages = locked(rows, limit)
        if first is not None and not any(str(m.pk) == str(first) for m in messages):
            messages = locked(Message.objects.filter(pk=first)) + messages[: limit - 1]
        messages = with_relations(messages)
        others = [m.pk for m in messages if m.status == Message.Status.QUEUED]
        if others:
            Message.objects.filter(pk__in=others, status=Message.Status.QUEUED).update(**claim)
        for message in messages:
            if message.status == Message.Status.QUEUED:
                message.status = Message.Status.SENDING
                message.attempts += 1
        return messages


def _claim_listed(listed: list[str], *, now: datetime, limit: int, claim: dict) -> list[Message]:
    """claim_batch for a list of ids: those of them that are due, queued and not locked, then
    other due ones, up to `limit` (at least all of the list's); [] when none of the list's."""
    with transaction.atomic():
        rows = (Message.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(_due(now), status=Message.Status.QUEUED))
        if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
            messages = listed_claimed(listed, now=now)  # claimed, with their recipients
            if messages:
                messages = with_relations(messages, ("tenant", "workflow", "step"))
            if not messages or len(messages) >= limit:
                return messages
            others = locked(rows.exclude(pk__in=[m.pk for m in messages]), limit - len(messages))
            others = with_relations(others)
        else:
            others = locked(rows.filter(pk__in=listed))
            if not others:
                return []
            if len(others) < limit:
                others += locked(rows.exclude(pk__in=[m.pk for m in others]),
                                 limit - len(others))
            messages, others = [], with_relations(others)
        if others:
            Message.objects.filter(pk__in=[m.pk for m in others]).update(**claim)
        for message in others:
            message.status = Message.Status.SENDING
            message.attempts += 1
        return messages + others


def listed_claimed(listed: list[str], *, now: datetime) -> list[Message]:
    """PostgreSQL: claim the messages of `listed` that are due, queued and not locked by another
    transaction (SKIP LOCKED) in one statement, `UPDATE … RETURNING` them with their run's
    `created_at` (as `locked` reads it) and their recipient (as `with_relations` loads it),
    newest first (Message's ordering, as the query set read them); run inside a transaction.

    What it replaces, in the same transaction: a SELECT … FOR UPDATE SKIP LOCKED of the listed
    messages, the UPDATE of their status, attempts and `updated_at` by a second list of their
    ids, and the recipients' read by a third (each list of up to 100 values quoted into the text
    in Python, and each query set compiled again per batch): ~10 ms of CPU of a batch of 100.
    Same rows locked and written, same values on the instances (their `updated_at` is now the
    claim's, as in the row). A message whose recipient or workflow is gone (deleted meanwhile
    with the message, which CASCADE and PROTECT make impossible while it is locked) is neither
    claimed nor returned, as the join left it out before."""
    sql = _statements.get(DEFAULT_DB_ALIAS)
    if sql is None:
        sql = _statements[DEFAULT_DB_ALIAS] = _listed_claim_sql(DEFAULT_DB_ALIAS)
    pk = Message._meta.pk
    params = [[pk.to_python(value) for value in listed], now,
              Message.Status.SENDING.value, Message.Status.QUEUED.value]
    with numbered_cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    message_of, recipient_of = instance_reader(Message), instance_reader(Recipient)
    width = len(Message._meta.concrete_fields)
    messages = []
    recipient = Message._meta.get_field("recipient")
    for row in rows:
        message = message_of(row[:width])
        message.run_created_at = row[width]
        recipient.set_cached_value(message, recipient_of(row[width + 1:]))
        messages.append(message)
    messages.sort(key=lambda m: m.created_at, reverse=True)
    return messages


_statements: dict[str, str] = {}  # database alias → listed_claimed's statement


def _listed_claim_sql(using: str) -> str:
    """listed_claimed's statement (numbered_cursor's placeholders): $1 the ids, $2 now,
    $3 `sending`, $4 `queued`."""
    quote = connections[using].ops.quote_name
    message, run = quote(Message._meta.db_table), quote(Run._meta.db_table)
    recipient, workflow = quote(Recipient._meta.db_table), quote(Workflow._meta.db_table)
    return (
        f"UPDATE {message} AS m SET status = $3, attempts = m.attempts + 1, updated_at = $2 "
        f"FROM (SELECT id FROM {message} WHERE id = ANY($1) AND status = $4 "
        f"AND (next_attempt_at IS NULL OR next_attempt_at <= $2) FOR UPDATE SKIP LOCKED) AS c, "
        f"{run} AS run, {recipient} AS r, {workflow} AS w "
        f"WHERE m.id = c.id AND run.id = m.run_id AND r.id = m.recipient_id "
        f"AND w.id = m.workflow_id "
        f"RETURNING {model_columns(Message, 'm', using)}, run.created_at, "
        f"{model_columns(Recipient, 'r', using)}")
