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
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from preferences.mail import unsubscribe_headers

from .channels import CHANNEL_DATA_CHANNELS
from .models import (
    Channel,
    ChannelData,
    DeliveryAttempt,
    Message,
    MessageEvent,
    ProviderConfig,
    StepLog,
)
from .providers import registry
from .providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
)
from .providers.breaker import breaker_allows, breaker_record_failure, breaker_record_success
from .providers.email import SettingsEmail, classify_email_error
from .providers.services import channel_data_deactivate
from .providers.status import message_events_replay
from .providers.webhook import SignedWebhook, default_signing_secret
from .queue import enqueue, enqueue_at

logger = logging.getLogger(__name__)

__all__ = ["TransientError", "PermanentError", "classify_email_error", "deliver",
           "deliver_batch", "backoff_seconds", "message_mark_outcome_unknown"]

MESSAGE_RELATIONS = ("tenant", "workflow", "recipient", "step")


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff, capped, with "equal jitter": between half and all of the step."""
    conf = settings.CLARION
    ceiling = min(conf["DELIVERY_BACKOFF_MAX_SECONDS"],
                  conf["DELIVERY_BACKOFF_SECONDS"] * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def email_headers(message: Message) -> dict[str, str]:
    """Extra headers of an email message: RFC 8058 one-click unsubscribe for non-critical ones."""
    return unsubscribe_headers(message)


# --- Which providers ----------------------------------------------------------------------------

@dataclass
class Candidate:
    key: str
    provider: Provider
    config: ProviderConfig | None = None


def provider_for(config: ProviderConfig) -> Provider:
    """An instance of the config's kind with its decrypted credentials."""
    cls = registry.get(config.kind)
    return cls(key=config.key, credentials=config.credentials, options=config.options)


def default_candidates(channel: str) -> list[Candidate]:
    """Providers used when a channel has none configured: Django's email settings, and the
    webhook channel signed with CLARION_WEBHOOK_SIGNING_SECRET."""
    if channel == Channel.EMAIL:
        provider = SettingsEmail(key="settings")
        provider.key = provider.name
        return [Candidate(provider.key, provider)]
    if channel == Channel.WEBHOOK:
        provider = SignedWebhook(key="webhook",
                                 credentials={"signing_secret": default_signing_secret()})
        return [Candidate("webhook", provider)]
    return []


_local = threading.local()


def _cached_provider(config: ProviderConfig) -> Provider:
    """One instance per config (and version of it) per worker thread, so HTTP connections are
    kept alive across batches; an edited config gets a fresh instance."""
    cache = getattr(_local, "providers", None)
    if cache is None:
        cache = _local.providers = {}
    version = (config.updated_at, config.credentials_encrypted, config.kind)
    cached = cache.get(config.pk)
    if cached is not None and cached[0] == version:
        return cached[1]
    if cached is not None:
        old = cached[1]
        old.close()
        if getattr(old, "_async_clients", None):
            _event_loop().run_until_complete(old.aclose())
    provider = provider_for(config)
    cache[config.pk] = (version, provider)
    return provider


def _event_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for concurrent calls, kept between batches: async HTTP clients
    belong to the loop that opened them."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


class ProviderPool:
    """The candidates of each (channel, tenant) for one batch: one query each."""

    def __init__(self):
        self._by_scope: dict[tuple[str, int | None], list[Candidate]] = {}
        self._defaults: list[Provider] = []
        self.problems: dict[tuple[str, int | None], str] = {}

    def candidates(self, channel: str, tenant_id: int | None) -> list[Candidate]:
        scope = (channel, tenant_id)
        if scope not in self._by_scope:
            tenants = Q(tenant__isnull=True) | Q(tenant_id=tenant_id) if tenant_id \
                else Q(tenant__isnull=True)
            configs = ProviderConfig.objects.filter(tenants, channel=channel, active=True) \
                .order_by(F("tenant_id").asc(nulls_last=True), "priority", "key")
            found, configured = [], False
            for config in configs:
                configured = True
                try:
                    provider = _cached_provider(config)
                except (KeyError, ValueError) as exc:  # unknown kind, undecryptable credentials
                    logger.error("provider %s is unusable: %s", config.key, exc)
                    self.problems[scope] = f"Provider {config.key} is unusable: {exc}"
                    continue
                found.append(Candidate(config.key, provider, config))
            if not configured:  # never instead of configured providers that are unusable
                found = default_candidates(channel)
                self._defaults += [c.provider for c in found]
            self._by_scope[scope] = found
        return self._by_scope[scope]

    def close(self) -> None:
        """Close the per-batch default providers (configured ones stay cached)."""
        for provider in self._defaults:
            provider.close()
            if getattr(provider, "_async_clients", None):
                _event_loop().run_until_complete(provider.aclose())


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


