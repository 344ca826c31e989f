"""One round of provider calls in a delivery pass, and the attempt rows written around them.

A `Delivery` is one message's pass (or one push device set's), a `Call` one provider call of it.
`_perform` makes a round of calls (in this thread for a lone call, else concurrently on the
worker's event loop); `_start` writes each call's DeliveryAttempt before its request leaves (an
SMTP call's just before its point of no return, the end of its data: `_hand_over`,
`gate.CommitGate`); `_record` fills in each attempt's result and decides the message's next step
(sent, retry with backoff, fail over).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from clarion.db import instance_maker, rows_create, rows_update

from ..models import Channel, ChannelData, DeliveryAttempt, Message
from ..providers.base import (
    OutboundMessage,
    PermanentError,
    ProviderError,
    SendResult,
    TransientError,
)
from ..providers.breaker import breaker_record_failure, breaker_record_success
from ..providers.services import channel_data_deactivate
from .fanout import device_entries, forget_devices
from .gate import NOT_HANDED_OVER, CommitGate
from .keeper_client import keeper_hold, keeper_release, keeper_start
from .pool import Candidate, event_loop

logger = logging.getLogger(__name__)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff, capped, with "equal jitter": between half and all of the step."""
    conf = settings.CLARION
    ceiling = min(conf["DELIVERY_BACKOFF_MAX_SECONDS"],
                  conf["DELIVERY_BACKOFF_SECONDS"] * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)



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



# A message whose call could not start before the batch's deadline: queued again at once.
DEFERRED = ("deferred", "", None)


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
    hand_over: Callable[[], None] | None = None  # a `commits_late` call's, once it waits on it

    @property
    def late(self) -> bool:
        """Its attempt is written just before the message is handed over, not before the call
        (`Provider.commits_late`), and not yet written."""
        return self.candidate.provider.commits_late and self.attempt is None



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


def _start(calls: list[Call], unwritten: list[DeliveryAttempt], *,
           handing_over: bool = False) -> None:
    """The ledger rows of the calls about to go out, committed before their requests leave
    (one INSERT), with the results of calls completed since (`unwritten`, emptied once
    written; one UPDATE), in one transaction: a worker killed now leaves `started` only the
    attempts whose requests may be on the wire. When `handing_over`, the results are committed
    just before the attempts' transaction instead, never without the WAL flush as it is.

    A call to a kind that `commits_late` (SMTP) is left out: its row is written by its
    `before_commit` (`_hand_over`, or `gate.CommitGate` in a concurrent batch), just before the
    step that hands the message over (the end of its data), so a worker killed during the
    connection, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO, DATA or the data leaves no attempt
    started and the sweeper sends the message again. `handing_over`: write them too (their
    message is about to be handed over)."""
    if not handing_over and any(call.late for call in calls):
        keeper_start()  # its start overlaps these calls' exchanges, not their hand-over
    calls = calls if handing_over else [call for call in calls if not call.late]
    if not calls:
        rows_update(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
        unwritten.clear()
        return
    started_at = timezone.now()
    attempts = [_new_attempt(call, started_at) for call in calls]
    if handing_over:
        # The results first, committed with the server's setting (one statement, none when no
        # call ended): not in the transaction below, which a crash of PostgreSQL may lose. A
        # call that ended is known; lost, its attempt would stay `started` and the sweeper would
        # fail its message as of unknown outcome, one sent or one a retry would have sent.
        rows_update(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
        unwritten.clear()
        held = []
        try:
            with transaction.atomic():
                commit_without_flush()
                rows_create(attempts)
                # The SMTP keeper holds the connections across the COMMIT (keeper.py).
                held = keeper_hold([(attempt.pk, call.hand_over)
                                    for call, attempt in zip(calls, attempts, strict=True)])
        except BaseException:
            keeper_release(held)
            raise
    else:
        with transaction.atomic():
            rows_update(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
            rows_create(attempts)
    unwritten.clear()
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
    sent again by the sweeper, possibly a second email. Nothing on SQLite. The SMTP keeper
    (keeper.py) closes the window itself where it runs; this keeps it short where it does not."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def _new_attempt(call: Call, started_at: datetime) -> DeliveryAttempt:
    """The call's ledger row, made as DeliveryAttempt(...) makes it (instance_maker: ~9 → ~3 µs,
    one a call)."""
    message = call.delivery.message
    return instance_maker(DeliveryAttempt)(
        {"message": message}, provider=call.candidate.key,
        provider_kind=call.candidate.provider.kind, send_number=message.send_number,
        started_at=started_at)


def _record_ended(calls: list[Call], now: datetime, unwritten: list[DeliveryAttempt]) -> None:
    """`_record` the calls that ended; a `commits_late` call that ended before handing its
    message over (refused at RCPT TO, say) has no row yet: it is written with its result at
    once (one INSERT), never `started`, since nothing was handed over."""
    keeper_release([call.attempt.pk for call in calls if call.attempt is not None],
                   accepted=[call.attempt.pk for call in calls
                             if call.attempt is not None and call.result is not None])
    fresh = [call for call in calls if call.attempt is None]
    for call in fresh:
        call.attempt = _new_attempt(
            call, timezone.now() - timedelta(milliseconds=call.duration_ms))
    _record(calls, now, unwritten)
    if fresh:
        unwritten[:] = [attempt for attempt in unwritten if attempt.pk is not None]
        rows_create([call.attempt for call in fresh])


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
            rows_update(DeliveryAttempt, unwritten, ATTEMPT_RESULT_FIELDS)
            unwritten.clear()
        if not running:
            break
        done, _ = loop.run_until_complete(
            asyncio.wait([*running, *gates], return_when=asyncio.FIRST_COMPLETED))
        # The calls that ended first: their results are written just before the attempts
        # handed over below (`_start`), or at the loop's next turn if none is.
        ended = [running.pop(task) for task in done if task in running]
        for call in ended:
            if call.gate is not None and gates.pop(call.gate.ready, None) is not None:
                call.gate.ready.cancel()
        _record_ended(ended, now, unwritten)
        # Their threads wait (SMTP: the data sent but its end) until their attempts are
        # written; then this thread takes each one's last step (SMTP: 5 bytes, the socket
        # writable), nothing else between the commit and them.
        handing = [gates.pop(future) for future in done if future in gates]
        handing = [call for call in handing if call.gate.take()]
        for call in handing:
            call.hand_over = call.gate.hand_over
        if handing:
            try:
                _start(handing, unwritten, handing_over=True)
            except BaseException:
                for call in handing:
                    call.gate.refuse()
                raise
            for call in handing:
                call.gate.pass_on()
    return made


def _hand_over(calls: list[Call], unwritten: list[DeliveryAttempt], hand_over) -> None:
    """The `before_commit` of a `commits_late` call made in this thread: write its attempt,
    then take the step that hands its message over (`hand_over`), nothing between them. An
    attempt that cannot be written (its INSERT or COMMIT fails) raises TransientError, as
    `gate.CommitGate.refuse` does in a concurrent batch: nothing was handed over (the backend
    closes the connection, and the server drops the unended DATA), so the message is retried."""
    for call in calls:
        call.hand_over = hand_over
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
