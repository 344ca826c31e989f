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
sends the message again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone

from analytics.rollups import Fact, facts_record, message_fact
from events.outbox import MESSAGE_STATUS_EVENTS, events_record, message_event
from preferences.mail import unsubscribe_headers

from ..channels import CHANNEL_DATA_CHANNELS
from ..models import Channel, ChannelData, DeliveryAttempt, Message, MessageEvent, Run, StepLog
from ..providers.base import (
    OutboundMessage,
    PermanentError,
    ProviderError,
    SendResult,
    TransientError,
)
from ..providers.breaker import breaker_allows, breaker_record_failure, breaker_record_success
from ..providers.services import channel_data_deactivate
from ..queue import enqueue_at, enqueue_many
from .claim import MESSAGE_RELATIONS, _due, claim_batch
from .fanout import (
    device_entries,
    forget_devices,
    merge_device_sets,
    split_device_sets,
    unsent_sets_error,
)
from .gate import NOT_HANDED_OVER, CommitGate
from .pool import Candidate, ProviderPool, event_loop
from .status import message_events_replay

logger = logging.getLogger(__name__)



def backoff_seconds(attempt: int) -> float:
    """Exponential backoff, capped, with "equal jitter": between half and all of the step."""
    conf = settings.CLARION
    ceiling = min(conf["DELIVERY_BACKOFF_MAX_SECONDS"],
                  conf["DELIVERY_BACKOFF_SECONDS"] * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def email_headers(message: Message) -> dict[str, str]:
    """Extra headers of an email message: RFC 8058 one-click unsubscribe for non-critical ones."""
    return unsubscribe_headers(message)


# --- One message's pass -------------------------------------------------------------------------

@dataclass
class Delivery:
    message: Message
    candidates: list[Candidate]
    channel_data: list[ChannelData] = field(default_factory=list)
    transient: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    excluded: set[str] = field(default_factory=set)
    last_error: str = ""
    last_provider: str = ""
    tried: list[str] = field(default_factory=list)
    # The outcome: ("sent", key, provider message id) | ("retry", key, at) | ("wait", "", at)
    # | ("failed", key, "")
    outcome: tuple | None = None
    cost: tuple | None = None  # (Decimal, currency) of the send that succeeded, if priced
    # A push message's device set (fanout.py): the kind of its ChannelData row ("push" for the
    # generic one); blank for a message delivered whole. Each set has its own Delivery.
    target: str = ""
    devices: list = field(default_factory=list)  # push: this pass's result per device
    sets: dict = field(default_factory=dict)  # push, merged: {target: its outcome's state}


@dataclass
class Call:
    delivery: Delivery
    candidate: Candidate
    outbound: OutboundMessage
    channel_data_id: int | None
    attempt: DeliveryAttempt | None = None
    result: SendResult | None = None
    error: ProviderError | None = None
    duration_ms: int = 0
    gate: CommitGate | None = None

    @property
    def late(self) -> bool:
        """Its attempt is written just before the message is handed over, not before the call
        (`Provider.commits_late`), and not yet written."""
        return self.candidate.provider.commits_late and self.attempt is None


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
    message = Message.objects.select_related(*MESSAGE_RELATIONS).get(pk=message_id)
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


def call_seconds(provider) -> float:
    """The longest one call to `provider` may take, in seconds: twice its timeout (httpx's and
    smtplib's timeouts bound each phase — connecting, then each wait for the answer — not the
    whole call); its `timeout` option, else 10 (HTTP kinds) or 20 (email kinds, as
    providers/email.py connects)."""
    timeout = getattr(provider, "timeout", None)
    if not isinstance(timeout, int | float):
        options = getattr(provider, "options", None) or {}
        timeout = options.get("timeout") or (20 if provider.channel == Channel.EMAIL else 10)
    return 2 * float(timeout)


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
            update_rows(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)  # failover rounds
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


DEFERRED = ("deferred", "", None)

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


def _start(calls: list[Call], unwritten: list[DeliveryAttempt], *,
           handing_over: bool = False) -> None:
    """The ledger rows of the calls about to go out, committed before their requests leave
    (one INSERT), with the results of calls completed since (`unwritten`, emptied): a worker
    killed now leaves `started` only the attempts whose requests may be on the wire.

    A call to a kind that `commits_late` (SMTP) is left out: its row is written by its
    `before_commit` (`_hand_over`, or `gate.CommitGate` in a concurrent batch), just before the
    step that hands the message over (the end of its data), so a worker killed during the
    connection, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, DATA or the data leaves no attempt
    started and the sweeper sends the message again. `handing_over`: write them too (their
    message is about to be handed over)."""
    calls = calls if handing_over else [call for call in calls if not call.late]
    update_rows(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
    unwritten.clear()
    if not calls:
        return
    started_at = timezone.now()
    attempts = [_new_attempt(call, started_at) for call in calls]
    if handing_over:
        with transaction.atomic():
            commit_without_flush()
            DeliveryAttempt.objects.bulk_create(attempts)
    else:
        DeliveryAttempt.objects.bulk_create(attempts)
    for call, attempt in zip(calls, attempts, strict=True):
        call.attempt = attempt


def commit_without_flush() -> None:
    """Let the current transaction's COMMIT answer without waiting for its WAL record to be
    flushed to disk (PostgreSQL's `SET LOCAL synchronous_commit = off`, this transaction only;
    nothing elsewhere): used for the attempts written at a `commits_late` call's point of no
    return, whose end of data leaves once that COMMIT answers.

    Why: a worker killed after its COMMIT reached PostgreSQL and before the end left leaves a
    committed attempt and an email the server dropped (lost, failed as of unknown outcome). That
    window is the COMMIT's round trip, and with the flush it is the disk's fsync (milliseconds,
    more under load); without it, a loopback round trip (tens of microseconds). The commit is
    still atomic and in PostgreSQL's memory, so a dead worker cannot undo it. What is given up
    (PostgreSQL's "Asynchronous Commit" chapter): a PostgreSQL or operating-system crash before
    the record reaches disk, at most 3 x wal_writer_delay later (600 ms by default) and in
    practice until any later synchronous commit on the server (the batch's outcome transaction
    is one) flushes it, loses the attempt; the message, still `sending` without one, is then
    sent again by the sweeper, possibly a second email. Nothing on SQLite."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def _new_attempt(call: Call, started_at: datetime) -> DeliveryAttempt:
    message = call.delivery.message
    return DeliveryAttempt(message=message, provider=call.candidate.key,
                           provider_kind=call.candidate.provider.kind,
                           send_number=message.send_number, started_at=started_at)


def _record_ended(calls: list[Call], now: datetime, unwritten: list[DeliveryAttempt]) -> None:
    """`_record` the calls that ended; a `commits_late` call that ended before handing its
    message over (refused at RCPT TO, say) has no row yet: it is written with its result at
    once (one INSERT), never `started`, since nothing was handed over."""
    fresh = [call for call in calls if call.attempt is None]
    for call in fresh:
        call.attempt = _new_attempt(
            call, timezone.now() - timedelta(milliseconds=call.duration_ms))
    _record(calls, now, unwritten)
    if fresh:
        unwritten[:] = [attempt for attempt in unwritten if attempt.pk is not None]
        DeliveryAttempt.objects.bulk_create([call.attempt for call in fresh])


def _perform(calls: list[Call], *, now: datetime, deadline: float = math.inf,
             batch_start: float = 0.0, unwritten: list[DeliveryAttempt]) -> list[Call]:
    """Make one round of calls, at most DELIVERY_CONCURRENCY on the wire at once (in this
    thread for a lone call, else on this thread's event loop): each group of calls is started
    (`_start`) just before its requests leave, and each completed call recorded (`_record`) as
    it ends, its attempt's result added to `unwritten` (written with the next group's start, or
    at once when no call is left to start). A call that could not end before
    `deadline` is not made (its `attempt` stays None); `batch_start` is when the batch began
    (`time.monotonic()`). Returns the calls made."""
    limit = max(1, settings.CLARION["DELIVERY_CONCURRENCY"])
    waiting, made = list(calls), []

    def take(room: int) -> list[Call]:
        """Up to `room` waiting calls that still fit before the deadline; the rest never will.
        A call longer than the whole batch's time (a provider's timeout set above a third of
        the task's) fits only while the batch is fresh, lest it never be made."""
        clock = time.monotonic()
        group = []
        while waiting and len(group) < room:
            call = waiting.pop(0)
            seconds = min(call_seconds(call.candidate.provider), max(deadline - batch_start, 0))
            if clock + seconds <= deadline:
                group.append(call)
        return group

    if len(calls) == 1:
        group = take(1)
        if group:
            _start(group, unwritten)
            late = group[0].late
            _perform_one(group[0], before_commit=(
                lambda hand_over: _hand_over(group, unwritten, hand_over)) if late else None)
            _record_ended(group, now, unwritten)
        return group
    loop, running, gates = event_loop(), {}, {}
    while waiting or running:
        group = take(limit - len(running)) if len(running) < limit else []
        if group:
            _start(group, unwritten)
            made += group
            for call in group:
                if call.late:
                    call.gate = CommitGate(loop, call_seconds(call.candidate.provider))
                    gates[call.gate.ready] = call
                running[loop.create_task(_perform_async(call))] = call
        elif unwritten:
            # Nothing left to start while the last calls run: record the ended ones now, or a
            # worker killed meanwhile would leave them `started`, of unknown outcome (an email
            # the server accepted then fails; the sweeper reads a success here instead).
            update_rows(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
            unwritten.clear()
        if not running:
            break
        done, _ = loop.run_until_complete(
            asyncio.wait([*running, *gates], return_when=asyncio.FIRST_COMPLETED))
        # Their threads wait (SMTP: the data sent but its end) until their attempts are
        # written; then this thread takes each one's last step (SMTP: 5 bytes, the socket
        # writable), nothing else between the commit and them.
        handing = [gates.pop(future) for future in done if future in gates]
        handing = [call for call in handing if call.gate.take()]
        if handing:
            try:
                _start(handing, unwritten, handing_over=True)
            except BaseException:
                for call in handing:
                    call.gate.refuse()
                raise
            for call in handing:
                call.gate.pass_on()
        ended = [running.pop(task) for task in done if task in running]
        for call in ended:
            if call.gate is not None and gates.pop(call.gate.ready, None) is not None:
                call.gate.ready.cancel()
        _record_ended(ended, now, unwritten)
    return made


def _hand_over(calls: list[Call], unwritten: list[DeliveryAttempt], hand_over) -> None:
    """The `before_commit` of a `commits_late` call made in this thread: write its attempt,
    then take the step that hands its message over (`hand_over`), nothing between them. An
    attempt that cannot be written (its INSERT or COMMIT fails) raises TransientError, as
    `gate.CommitGate.refuse` does in a concurrent batch: nothing was handed over (the backend
    closes the connection, and the server drops the unended DATA), so the message is retried."""
    try:
        _start(calls, unwritten, handing_over=True)
    except DatabaseError as exc:
        raise TransientError(NOT_HANDED_OVER) from exc
    hand_over()


def _perform_one(call: Call, *, before_commit=None) -> None:
    """Make `call` in this thread; `before_commit` is passed to a `commits_late` kind's send."""
    started = time.monotonic()
    kwargs = {"before_commit": before_commit} if before_commit is not None else {}
    try:
        call.result = call.candidate.provider.send(call.outbound, **kwargs)
    except ProviderError as exc:
        call.error = exc
    except Exception as exc:  # a kind's bug must not leave the message in `sending`
        logger.exception("provider %s raised", call.candidate.key)
        call.error = PermanentError(f"{type(exc).__name__}: {exc}")
    call.duration_ms = int((time.monotonic() - started) * 1000)


async def _perform_async(call: Call) -> None:
    started = time.monotonic()
    try:
        kwargs = {"before_commit": call.gate} if call.gate is not None else {}
        call.result = await call.candidate.provider.asend(call.outbound, **kwargs)
    except ProviderError as exc:
        call.error = exc
    except Exception as exc:
        logger.exception("provider %s raised", call.candidate.key)
        call.error = PermanentError(f"{type(exc).__name__}: {exc}")
    call.duration_ms = int((time.monotonic() - started) * 1000)


ATTEMPT_RESULT_FIELDS = ["duration_ms", "outcome", "error", "request", "response", "status_code",
                         "estimated_cost", "cost_currency"]


def _record(calls: list[Call], now: datetime, unwritten: list[DeliveryAttempt]) -> None:
    """Complete the ledger rows (in memory, added to `unwritten`: written with the next
    group's start or with the messages' outcomes) and decide each message's next step."""
    limit = settings.CLARION["DELIVERY_MAX_ATTEMPTS"]
    for call in calls:
        d, candidate, attempt = call.delivery, call.candidate, call.attempt
        unwritten.append(attempt)
        exchange = (call.result or call.error).exchange
        attempt.duration_ms = call.duration_ms
        if exchange is not None:
            attempt.request, attempt.response = exchange.request, exchange.response
            attempt.status_code = exchange.status_code
        d.tried.append(candidate.key)
        dead = []
        if call.result is not None:
            attempt.outcome = DeliveryAttempt.Outcome.SUCCEEDED
            attempt.response = {**attempt.response,
                                "message_id": call.result.provider_message_id}
            if candidate.config is not None:
                breaker_record_success(candidate.config)
            d.outcome = ("sent", candidate.key, call.result.provider_message_id)
            d.cost = candidate.provider.estimate_cost(call.outbound)
            if d.cost is not None:
                attempt.estimated_cost, attempt.cost_currency = d.cost
            dead = call.result.dead_addresses
        else:
            error = call.error
            attempt.error = str(error)[:2000]
            attempt.status_code = attempt.status_code or error.status_code
            d.last_error, d.last_provider = str(error), candidate.key
            dead = error.dead_addresses
            if error.transient:
                attempt.outcome = DeliveryAttempt.Outcome.TRANSIENT_ERROR
                if candidate.config is not None:
                    breaker_record_failure(candidate.config, now=now, error=str(error))
                d.transient[candidate.key] += 1
                count = d.transient[candidate.key]
                if count < limit:
                    delay = max(backoff_seconds(count), error.retry_after or 0)
                    d.outcome = ("retry", candidate.key, now + timedelta(seconds=delay))
                else:
                    d.excluded.add(candidate.key)  # exhausted: fail over
            else:
                attempt.outcome = DeliveryAttempt.Outcome.PERMANENT_ERROR
                d.excluded.add(candidate.key)  # fail over
        devices = device_entries(candidate, exchange)
        d.devices += devices
        if dead and call.channel_data_id is not None:
            why = "; ".join(dict.fromkeys(e["error"] for e in devices
                                          if e["result"] == "deactivated" and e.get("error")))
            channel_data_deactivate(channel_data_id=call.channel_data_id, addresses=dead,
                                    reason=f"{candidate.key}: "
                                           f"{why or d.last_error or 'unregistered'}")
            forget_devices(d, call.channel_data_id, dead)


def update_rows(model, objs: list, fields: list[str], *, status: str | None = None) -> None:
    """UPDATE each object's `fields` by primary key in one round trip (executemany, which
    psycopg pipelines): bulk_update's CASE expressions cost more Python than the calls.
    `status`: only rows still in that status are written."""
    if not objs:
        return
    opts = model._meta
    columns = [opts.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(opts.db_table)} SET "
           + ", ".join(f"{quote(c.column)} = %s" for c in columns)
           + f" WHERE {quote(opts.pk.column)} = %s")
    guard = [] if status is None else [status]
    if status is not None:
        sql += f" AND {quote(opts.get_field('status').column)} = %s"
    params = [[c.get_db_prep_save(getattr(obj, c.attname), connection) for c in columns]
              + [opts.pk.get_db_prep_value(obj.pk, connection)] + guard for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


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
        logs.append(StepLog(run_id=message.run_id, step_ref=message.step_ref, event=event,
                            detail=detail))
    with transaction.atomic():
        update_rows(DeliveryAttempt, list(attempts), ATTEMPT_RESULT_FIELDS)
        sends = {m.pk: m.send_number for m in changed}
        owned = {pk for pk, send_number in Message.objects.select_for_update()
                 .filter(pk__in=list(sends), status=Message.Status.SENDING)
                 .values_list("pk", "send_number") if send_number == sends[pk]}
        if len(owned) < len(changed):
            logger.warning("messages %s left `sending` while being delivered; not overwritten",
                           [str(m.pk) for m in changed if m.pk not in owned])
            logs = [log for log, m in zip(logs, changed, strict=True) if m.pk in owned]
            changed = [m for m in changed if m.pk in owned]
        update_rows(Message, changed, MESSAGE_OUTCOME_FIELDS, status=Message.Status.SENDING)
        StepLog.objects.bulk_create(logs)
        events_record([message_event(MESSAGE_STATUS_EVENTS[m.status], m) for m in changed
                       if m.status in (Message.Status.SENT, Message.Status.FAILED)])
        facts_record(_facts(deliveries, changed, now))
        _replay_early_events([m.pk for m in changed if m.status == Message.Status.SENT])
        for message, at in schedules:
            if message.pk in owned:
                enqueue_at("notifications.tasks.deliver_message", str(message.id), at=at,
                           name=f"msg:{message.id}#{message.send_number}.{message.attempts}")
        enqueue_many("notifications.tasks.deliver_message",
                     [(str(m.id),) for m in deferred if m.pk in owned])


def _facts(deliveries: list[Delivery], changed: list[Message], now: datetime) -> list[Fact]:
    """The analytics of a batch's outcomes: sent (with the trigger-to-sent latency and the
    estimated cost) and failed messages, and each provider's calls and errors."""
    written = {m.pk for m in changed}
    started = dict(Run.objects.filter(pk__in={m.run_id for m in changed})
                   .values_list("id", "created_at"))
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
    early = set(MessageEvent.objects.filter(message_id__in=sent_ids)
                .values_list("message_id", flat=True).distinct())
    for message_id in early:
        message_events_replay(message_id=message_id)
