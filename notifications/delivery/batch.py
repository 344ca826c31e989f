"""Delivering queued Messages through their channel's providers, with a ledger of attempts.

For each message: its channel's active providers in order (the tenant's own first, then the
global ones, each by priority), skipping those whose circuit is open (providers/breaker.py) and
those this message has already exhausted. One provider call = one DeliveryAttempt, written before
the call and completed after it. Then:

- success → Message `sent`, with the provider's message id;
- TransientError → retry the same provider later, with exponential backoff and jitter (or the
  provider's `Retry-After`, if longer), up to DELIVERY_MAX_ATTEMPTS calls to that provider;
- PermanentError, or retries exhausted → fail over to the next provider at once;
- no provider left → Message `failed` with the last error; every remaining provider's circuit
  open → wait, queued, until the first one's cool-down ends.

A Message is claimed (queued → sending) by one worker only. `deliver_batch` claims up to
DELIVERY_BATCH_SIZE due messages and makes their provider calls concurrently (asyncio and
httpx.AsyncClient; SMTP and anymail in threads), with the same rows written before and after.
A worker killed during a call leaves a `started` attempt: see `message_mark_outcome_unknown`.
For SMTP the attempt is written once the message's data is sent but its end ("<CRLF>.<CRLF>"),
and the thread that wrote it sends that end as soon as its COMMIT answers (`Provider.commits_late`;
that transaction does not wait for the WAL's flush: `commit_without_flush`): a worker killed
earlier in the exchange leaves none (the server dropped the unfinished DATA), and the sweeper
sends the message again. On PostgreSQL the worker's SMTP keeper (keeper.py) holds a copy of each
SMTP socket across that COMMIT, so one killed after it still gets its end sent.

Here: the entry points and the pass (claim, providers per message, rounds of calls until each
message has an outcome); the calls and their attempt rows are calls.py's, the outcomes'
transaction outcomes.py's.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from clarion.db import rows_update
from preferences.mail import unsubscribe_headers

from ..channels import CHANNEL_DATA_CHANNELS
from ..models import Channel, ChannelData, DeliveryAttempt, Message
from ..providers.base import OutboundMessage
from ..providers.breaker import breaker_allows
from .calls import ATTEMPT_RESULT_FIELDS, DEFERRED, Call, Delivery, _perform
from .claim import MESSAGE_RELATIONS, _due, claim_batch, claim_given_back
from .fanout import split_device_sets
from .outcomes import _finish
from .pool import ProviderPool

__all__ = ["claim_batch", "deliver", "deliver_batch", "deliver_claimed", "outbound_for"]


def email_headers(message: Message) -> dict[str, str]:
    """Extra headers of an email message: RFC 8058 one-click unsubscribe for non-critical ones."""
    return unsubscribe_headers(message)



def deliver(message_id: str, *, now: datetime | None = None) -> None:
    """Send one queued message. Safe to call twice: only one caller claims it."""
    deadline = batch_deadline()
    now = now or timezone.now()
    claimed = (
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED)
        .filter(_due(now))
        .update(status=Message.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
    )
    if not claimed:
        return
    try:
        message = Message.objects.select_related(*MESSAGE_RELATIONS).get(pk=message_id)
    except BaseException:
        claim_given_back(message_id, now=now)
        raise
    deliver_claimed([message], now=now, deadline=deadline)


def deliver_batch(message_id: str | list[str] | None = None, *, now: datetime | None = None,
                  size: int | None = None) -> int:
    """Claim `message_id` (or those of a list of ids still queued) and other due messages, up
    to `size` in all, and deliver them concurrently, within the task's time (see
    `batch_deadline`). Returns how many were claimed. A task whose messages other workers
    already claimed returns at once (one statement), so the other messages' own tasks cost
    next to nothing."""
    deadline = batch_deadline()
    now = now or timezone.now()
    size = size or settings.CLARION["DELIVERY_BATCH_SIZE"]
    # No per-process "already sent here" shortcut: a sent message can be queued again (a
    # carrier's late refusal fails it over), and only the claim UPDATE knows.
    messages = claim_batch(now=now, limit=size, first=message_id)
    if messages:
        deliver_claimed(messages, now=now, deadline=deadline)
    return len(messages)


def task_timeout_margin(timeout: float) -> float:
    """Seconds of a task's `timeout` kept for writing a batch's outcomes: a fifth, at least 1."""
    return max(timeout / 5, 1.0)


def batch_deadline() -> float:
    """The `time.monotonic()` by which a batch starting now must have made its last provider
    call: django-q kills a task that runs longer than Q_CLUSTER["timeout"] seconds (its calls
    then end as "outcome unknown"), so that timeout less `task_timeout_margin`. Infinity when
    no timeout is set."""
    timeout = settings.Q_CLUSTER.get("timeout")
    if not timeout:
        return math.inf
    return time.monotonic() + timeout - task_timeout_margin(timeout)

def deliver_claimed(messages: list[Message], *, now: datetime,
                    deadline: float = math.inf) -> list[Delivery]:
    """Deliver messages this worker has claimed (status `sending`), making no provider call
    that cannot end before `deadline` (a `time.monotonic()` value): a message whose call could
    not start goes back to `queued` for the next pass (see `_finish`)."""
    batch_start = time.monotonic()
    pool = ProviderPool()
    try:
        deliveries = [Delivery(m, pool.candidates(m.channel, m.tenant_id),
                               last_error=pool.problems.get((m.channel, m.tenant_id), ""))
                      for m in messages]
        _load_channel_data(deliveries)
        deliveries = split_device_sets(deliveries)
        _load_history(deliveries)
        pending, unwritten = [d for d in deliveries if d.outcome is None], []
        while pending:  # rounds: the first call of each message, then failovers
            calls = [call for d in pending if (call := _next_call(d, now)) is not None]
            if not calls:
                break
            rows_update(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)  # failover rounds
            unwritten.clear()
            made = _perform(calls, now=now, deadline=deadline, batch_start=batch_start,
                            unwritten=unwritten)
            for call in calls:
                if call.attempt is None:  # the deadline left no time to start it
                    call.delivery.outcome = DEFERRED
            pending = [call.delivery for call in made if call.delivery.outcome is None]
        _finish(deliveries, now, attempts=unwritten)
    finally:
        pool.close()
    return deliveries


def _load_history(deliveries: list[Delivery]) -> None:
    """What earlier passes of the current send of retried messages did: transient calls per
    provider, and the providers they are done with (a permanent error, or retries exhausted).
    A push device set that a provider of its own already took (an earlier pass; another set is
    being retried) is done: sent, never again. Attempts of an earlier send (before a resend,
    services.message_resend) are not read: a resend gives every provider and set a fresh
    chance."""
    retried = defaultdict(list)
    for d in deliveries:
        if d.message.attempts > 1:
            retried[d.message.pk].append(d)
    if not retried:
        return
    limit = settings.CLARION["DELIVERY_MAX_ATTEMPTS"]
    sends = {pk: parts[0].message.send_number for pk, parts in retried.items()}
    rows = DeliveryAttempt.objects.filter(message_id__in=list(retried)).values_list(
        "message_id", "send_number", "provider", "outcome", "error", "response",
        "estimated_cost", "cost_currency").order_by("started_at", "id")
    for message_id, send_number, provider, outcome, error, response, cost, currency in rows:
        if send_number != sends[message_id]:
            continue
        parts = retried[message_id]
        own = next((d for d in parts if any(c.key == provider for c in d.candidates)), None)
        if (own is not None and own.target and own.outcome is None
                and outcome == DeliveryAttempt.Outcome.SUCCEEDED):
            own.outcome = ("sent", provider, str((response or {}).get("message_id") or ""))
            own.cost = (cost, currency) if cost is not None else None
            continue
        d = own or parts[0]
        if outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR:
            d.transient[provider] += 1
            if d.transient[provider] >= limit:
                d.excluded.add(provider)
        elif outcome in (DeliveryAttempt.Outcome.PERMANENT_ERROR,
                         DeliveryAttempt.Outcome.CARRIER_REFUSED):
            d.excluded.add(provider)
        if error:
            d.last_error, d.last_provider = error, provider


def _load_channel_data(deliveries: list[Delivery]) -> None:
    wanted = [d for d in deliveries if d.message.channel in CHANNEL_DATA_CHANNELS]
    if not wanted:
        return
    rows = ChannelData.objects.filter(
        recipient_id__in={d.message.recipient_id for d in wanted},
        channel__in={d.message.channel for d in wanted})
    by_scope = defaultdict(list)
    for row in rows:
        by_scope[(row.recipient_id, row.channel)].append(row)
    for d in wanted:
        d.channel_data = by_scope[(d.message.recipient_id, d.message.channel)]


def outbound_for(message: Message, channel_data: ChannelData | None = None) -> OutboundMessage:
    tenant = message.tenant
    sender_email = tenant.sender_email if tenant is not None else ""
    return OutboundMessage(
        id=str(message.id),
        channel=message.channel,
        to=message.to,
        content=message.content or {},
        tenant_key=tenant.key if tenant is not None else "",
        sender_name=(tenant.sender_name or tenant.name) if sender_email else "",
        sender_email=sender_email,
        workflow_key=message.workflow.key,
        recipient_id=message.recipient.external_id,
        recipient_name=message.recipient.name if message.channel == Channel.EMAIL else "",
        # A channel step's own config (push ttl, WhatsApp template…); a route step's config
        # is the route's (its channels, its ttl), none of it meant for a provider.
        step_config=(message.step.config or {})
        if message.step_id and message.step.type == message.channel else {},
        channel_data=(channel_data.data or {}) if channel_data is not None else {},
        headers=email_headers(message) if message.channel == Channel.EMAIL else {},
    )


def _next_call(d: Delivery, now: datetime) -> Call | None:
    """The next provider for this message (or push device set), or None with `d.outcome`
    set."""
    open_until = []
    for candidate in d.candidates:
        if candidate.key in d.excluded:
            continue
        if candidate.config is not None and not breaker_allows(candidate.config, now=now):
            open_until.append(candidate.config.circuit_open_until)
            continue
        row = candidate.provider.channel_data_for(d.channel_data) if d.channel_data else None
        return Call(d, candidate, outbound_for(d.message, row), row.pk if row else None)
    if open_until:
        d.outcome = ("wait", "", min(open_until))
    else:
        if not d.candidates and not d.last_error:
            d.last_error = (f"No {d.target} provider is configured for the push channel "
                            f"(the recipient has {d.target} devices)." if d.target not in
                            ("", "push") else
                            f"No provider is configured for the {d.message.channel} channel.")
        d.outcome = ("failed", d.last_provider, "")
    return None