def deliver(message_id: str, *, now: datetime | None = None) -> None:
    """Send one queued message. Safe to call twice: only one caller claims it."""
    now = now or timezone.now()
    claimed = (
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED)
        .filter(_due(now))
        .update(status=Message.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
    )
    if not claimed:
        return
    message = Message.objects.select_related(*MESSAGE_RELATIONS).get(pk=message_id)
    deliver_claimed([message], now=now)


def deliver_batch(message_id: str | None = None, *, now: datetime | None = None,
                  size: int | None = None) -> int:
    """Claim `message_id` and up to `size` - 1 other due messages, and deliver them
    concurrently. Returns how many were claimed. A task whose message another worker already
    claimed returns at once (one UPDATE), so the other messages' own tasks cost next to nothing."""
    now = now or timezone.now()
    size = size or settings.CLARION["DELIVERY_BATCH_SIZE"]
    # No per-process "already sent here" shortcut: a sent message can be queued again (a
    # carrier's late refusal fails it over), and only the claim UPDATE knows.
    messages = claim_batch(now=now, limit=size, first=message_id)
    if messages:
        deliver_claimed(messages, now=now)
    return len(messages)


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def claim_batch(*, now: datetime, limit: int, first: str | None = None) -> list[Message]:
    """Claim `first` (when given; nothing at all if it is not ours to send) and up to `limit`
    due queued messages in all. SKIP LOCKED where the database has it (PostgreSQL): concurrent
    workers take disjoint batches; SQLite serializes writers (IMMEDIATE transactions)."""
    claim = {"status": Message.Status.SENDING, "attempts": F("attempts") + 1, "updated_at": now}
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


def deliver_claimed(messages: list[Message], *, now: datetime) -> list[Delivery]:
    """Deliver messages this worker has claimed (status `sending`)."""
    pool = ProviderPool()
    try:
        deliveries = [Delivery(m, pool.candidates(m.channel, m.tenant_id),
                               last_error=pool.problems.get((m.channel, m.tenant_id), ""))
                      for m in messages]
        _load_history(deliveries)
        _load_channel_data(deliveries)
        pending, completed = deliveries, []
        while pending:
            calls = [call for d in pending if (call := _next_call(d, now)) is not None]
            if not calls:
                break
            update_rows(DeliveryAttempt, completed, ATTEMPT_RESULT_FIELDS)  # failover rounds
            _start(calls, now)
            _perform(calls)
            _record(calls, now)
            completed = [call.attempt for call in calls]
            pending = [call.delivery for call in calls if call.delivery.outcome is None]
        _finish(deliveries, now, attempts=completed)
    finally:
        pool.close()
    return deliveries


def _load_history(deliveries: list[Delivery]) -> None:
    """What earlier passes of retried messages did: transient calls per provider, and the
    providers they are done with (a permanent error, or retries exhausted)."""
    retried = {d.message.pk: d for d in deliveries if d.message.attempts > 1}
    if not retried:
        return
    limit = settings.CLARION["DELIVERY_MAX_ATTEMPTS"]
    rows = DeliveryAttempt.objects.filter(message_id__in=list(retried)).values_list(
        "message_id", "provider", "outcome", "error")
    for message_id, provider, outcome, error in rows:
        d = retried[message_id]
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
        step_config=(message.step.config or {}) if message.step_id else {},
        channel_data=(channel_data.data or {}) if channel_data is not None else {},
        headers=email_headers(message) if message.channel == Channel.EMAIL else {},
    )


def _next_call(d: Delivery, now: datetime) -> Call | None:
    """The next provider for this message, or None with `d.outcome` set."""
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
            d.last_error = f"No provider is configured for the {d.message.channel} channel."
        d.outcome = ("failed", d.last_provider, "")
    return None


def _start(calls: list[Call], now: datetime) -> None:
    """The ledger rows, written before any call leaves."""
    attempts = [DeliveryAttempt(message=call.delivery.message, provider=call.candidate.key,
                                kind=call.candidate.provider.kind, started_at=now)
                for call in calls]
    DeliveryAttempt.objects.bulk_create(attempts)
    for call, attempt in zip(calls, attempts, strict=True):
        call.attempt = attempt


