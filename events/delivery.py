"""Sending events to endpoints: Standard Webhooks requests, in order per recipient, retried.

Each endpoint's pending deliveries form one line per recipient (`ordering_key`): only the
oldest pending delivery of a line is sent, so a recipient's events arrive in the order they
happened, and one failing event holds back the later events of that recipient (not of others)
until it succeeds or its retries run out. A worker claims a delivery with a lease before its
request, so two workers never send it at once and one that dies mid-request leaves it to be
sent again when the lease ends (receivers deduplicate on `webhook-id`, which every attempt of
an event repeats).

Retries follow the schedule the Standard Webhooks spec suggests (immediately, 5 s, 5 min,
30 min, 2 h, 5 h, 10 h, 10 h: about 27.5 hours). An endpoint that fails every attempt of a
delivery's whole schedule is disabled with a notice (its reason on the endpoint, an error in
the log and a mail to ADMINS); its pending deliveries wait, and resume when it is enabled.
"""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.core.mail import mail_admins
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from notifications.providers import ssrf
from notifications.queue import enqueue_at

from .models import EventAttempt, EventDelivery, EventEndpoint

logger = logging.getLogger(__name__)

# Seconds from a failed attempt to the next (Standard Webhooks' suggested schedule, after the
# first, immediate attempt).
RETRY_SCHEDULE_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)
LEASE_SECONDS = 60
TIMEOUT_SECONDS = 15
BATCH = 50


def _due_heads(endpoint_id: int, now: datetime):
    """The endpoint's pending deliveries that head their recipient's line and are due."""
    earlier = EventDelivery.objects.filter(
        endpoint_id=OuterRef("endpoint_id"), ordering_key=OuterRef("ordering_key"),
        status=EventDelivery.Status.PENDING, id__lt=OuterRef("id"))
    return (EventDelivery.objects
            .filter(endpoint_id=endpoint_id, status=EventDelivery.Status.PENDING,
                    next_attempt_at__lte=now)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
            .exclude(Exists(earlier))
            .select_related("event")
            .order_by("id"))


def _claim(delivery: EventDelivery, now: datetime) -> bool:
    return bool(EventDelivery.objects
                .filter(pk=delivery.pk, status=EventDelivery.Status.PENDING)
                .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
                .update(lease_until=now + timedelta(seconds=LEASE_SECONDS)))


