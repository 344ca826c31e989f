"""django-q2 tasks of outbound events. Thin: take ids, call the sender."""

from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from notifications.queue import enqueue_many

from .delivery import endpoint_deliver
from .models import EventDelivery


def deliver_endpoint(endpoint_id: int) -> None:
    endpoint_deliver(endpoint_id=endpoint_id)


def sweep(now: datetime | None = None) -> list[int]:
    """Every minute: enqueue delivery for the active endpoints with due deliveries nobody is
    sending (their task was lost: a broker other than the database's, or a killed worker).
    Returns the endpoint ids."""
    now = now or timezone.now()
    ids = sorted(set(EventDelivery.objects
                     .filter(status=EventDelivery.Status.PENDING, next_attempt_at__lte=now,
                             endpoint__active=True)
                     .filter(Q(lease_until__isnull=True) | Q(lease_until__lte=now))
                     .values_list("endpoint_id", flat=True).distinct()))
    enqueue_many("events.tasks.deliver_endpoint", [(pk,) for pk in ids])
    return ids