def _perform(calls: list[Call]) -> None:
    """Make the calls: in this thread for one, concurrently on an event loop for several."""
    if len(calls) == 1:
        call = calls[0]
        started = time.monotonic()
        try:
            call.result = call.candidate.provider.send(call.outbound)
        except ProviderError as exc:
            call.error = exc
        except Exception as exc:  # a kind's bug must not leave the message in `sending`
            logger.exception("provider %s raised", call.candidate.key)
            call.error = PermanentError(f"{type(exc).__name__}: {exc}")
        call.duration_ms = int((time.monotonic() - started) * 1000)
        return
    _event_loop().run_until_complete(_perform_async(calls))


async def _perform_async(calls: list[Call]) -> None:
    async def one(call: Call) -> None:
        started = time.monotonic()
        try:
            call.result = await call.candidate.provider.asend(call.outbound)
        except ProviderError as exc:
            call.error = exc
        except Exception as exc:
            logger.exception("provider %s raised", call.candidate.key)
            call.error = PermanentError(f"{type(exc).__name__}: {exc}")
        call.duration_ms = int((time.monotonic() - started) * 1000)

    await asyncio.gather(*(one(call) for call in calls))


ATTEMPT_RESULT_FIELDS = ["duration_ms", "outcome", "error", "request", "response", "status_code"]


def _record(calls: list[Call], now: datetime) -> None:
    """Complete the ledger rows (in memory: written with the next round's or with the
    messages' outcomes) and decide each message's next step."""
    limit = settings.CLARION["DELIVERY_MAX_ATTEMPTS"]
    for call in calls:
        d, candidate, attempt = call.delivery, call.candidate, call.attempt
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
        if dead and call.channel_data_id is not None:
            channel_data_deactivate(channel_data_id=call.channel_data_id, addresses=dead,
                                    reason=f"{candidate.key}: {d.last_error or 'unregistered'}")


