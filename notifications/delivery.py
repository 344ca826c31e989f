"""Delivering a queued Message through its channel's provider, with a ledger of attempts.

Email goes through Django's email backend, so SMTP and every django-anymail ESP plug in by
setting EMAIL_BACKEND. Each provider call is a DeliveryAttempt written before the call and
completed after it; a Message is claimed (queued → sending) by one worker only.
"""

import logging
import random
import smtplib
import time
from datetime import datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from preferences.mail import unsubscribe_headers

from .models import DeliveryAttempt, Message, StepLog
from .queue import enqueue_at

logger = logging.getLogger(__name__)


class TransientError(Exception):
    """The provider may accept the same request later: retry with backoff."""


class PermanentError(Exception):
    """The provider will never accept this request: do not retry it."""


def email_provider_name() -> str:
    """A short name for the configured email backend: smtp, console, sendgrid…"""
    path = settings.EMAIL_BACKEND
    if path.startswith("anymail.backends."):
        return path.split(".")[2]
    return path.rsplit(".", 2)[-2]


def classify_email_error(exc: Exception) -> type[Exception]:
    """TransientError or PermanentError for an exception raised by an email backend."""
    try:
        from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
    except ImportError:  # pragma: no cover - anymail is a dependency
        AnymailAPIError = AnymailRecipientsRefused = ()  # noqa: N806
    if isinstance(exc, AnymailRecipientsRefused):
        return PermanentError
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        transient = status is None or status == 429 or status >= 500
        return TransientError if transient else PermanentError
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
    if isinstance(exc, smtplib.SMTPResponseException):
        return TransientError if 400 <= exc.smtp_code < 500 else PermanentError
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError | TimeoutError):
        return TransientError
    return PermanentError


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff, capped, with "equal jitter": between half and all of the step."""
    conf = settings.CLARION
    ceiling = min(conf["DELIVERY_BACKOFF_MAX_SECONDS"],
                  conf["DELIVERY_BACKOFF_SECONDS"] * 2 ** max(attempt - 1, 0))
    return random.uniform(ceiling / 2, ceiling)


def _email_for(message: Message) -> EmailMultiAlternatives:
    tenant = message.tenant
    from_email = settings.DEFAULT_FROM_EMAIL
    if tenant is not None and tenant.sender_email:
        from_email = f"{tenant.sender_name or tenant.name} <{tenant.sender_email}>"
    domain = parseaddr(from_email)[1].rpartition("@")[2] or "clarion.local"
    content = message.content
    email = EmailMultiAlternatives(
        subject=content.get("subject", ""),
        body=content.get("text", ""),
        from_email=from_email,
        to=[message.to],
        headers={
            # Deterministic, so the message can be recognised if it is ever presented twice.
            "Message-ID": f"<{message.id}@{domain}>",
            "X-Clarion-Message-Id": str(message.id),
        },
    )
    email.extra_headers.update(unsubscribe_headers(message))
    if content.get("html"):
        email.attach_alternative(content["html"], "text/html")
    # Read by django-anymail ESP backends (tracking webhooks map events back to the message).
    email.metadata = {"clarion_message_id": str(message.id)}
    email.tags = [message.workflow.key]
    return email


def _send_email(message: Message) -> str:
    """Send and return the provider's message id; raise TransientError/PermanentError."""
    email = _email_for(message)
    try:
        with get_connection(fail_silently=False) as connection:
            connection.send_messages([email])
    except Exception as exc:
        raise classify_email_error(exc)(f"{type(exc).__name__}: {exc}") from exc
    status = getattr(email, "anymail_status", None)
    if status is not None and status.message_id:
        return str(status.message_id)
    return email.extra_headers["Message-ID"]


SENDERS = {"email": (_send_email, email_provider_name)}


