"""Status callbacks: providers tell Clarion what became of a message.

Like django-anymail's tracking webhooks, in two parts:

- `StatusEvent`, the one normalised event every provider's callback becomes (what happened, to
  which message, when), with the provider's raw payload beside it (anymail's `esp_event`);
- `StatusCallbackView`, the base view: its `post` is `run_validators(request)` →
  `parse_events(request)` → `record(event)` for each. A provider kind's own module subclasses
  it with its `kind`, a `validate_request` (the signature, in constant time, on the raw
  request) and a `parse_events` with its event-type map (twilio.py, vonage.py). Email events
  arrive through anymail's own views and `tracking` signal (anymail_tracking.py).

Recording is not the providers' business: `record` is handed in by whoever mounts the views
(`view.as_view(record=…)` in notifications/delivery/urls.py), so providers never
import delivery.

The provider key in each URL names the ProviderConfig whose secret signed the callback. A bad
or missing signature is a 403; an unreadable body a 400; an event about a message Clarion does
not know is logged and answered 204, so the provider stops re-sending it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from ..models import MessageEvent, ProviderConfig

logger = logging.getLogger(__name__)

Kind = MessageEvent.Kind

# Signed callbacks older (or further in the future) than this are refused as replays.
SIGNATURE_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class StatusEvent:
    """One provider's report about one message, in Clarion's words.

    `kind` is a MessageEvent.Kind; `occurred_at` is timezone-aware (None: when it was received).
    """

    provider_kind: str  # twilio, vonage, postmark…: the kind of provider that reported it
    kind: str
    provider_message_id: str = ""
    message_id: str = ""  # Clarion's Message id, when the provider echoes it back
    occurred_at: datetime | None = None
    event_id: str = ""  # the provider's id for this event; else a digest of `raw`
    description: str = ""
    raw: dict = field(default_factory=dict)
    # The provider key (ProviderConfig) whose secret verified the callback: only messages that
    # provider was called for may be moved by it (another tenant's provider must not reach them).
    provider_key: str = ""
    channel: str = ""  # only messages of this channel (email, for anymail's tracking)
    # The carrier did not deliver it for a reason another provider may not meet (the provider's
    # route or account failed, not the number): delivery fails the message over.
    carrier_refused: bool = False


def jsonable(value):
    """The raw payload as JSON (anymail hands some ESPs' events over as QueryDicts)."""
    if hasattr(value, "lists"):
        return {key: values[0] if len(values) == 1 else values for key, values in value.lists()}
    try:
        json.dumps(value)
    except TypeError:
        return json.loads(json.dumps(value, default=str))
    return value


# --- The base view ------------------------------------------------------------------------------

class CallbackRefused(Exception):
    """The callback's signature (or its time) does not hold: answered 403."""


class CallbackInvalid(Exception):
    """The callback's body cannot be read: answered 400."""


def error_response(status_code: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status_code)


@method_decorator(csrf_exempt, name="dispatch")
class StatusCallbackView(View):
    """One provider kind's status callback at ``<route>`` (with ``<str:key>``, the provider).

    Subclasses set `kind`, `label`, `route`, `name` and write `validate_request(request,
    config)` and `parse_events(request, config)`. `record` (one StatusEvent → anything) is
    given to `as_view`."""

    kind: ClassVar[str] = ""
    label: ClassVar[str] = ""  # the provider's name, as its own docs write it
    route: ClassVar[str] = ""
    name: ClassVar[str] = ""
    http_method_names = ["post"]
    record: Callable[[StatusEvent], Any] | None = None

    def validate_request(self, request: HttpRequest, config: ProviderConfig) -> None:
        """Raise CallbackRefused unless the provider signed this request (constant time)."""
        raise NotImplementedError

    def parse_events(self, request: HttpRequest, config: ProviderConfig) -> list[StatusEvent]:
        """The request's events, normalised; CallbackInvalid for a body that cannot be read."""
        raise NotImplementedError

    def run_validators(self, request: HttpRequest, config: ProviderConfig) -> None:
        self.validate_request(request, config)

    def post(self, request: HttpRequest, key: str) -> HttpResponse:
        config = ProviderConfig.objects.filter(key=key, kind=self.kind).first()
        if config is None:
            return error_response(404, "not_found", f"No {self.label} provider {key!r}.")
        try:
            self.run_validators(request, config)
            events = self.parse_events(request, config)
        except CallbackRefused as exc:
            logger.warning("%s status callback for %s refused: %s", self.label, key, exc)
            return error_response(403, "forbidden", str(exc))
        except CallbackInvalid as exc:
            return error_response(400, "invalid_request", str(exc))
        for event in events:
            self.record(replace(event, provider_key=config.key))
        # Recorded, or logged and ignored (an unknown message): either way the provider is done.
        return HttpResponse(status=204)


_VIEWS: list[type[StatusCallbackView]] = []


def register_callback(view: type[StatusCallbackView]) -> type[StatusCallbackView]:
    """Class decorator: mount `view` at /webhooks/<view.route> (by delivery/urls.py)."""
    if not (view.kind and view.label and view.route and view.name):
        raise TypeError(f"{view.__name__} needs `kind`, `label`, `route` and `name`")
    if view not in _VIEWS:
        _VIEWS.append(view)
    return view


def callback_views() -> list[type[StatusCallbackView]]:
    """Every kind's status callback view (importing every kind's module registers its view)."""
    from . import registry

    registry.kinds()
    return list(_VIEWS)
