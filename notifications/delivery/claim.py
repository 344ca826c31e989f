"""Claiming the messages one delivery pass sends: queued → sending, by one worker only.

A claim is an UPDATE of the messages' status (and attempts) committed before any provider call:
a message another worker claimed is not sent twice, and one whose worker died while it was
`sending` is the sweeper's (tasks._sweep_sending, recovery.py).
"""

from datetime import datetime

from django.db import transaction
from django.db.models import F, Q

from ..models import Message

MESSAGE_RELATIONS = ("tenant", "workflow", "recipient", "step")


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


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
        return list(Message.objects.select_related(*MESSAGE_RELATIONS).filter(pk__in=ids))
    with transaction.atomic():
        # Our own message (claimed above) and the others, rows and relations in one query.
        rows = (Message.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related(*MESSAGE_RELATIONS)
                .filter(Q(pk__in=ids) | Q(_due(now), status=Message.Status.QUEUED))
                .order_by("-status"))  # "sending" (ours, claimed above) before "queued"
        messages = list(rows[:limit])
        if first is not None and not any(str(m.pk) == str(first) for m in messages):
            messages = list(Message.objects.select_related(*MESSAGE_RELATIONS).filter(
                pk=first)) + messages[: limit - 1]
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
                .select_related(*MESSAGE_RELATIONS).filter(_due(now), status=Message.Status.QUEUED))
        messages = list(rows.filter(pk__in=listed))
        if not messages:
            return []
        if len(messages) < limit:
            messages += rows.exclude(pk__in=[m.pk for m in messages])[:limit - len(messages)]
        Message.objects.filter(pk__in=[m.pk for m in messages]).update(**claim)
        for message in messages:
            message.status = Message.Status.SENDING
            message.attempts += 1
        return messages