def deliver(message_id: str, *, now: datetime | None = None) -> None:
    """Send one queued message. Safe to call twice: only one caller claims it."""
    now = now or timezone.now()
    claimed = (
        Message.objects.filter(pk=message_id, status=Message.Status.QUEUED)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .update(status=Message.Status.SENDING, attempts=F("attempts") + 1, updated_at=now)
    )
    if not claimed:
        return
    message = Message.objects.select_related("tenant", "workflow", "run").get(pk=message_id)
    if message.channel not in SENDERS:
        _finish(message, Message.Status.FAILED, f"no provider for channel {message.channel}")
        return
    send, provider_name = SENDERS[message.channel]
    provider = provider_name()
    attempt = DeliveryAttempt.objects.create(
        message=message,
        provider=provider,
        started_at=now,
        request={"to": message.to, "subject": message.content.get("subject", "")},
    )
    started = time.monotonic()
    try:
        provider_message_id = send(message)
    except (TransientError, PermanentError) as exc:
        transient = isinstance(exc, TransientError)
        _record_attempt(attempt, started, transient=transient, error=str(exc))
        if transient and message.attempts < settings.CLARION["DELIVERY_MAX_ATTEMPTS"]:
            _retry_later(message, provider, str(exc))
        else:
            _finish(message, Message.Status.FAILED, str(exc), provider=provider)
        return
    _record_attempt(attempt, started, response={"message_id": provider_message_id})
    _finish(message, Message.Status.SENT, "", provider=provider,
            provider_message_id=provider_message_id)


def _record_attempt(attempt: DeliveryAttempt, started: float, *, transient: bool = False,
                    error: str = "", response: dict | None = None) -> None:
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    if not error:
        attempt.outcome = DeliveryAttempt.Outcome.SUCCEEDED
    elif transient:
        attempt.outcome = DeliveryAttempt.Outcome.TRANSIENT_ERROR
    else:
        attempt.outcome = DeliveryAttempt.Outcome.PERMANENT_ERROR
    attempt.error = error[:2000]
    attempt.response = response or {}
    attempt.save(update_fields=["duration_ms", "outcome", "error", "response"])


def _retry_later(message: Message, provider: str, error: str) -> None:
    retry_at = timezone.now() + timedelta(seconds=backoff_seconds(message.attempts))
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(
            status=Message.Status.QUEUED, next_attempt_at=retry_at, error=error[:2000],
            provider=provider, updated_at=timezone.now(),
        )
        StepLog.objects.create(
            run=message.run, step_ref=message.step_ref, event=StepLog.Event.RETRYING,
            detail={"message_id": str(message.id), "attempt": message.attempts,
                    "retry_at": retry_at.isoformat(), "error": error[:500]},
        )
        enqueue_at("notifications.tasks.deliver_message", str(message.id), at=retry_at,
                   name=f"msg:{message.id}#{message.attempts}")


def _finish(message: Message, status: str, error: str, *, provider: str = "",
            provider_message_id: str = "") -> None:
    now = timezone.now()
    with transaction.atomic():
        Message.objects.filter(pk=message.pk).update(
            status=status, error=error[:2000], provider=provider,
            provider_message_id=provider_message_id, next_attempt_at=None, updated_at=now,
            sent_at=now if status == Message.Status.SENT else None,
        )
        detail = {"message_id": str(message.id), "provider": provider, "attempts": message.attempts}
        if status == Message.Status.SENT:
            StepLog.objects.create(run=message.run, step_ref=message.step_ref,
                                   event=StepLog.Event.SENT,
                                   detail={**detail, "provider_message_id": provider_message_id})
        else:
            StepLog.objects.create(run=message.run, step_ref=message.step_ref,
                                   event=StepLog.Event.FAILED,
                                   detail={**detail, "error": error[:500]})


def message_mark_outcome_unknown(message: Message) -> None:
    """A worker stopped during a provider call: we cannot know whether it was accepted.

    The message is not sent again (a second send would risk a duplicate); it is marked failed
    with the reason, so support sees it on the run's timeline.
    """
    DeliveryAttempt.objects.filter(
        message=message, outcome=DeliveryAttempt.Outcome.STARTED
    ).update(outcome=DeliveryAttempt.Outcome.UNKNOWN,
             error="The worker stopped before the provider answered.")
    _finish(message, Message.Status.FAILED,
            "Delivery outcome unknown: the worker stopped during the provider call.",
            provider=message.provider)
