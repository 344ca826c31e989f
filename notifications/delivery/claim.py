"""Claiming the messages one delivery pass sends: queued → sending, by one worker only.

A claim is an UPDATE of the messages' status (and attempts) committed before any provider call:
a message another worker claimed is not sent twice, and one whose worker died while it was
`sending` is the sweeper's (tasks._sweep_sending, recovery.py).
"""

from datetime import datetime

from django.db import transaction
from django.db.models import F, Q, QuerySet

from ..models import Message, Recipient, Step, Tenant, Workflow

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


def with_relations(messages: list[Message]) -> list[Message]:
    """`messages` with their tenant, workflow, recipient and step loaded (MESSAGE_RELATIONS):
    one query per relation for the distinct rows. A batch's messages share few tenants,
    workflows and steps; joined (select_related), each message built its own copies and
    decoded their JSON columns again. A message whose recipient or workflow is gone (deleted
    meanwhile, and the message with it) is left out, as the join left it out; one whose tenant
    or step is gone is read without it, as the join read it (SET_NULL)."""
    gone = set()
    for name, model in _RELATED.items():
        field = Message._meta.get_field(name)
        ids = {getattr(m, field.attname) for m in messages} - {None}
        found = model._base_manager.in_bulk(ids) if ids else {}
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
    serializes writers (IMMEDIATE transactions)."""
    claim = {"status": Message.Status.SENDING, "attempts": F("attempts") + 1, "updated_at": now}
    if isinstance(first, list):
        return _claim_listed(first, now=now, limit=limit, claim=claim)
    ids = []
    if first is not None:  # one statement, no transaction: the common no-op is one round trip
        if not Message.objects.filter(_due(now), pk=first,
                                      status=Message.Status.QUEUED).update(**claim):
            return []
        ids.append(first)
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
        messages = locked(rows.filter(pk__in=listed))
        if not messages:
            return []
        if len(messages) < limit:
            messages += locked(rows.exclude(pk__in=[m.pk for m in messages]),
                               limit - len(messages))
        messages = with_relations(messages)
        Message.objects.filter(pk__in=[m.pk for m in messages]).update(**claim)
        for message in messages:
            message.status = Message.Status.SENDING
            message.attempts += 1
        return messages