def update_rows(model, objs: list, fields: list[str]) -> None:
    """UPDATE each object's `fields` by primary key in one round trip (executemany, which
    psycopg pipelines): bulk_update's CASE expressions cost more Python than the calls."""
    if not objs:
        return
    opts = model._meta
    columns = [opts.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sql = (f"UPDATE {quote(opts.db_table)} SET "
           + ", ".join(f"{quote(c.column)} = %s" for c in columns)
           + f" WHERE {quote(opts.pk.column)} = %s")
    params = [[c.get_db_prep_save(getattr(obj, c.attname), connection) for c in columns]
              + [opts.pk.get_db_prep_value(obj.pk, connection)] for obj in objs]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _finish(deliveries: list[Delivery], now: datetime, *,
            attempts: list[DeliveryAttempt] = ()) -> None:
    """Write the last calls' attempts, each message's outcome and its timeline entry, in one
    transaction."""
    logs, changed, schedules = [], [], []
    for d in deliveries:
        if d.outcome is None:  # cannot happen; never leave a message in `sending`
            d.outcome = ("failed", d.last_provider, "")
        message = d.message
        state, provider, value = d.outcome
        detail = {"message_id": str(message.id), "provider": provider,
                  "attempts": message.attempts}
        if len(d.tried) > 1:
            detail["tried"] = d.tried
        message.updated_at = now
        message.provider = provider or message.provider
        message.next_attempt_at = None
        if state == "sent":
            message.status, message.error, message.sent_at = Message.Status.SENT, "", now
            message.provider_message_id = value
            event, detail["provider_message_id"] = StepLog.Event.SENT, value
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
        update_rows(Message, changed, ["status", "error", "provider", "provider_message_id",
                                       "next_attempt_at", "updated_at", "sent_at"])
        StepLog.objects.bulk_create(logs)
        _replay_early_events([m.pk for m in changed if m.status == Message.Status.SENT])
        for message, at in schedules:
            enqueue_at("notifications.tasks.deliver_message", str(message.id), at=at,
                       name=f"msg:{message.id}#{message.attempts}")


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


# --- A carrier that refused an accepted message ------------------------------------------------

def message_fail_over_after_carrier_refusal(*, message_id, provider_message_id: str,
                                            reason: str) -> bool:
    """An SMS provider accepted the message, then reported that the carrier did not deliver it
    for a reason another provider may not meet (status.CARRIER_FAILOVER_CODES): queue it again
    for the next provider. Once per message at most, only while it is still `failed` from that
    very send, and only when a provider it has not tried is left; the refusal is a
    `carrier_refused` DeliveryAttempt (which makes delivery skip that provider) and a
    `retrying` timeline entry. Returns whether it failed over."""
    now = timezone.now()
    with transaction.atomic():
        message = (Message.objects.select_for_update()
                   .filter(pk=message_id, status=Message.Status.FAILED,
                           provider_message_id=provider_message_id).first())
        if message is None or not provider_message_id:
            return False
        attempts = DeliveryAttempt.objects.filter(message=message)
        if attempts.filter(outcome=DeliveryAttempt.Outcome.CARRIER_REFUSED).exists():
            return False  # it failed over once already: never a third send
        tried = set(attempts.values_list("provider", flat=True))
        left = [c.key for c in ProviderPool().candidates(message.channel, message.tenant_id)
                if c.key not in tried]
        if not left:
            return False
        kind = attempts.filter(provider=message.provider).values_list("kind", flat=True).last()
        DeliveryAttempt.objects.create(
            message=message, provider=message.provider, kind=kind or "", started_at=now,
            duration_ms=0, outcome=DeliveryAttempt.Outcome.CARRIER_REFUSED,
            error=f"Accepted, then not delivered by the carrier: {reason}"[:2000],
            response={"message_id": provider_message_id})
        Message.objects.filter(pk=message.pk).update(
            status=Message.Status.QUEUED, next_attempt_at=None, updated_at=now,
            provider_message_id="", error=f"{message.provider}: {reason}"[:2000])
        StepLog.objects.create(
            run_id=message.run_id, step_ref=message.step_ref, event=StepLog.Event.RETRYING,
            detail={"message_id": str(message.id), "provider": message.provider,
                    "provider_message_id": provider_message_id, "error": reason[:500],
                    "reason": "the carrier did not deliver it; failing over", "next": left[0]})
        enqueue("notifications.tasks.deliver_message", str(message.id))
    return True


# --- A worker that died mid-call ---------------------------------------------------------------

def _supports_idempotency(kind: str) -> bool:
    try:
        return registry.get(kind).supports_idempotency
    except KeyError:
        return False


def message_mark_sent_from_ledger(message: Message, attempt: DeliveryAttempt) -> None:
    """A worker stopped after a provider accepted the message but before the message was marked
    sent (a batch's later failover round was running): the ledger says it was accepted, so it is
    sent, with the provider's id, and never sent again."""
    d = Delivery(message, [])
    d.outcome = ("sent", attempt.provider, str((attempt.response or {}).get("message_id") or ""))
    _finish([d], timezone.now())


def message_mark_outcome_unknown(message: Message) -> None:
    """A worker stopped during a provider call: we cannot know whether it was accepted.

    Where the provider de-duplicates on the message's idempotency key (the signed webhook), the
    message is queued again and the same key makes a second call harmless. Anywhere else it is
    not sent again (a second send would risk a duplicate): it is marked failed with the reason,
    so support sees it on the run's timeline.
    """
    now = timezone.now()
    started = list(message.delivery_attempts.filter(outcome=DeliveryAttempt.Outcome.STARTED))
    DeliveryAttempt.objects.filter(pk__in=[a.pk for a in started]).update(
        outcome=DeliveryAttempt.Outcome.UNKNOWN,
        error="The worker stopped before the provider answered.")
    last = started[-1] if started else None
    if last is not None and _supports_idempotency(last.kind):
        with transaction.atomic():
            requeued = Message.objects.filter(pk=message.pk, status=Message.Status.SENDING) \
                .update(status=Message.Status.QUEUED, next_attempt_at=None, updated_at=now,
                        error="Outcome unknown (worker stopped); sent again with the same "
                              "idempotency key.")
            if requeued:
                StepLog.objects.create(
                    run_id=message.run_id, step_ref=message.step_ref,
                    event=StepLog.Event.RETRYING,
                    detail={"message_id": str(message.id), "provider": last.provider,
                            "reason": "outcome unknown; the provider de-duplicates on the "
                                      "idempotency key"})
                enqueue("notifications.tasks.deliver_message", str(message.id))
        return
    message.provider = last.provider if last is not None else message.provider
    d = Delivery(message, [], last_provider=message.provider,
                 last_error="Delivery outcome unknown: the worker stopped during the "
                            "provider call.")
    d.outcome = ("failed", message.provider, "")
    _finish([d], now)
