"""Writes to event endpoints and deliveries: create or replace, delete, enable, replay."""

import base64
import ipaddress
import secrets
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications.models import Tenant
from notifications.providers import ssrf
from notifications.queue import enqueue

from .models import EVENT_TYPES, EventDelivery, EventEndpoint


class EndpointError(ValueError):
    """A bad endpoint: `field` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def endpoint_url_check(url: str) -> None:
    """Raise EndpointError (field "url") unless `url` is https:// to a public address; with
    CLARION_ALLOW_PRIVATE_URLS, http:// and private or loopback addresses are allowed too.
    The host is resolved: a name that resolves to a private address is refused (one that does
    not resolve yet is accepted). The check is made again on every request, where the
    connection goes to the checked address (notifications/providers/ssrf.py)."""
    allow_private = settings.CLARION.get("ALLOW_PRIVATE_URLS")
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as exc:
        raise EndpointError("url", f"Not a URL: {exc}.") from None
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise EndpointError("url", "Use an https:// URL.")
    try:
        ssrf.check_public_url(url)
        if not allow_private:
            try:
                addresses = ssrf.resolve(parts.hostname, port)
            except ssrf.UnsafeURL:
                addresses = []
            for text in addresses:
                problem = ssrf.address_problem(ipaddress.ip_address(text.split("%", 1)[0]))
                if problem:
                    raise ssrf.UnsafeURL(f"{parts.hostname!r} resolves to {text}, {problem}; "
                                         "set CLARION_ALLOW_PRIVATE_URLS to allow it.")
    except ssrf.UnsafeURL as exc:
        raise EndpointError("url", str(exc)) from None


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` + base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@transaction.atomic
def endpoint_put(*, key: str, url: str, events: list[str],
                 tenant: Tenant | None) -> tuple[EventEndpoint, str | None]:
    """Create or replace the endpoint `key`. Returns it and, when it was created, its signing
    secret (shown once: only its encrypted form is kept). Replacing keeps the secret and the
    active state. EndpointError for a bad URL or event type."""
    endpoint_url_check(url)
    if not events:
        raise EndpointError("events", "Name at least one event type.")
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise EndpointError("events", f"Unknown event types: {', '.join(unknown)}.")
    endpoint = EventEndpoint.objects.select_for_update().filter(key=key).first()
    secret = None
    if endpoint is None:
        endpoint, secret = EventEndpoint(key=key), new_secret()
        endpoint.secret = secret
    endpoint.url, endpoint.tenant = url, tenant
    endpoint.events = [t for t in EVENT_TYPES if t in set(events)]
    endpoint.save()
    return endpoint, secret


def endpoint_enable(*, endpoint: EventEndpoint) -> None:
    """Turn a disabled endpoint back on; its pending deliveries go out again at once."""
    with transaction.atomic():
        EventEndpoint.objects.filter(pk=endpoint.pk).update(
            active=True, disabled_at=None, disabled_reason="", failing_since=None,
            updated_at=timezone.now())
        EventDelivery.objects.filter(endpoint=endpoint, status=EventDelivery.Status.PENDING,
                                     next_attempt_at__gt=timezone.now()).update(
            next_attempt_at=timezone.now())
        enqueue("events.tasks.deliver_endpoint", endpoint.pk)


def delivery_replay(*, delivery: EventDelivery) -> EventDelivery:
    """Send a delivery's event to its endpoint again, as a new delivery (after the pending
    events of the same recipient). Returns the new delivery."""
    with transaction.atomic():
        replay = EventDelivery.objects.create(
            event_id=delivery.event_id, endpoint_id=delivery.endpoint_id,
            ordering_key=delivery.ordering_key, next_attempt_at=timezone.now())
        enqueue("events.tasks.deliver_endpoint", delivery.endpoint_id)
    return replay
