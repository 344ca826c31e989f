"""After a crash: a worker killed between a provider call and its write of the outcome leaves a
message in `sending` with a `started` attempt. The sweeper (tasks.sweep) finds it and asks here
what became of it: the ledger, then the provider's own reports, before giving up on it."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..models import Channel, DeliveryAttempt, Message, MessageEvent, ProviderConfig, StepLog
from ..providers import registry
from ..providers.base import TransientError
from ..queue import enqueue
from .batch import outbound_for
from .calls import Delivery
from .outcomes import _finish
from .pool import provider_for

logger = logging.getLogger(__name__)

# How long the sweeper keeps asking a provider that cannot answer a lookup (find_accepted)
# before it gives the message up as failed.
LOOKUP_GIVE_UP = timedelta(hours=1)


def _supports_idempotency(kind: str) -> bool:
    try:
        return registry.get(kind).supports_idempotency
    except KeyError:
        return False


def message_mark_sent_from_ledger(message: Message, attempt: DeliveryAttempt) -> None:
    """A worker stopped after a provider accepted the message but before the message was marked
    sent (a batch's later failover round was running): the ledger says it was accepted, so it is
    sent, with the provider's id, and never sent again."""
    # A push's other device set may have had a call on the wire: what became of it is unknown.
    cut_short = message.delivery_attempts.filter(outcome=DeliveryAttempt.Outcome.STARTED,
                                                 send_number=message.send_number)
    kinds = list(cut_short.values_list("provider_kind", flat=True))
    cut_short.update(outcome=DeliveryAttempt.Outcome.UNKNOWN,
                     error="The worker stopped before the provider answered.")
    d = _sent_by(message, attempt, str((attempt.response or {}).get("message_id") or ""),
                 unknown=kinds)
    _finish([d], timezone.now())


UNKNOWN_OUTCOME = "Delivery outcome unknown: the worker stopped during the provider call."


def _sent_by(message: Message, attempt: DeliveryAttempt, provider_message_id: str, *,
             unknown: list[str] = ()) -> Delivery:
    """The outcome "sent through `attempt`'s provider" to hand to `_finish`; for a push message
    whose other device sets' calls (their kinds: `unknown`) were cut short, with those sets
    named unknown (`device_sets`), which leaves the message's error saying so."""
    d = Delivery(message, [])
    d.outcome = ("sent", attempt.provider, provider_message_id)
    others = [kind for kind in dict.fromkeys(unknown) if kind != attempt.provider_kind]
    if message.channel == Channel.PUSH and others:
        d.sets = {attempt.provider_kind: "sent", **{kind: "unknown" for kind in others}}
        d.last_error = "; ".join(f"{kind}: {UNKNOWN_OUTCOME}" for kind in others)
    return d


def provider_reported(message: Message, attempt: DeliveryAttempt) -> str | None:
    """The provider's id for `message` when the provider of `attempt` has reported on it since
    (a status callback naming Clarion's message id: Twilio's StatusCallback URL carries it,
    Vonage's `client-ref`, …), which proves the request reached it; else None. Events about an
    earlier send of the message (one whose provider id a completed attempt holds) do not count.

    No SMS or push kind offers a lookup of a message by our id (Twilio's, Vonage's and Plivo's
    message APIs look up by their own id only), so a kind without status callbacks stays
    unresolved."""
    earlier = {str((a.response or {}).get("message_id") or "")
               for a in message.delivery_attempts.exclude(pk=attempt.pk)} - {""}
    return (MessageEvent.objects.filter(message=message, provider_kind=attempt.provider_kind)
            .exclude(provider_message_id="").exclude(provider_message_id__in=earlier)
            .order_by("id").values_list("provider_message_id", flat=True).first())


def provider_listed(message: Message, attempt: DeliveryAttempt) -> tuple[str, str]:
    """Ask the provider of `attempt` whether it holds `message`, where its kind can say
    (`Provider.find_accepted`: Twilio's message list). Returns ("found", its id), ("absent", "")
    when the provider's records prove the request never arrived, ("unanswered", the error)
    when it could not be asked, or ("", "") when its kind cannot be asked."""
    config = ProviderConfig.objects.filter(key=attempt.provider).first()
    if config is None or not registry.get(config.kind).can_find_accepted:
        return "", ""
    # Provider ids that are some other message's (or an earlier send's of this one).
    taken = set(Message.objects.filter(to=message.to, channel=message.channel,
                                       provider=attempt.provider)
                .exclude(pk=message.pk).exclude(provider_message_id="")
                .values_list("provider_message_id", flat=True))
    taken |= {str((a.response or {}).get("message_id") or "")
              for a in message.delivery_attempts.exclude(pk=attempt.pk)} - {""}
    provider = provider_for(config)
    try:
        found = provider.find_accepted(outbound_for(message), since=attempt.started_at,
                                       exclude=taken)
    except TransientError as exc:
        logger.warning("Could not ask %s whether it holds message %s: %s", attempt.provider,
                       message.pk, exc)
        return "unanswered", str(exc)
    finally:
        provider.close()
    return ("found", found) if found else ("absent", "")


def message_mark_outcome_unknown(message: Message, *, now: datetime | None = None) -> str:
    """A worker stopped during a provider call: was it accepted? Returns what was done:
    "sent", "requeued", "failed", or "waiting" (nothing changed: the provider could not be
    asked yet; the sweeper asks again). `now`: aware, UTC; None for the current time.

    - The provider reported on the message since (`provider_reported`), or lists it in its own
      records (`provider_listed`: Twilio): it was accepted — the attempt succeeded, the message
      is sent (and its reported events applied).
    - The provider's records prove the request never arrived (`provider_listed`): the attempt
      failed, and the message is queued again, a first call as far as the provider knows. While
      the provider cannot be asked, the message waits for up to LOOKUP_GIVE_UP after the call.
    - The provider de-duplicates on the message's idempotency key (the signed webhook): the
      message is queued again and the same key makes a second call harmless.
    - A push message one of whose device sets a provider took in an earlier pass of the same
      send (the call cut short was to another set, fanout.py): it is sent, and that set's
      provider named. What a send before a resend did does not count.
    - Anywhere else it is not sent again (a second send would risk a duplicate): it is marked
      failed with the reason, so support sees it on the run's timeline.

    Only a request on the wire when the worker stopped gets here: a batch writes each attempt
    just before its own request leaves (calls._start), and a message with no attempt started
    is simply sent again by the sweeper.
    """
    now = now or timezone.now()
    current = message.delivery_attempts.filter(send_number=message.send_number)
    started = list(current.filter(outcome=DeliveryAttempt.Outcome.STARTED)
                   .order_by("started_at", "id"))
    last = started[-1] if started else None
    reported = provider_reported(message, last) if last is not None else None
    resolved_from = "the provider's status callback"
    listed, answer = ("", "") if reported or last is None else provider_listed(message, last)
    if listed == "found":
        reported, resolved_from = answer, "the provider's message list"
    elif listed == "unanswered" and now - last.started_at < LOOKUP_GIVE_UP:
        return "waiting"
    elif listed == "absent":
        return _requeue_never_arrived(message, started, now)
    if reported:
        DeliveryAttempt.objects.filter(pk__in=[a.pk for a in started if a is not last]).update(
            outcome=DeliveryAttempt.Outcome.UNKNOWN,
            error="The worker stopped before the provider answered.")
        DeliveryAttempt.objects.filter(pk=last.pk).update(
            outcome=DeliveryAttempt.Outcome.SUCCEEDED,
            response={"message_id": reported, "resolved_from": resolved_from})
        d = Delivery(message, [])
        d.outcome = ("sent", last.provider, reported)
        _finish([d], now)
        return "sent"
    DeliveryAttempt.objects.filter(pk__in=[a.pk for a in started]).update(
        outcome=DeliveryAttempt.Outcome.UNKNOWN,
        error="The worker stopped before the provider answered.")
    taken = (current.filter(outcome=DeliveryAttempt.Outcome.SUCCEEDED)
             .order_by("started_at", "id").first() if message.channel == Channel.PUSH else None)
    if taken is not None:  # a device set took it in an earlier pass of this send: sent
        _finish([_sent_by(message, taken, str((taken.response or {}).get("message_id") or ""),
                          unknown=[a.provider_kind for a in started])], now)
        return "sent"
    if last is not None and _supports_idempotency(last.provider_kind):
        return _requeue(message, now, provider=last.provider,
                        error="Outcome unknown (worker stopped); sent again with the same "
                              "idempotency key.",
                        reason="outcome unknown; the provider de-duplicates on the idempotency "
                               "key")
    message.provider = last.provider if last is not None else message.provider
    d = Delivery(message, [], last_provider=message.provider, last_error=UNKNOWN_OUTCOME)
    d.outcome = ("failed", message.provider, "")
    _finish([d], now)
    return "failed"


def _requeue_never_arrived(message: Message, started: list[DeliveryAttempt],
                           now: datetime) -> str:
    """The provider's records prove the calls cut short never reached it: they failed, and the
    message is queued again (its next call is the first the provider sees)."""
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk__in=[a.pk for a in started]).update(
            outcome=DeliveryAttempt.Outcome.TRANSIENT_ERROR,
            error="The worker stopped before the request reached the provider (its message "
                  "list has no such message).")
        return _requeue(message, now, provider=started[-1].provider,
                        error="The worker stopped before the request reached the provider; "
                              "sent again.",
                        reason="the worker stopped during the call, and the provider's message "
                               "list shows it never arrived; queued again by the sweeper")


def _requeue(message: Message, now: datetime, *, provider: str, error: str, reason: str) -> str:
    """A message still `sending` as the sweeper read it (the same send, not claimed since:
    `updated_at` unchanged) queued again with its delivery task, `reason` on its run's
    timeline (StepLog retrying); "requeued". One that moved on meanwhile (resent and claimed,
    or queued again by another sweep and claimed) is its worker's: queuing it would send it
    twice."""
    with transaction.atomic():
        if Message.objects.filter(pk=message.pk, status=Message.Status.SENDING,
                                  send_number=message.send_number,
                                  updated_at=message.updated_at).update(
                status=Message.Status.QUEUED, next_attempt_at=None, updated_at=now, error=error):
            StepLog.objects.create(
                run_id=message.run_id, step_ref=message.step_ref, event=StepLog.Event.RETRYING,
                detail={"message_id": str(message.id), "provider": provider, "reason": reason})
            enqueue("notifications.tasks.deliver_message", str(message.id))
    return "requeued"