def signed_request(endpoint: EventEndpoint, delivery: EventDelivery,
                   at: datetime) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt: `webhook-id`, `webhook-timestamp` (the attempt's
    time, `at`) and `webhook-signature` (v1, HMAC-SHA256 with the endpoint's secret, made by
    the `standardwebhooks` package)."""
    event = delivery.event
    body = json.dumps(event.payload(), cls=DjangoJSONEncoder, separators=(",", ":"),
                      ensure_ascii=False)
    signature = Webhook(endpoint.secret).sign(event.webhook_id, at, body)
    return body.encode(), {
        "content-type": "application/json",
        "user-agent": "Clarion-Webhooks/1",
        "webhook-id": event.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def _client() -> httpx.Client:
    verify = httpx.create_ssl_context()
    if settings.CLARION.get("ALLOW_PRIVATE_URLS"):
        return httpx.Client(timeout=TIMEOUT_SECONDS, verify=verify, trust_env=False)
    return ssrf.public_client(timeout=TIMEOUT_SECONDS, verify=verify)


def _post(client: httpx.Client, endpoint: EventEndpoint,
          delivery: EventDelivery) -> EventAttempt:
    """Make one attempt (never raises); the attempt is returned unsaved."""
    started = timezone.now()
    attempt = EventAttempt(delivery=delivery, started_at=started)
    clock = time.monotonic()
    try:
        if urlsplit(endpoint.url).scheme != "https" and not settings.CLARION.get(
                "ALLOW_PRIVATE_URLS"):
            raise ssrf.UnsafeURL(f"{endpoint.url!r} is not an https:// URL.")
        ssrf.check_public_url(endpoint.url)
        body, headers = signed_request(endpoint, delivery, datetime.now(UTC))
        response = client.post(endpoint.url, content=body, headers=headers)
        attempt.status_code = response.status_code
        attempt.response = response.text[:2000]
        attempt.succeeded = 200 <= response.status_code < 300
        if not attempt.succeeded:
            attempt.error = f"HTTP {response.status_code}"
    except (httpx.HTTPError, ssrf.UnsafeURL) as exc:
        attempt.error = f"{type(exc).__name__}: {exc}"[:2000]
    attempt.duration_ms = int((time.monotonic() - clock) * 1000)
    return attempt


def _record(endpoint: EventEndpoint, delivery: EventDelivery, attempt: EventAttempt,
            now: datetime) -> None:
    """Write the attempt and what it means for the delivery and the endpoint, in one
    transaction; disable the endpoint when the delivery's retries have run out."""
    delivery.attempts += 1
    delivery.lease_until = None
    delivery.last_status_code = attempt.status_code
    delivery.last_error = attempt.error
    exhausted = False
    if attempt.succeeded:
        delivery.status = EventDelivery.Status.SUCCEEDED
    elif delivery.attempts > len(RETRY_SCHEDULE_SECONDS):
        delivery.status, exhausted = EventDelivery.Status.FAILED, True
    else:
        delivery.next_attempt_at = now + timedelta(
            seconds=RETRY_SCHEDULE_SECONDS[delivery.attempts - 1])
    with transaction.atomic():
        attempt.save()
        EventDelivery.objects.filter(pk=delivery.pk).update(
            attempts=delivery.attempts, lease_until=None, status=delivery.status,
            next_attempt_at=delivery.next_attempt_at, last_status_code=attempt.status_code,
            last_error=attempt.error, updated_at=timezone.now())
        if attempt.succeeded:
            EventEndpoint.objects.filter(pk=endpoint.pk).exclude(failing_since=None).update(
                failing_since=None)
        else:
            EventEndpoint.objects.filter(pk=endpoint.pk, failing_since=None).update(
                failing_since=now)
        if exhausted:
            endpoint_disable(endpoint=endpoint, now=now, reason=(
                f"Every attempt to deliver event {delivery.event.webhook_id} "
                f"({delivery.event.type}) failed over "
                f"{sum(RETRY_SCHEDULE_SECONDS) // 3600} hours; last: {attempt.error}"))
        elif delivery.status == EventDelivery.Status.PENDING:
            enqueue_at("events.tasks.deliver_endpoint", endpoint.pk, at=delivery.next_attempt_at,
                       name=f"evt:{delivery.pk}#{delivery.attempts}")


def endpoint_disable(*, endpoint: EventEndpoint, now: datetime, reason: str) -> None:
    """Turn the endpoint off with a notice: the reason on it, an error logged, ADMINS mailed."""
    EventEndpoint.objects.filter(pk=endpoint.pk).update(
        active=False, disabled_at=now, disabled_reason=reason[:2000], updated_at=now)
    endpoint.active, endpoint.disabled_at, endpoint.disabled_reason = False, now, reason
    logger.error("Event endpoint %s disabled: %s", endpoint.key, reason)
    transaction.on_commit(lambda: mail_admins(
        f"Clarion disabled the event endpoint {endpoint.key}",
        f"{endpoint.url}\n\n{reason}\n\nEnable it again in the admin once it answers; its "
        "pending events are then delivered.", fail_silently=True))


def endpoint_deliver(*, endpoint_id: int, now: datetime | None = None,
                     limit: int = 500) -> int:
    """Send the endpoint's due deliveries, each recipient's in order, until none is due or
    `limit` attempts were made. `now` fixes the clock (tests); default: the time at each pass.
    Returns how many attempts were made."""
    made = 0
    with _client() as client:
        while made < limit:
            moment = now or timezone.now()
            endpoint = EventEndpoint.objects.filter(pk=endpoint_id, active=True).first()
            if endpoint is None:
                break
            heads = list(_due_heads(endpoint_id, moment)[:BATCH])
            if not heads:
                break
            for delivery in heads:
                if not endpoint.active or made >= limit or not _claim(delivery, moment):
                    continue
                attempt = _post(client, endpoint, delivery)
                _record(endpoint, delivery, attempt, now or timezone.now())
                made += 1
    return made
