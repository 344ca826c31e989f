"""Email's delivery and engagement events: django-anymail's tracking webhooks, each view
guarded (authentication refused with 403, unreadable bodies with 400), and anymail's events
normalized into `StatusEvent`s."""

import json
import logging

from anymail.exceptions import AnymailConfigurationError, AnymailWebhookValidationFailure
from django.urls import URLPattern

from .callbacks import Kind, StatusEvent, error_response, jsonable

logger = logging.getLogger(__name__)


ANYMAIL_KINDS = {
    "queued": Kind.QUEUED, "sent": Kind.SENT, "rejected": Kind.REJECTED, "failed": Kind.FAILED,
    "bounced": Kind.BOUNCED, "deferred": Kind.DEFERRED, "delivered": Kind.DELIVERED,
    "autoresponded": Kind.UNKNOWN, "opened": Kind.OPENED, "clicked": Kind.CLICKED,
    "complained": Kind.COMPLAINED, "unsubscribed": Kind.UNSUBSCRIBED,
}


def from_anymail(event, esp_name: str) -> StatusEvent:
    """An anymail AnymailTrackingEvent → StatusEvent (of the email channel). Our emails carry
    their Message id in anymail metadata (EmailProvider), so ESPs that echo metadata match it
    exactly."""
    metadata = event.metadata or {}
    description = " ".join(str(part) for part in (event.description, event.mta_response) if part)
    if event.click_url:
        description = description or event.click_url
    return StatusEvent(
        provider_kind=esp_name.lower().replace(" ", "_"),
        kind=ANYMAIL_KINDS.get(event.event_type, Kind.UNKNOWN),
        provider_message_id=str(event.message_id or ""),
        message_id=str(metadata.get("clarion_message_id", "")),
        occurred_at=event.timestamp,
        event_id=str(event.event_id or ""),
        description=description,
        raw=jsonable(event.esp_event),
        channel="email",
    )


class _UnreadablePayload(Exception):
    pass


# What anymail's parsing raises on a body its ESP would never send.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
               RecursionError)


def _guarded(view_class):
    """A subclass of anymail's tracking view `view_class` that refuses with 403 (not anymail's
    400) what fails its authentication, refuses outright when the ESP is authenticated by basic
    auth only and no ANYMAIL_WEBHOOK_SECRET is set (anymail would only warn, and accept anyone's
    events) or when the ESP's signing setting is missing (anymail would raise: a 500), and answers
    400 (not 500) a body the ESP would never send.

    Whether basic auth is needed is the view *instance's* say: SendGrid's view drops the need
    (`warn_if_no_basic_auth`) in its __init__ once its ECDSA verification key is configured."""

    class Guarded(view_class):
        def __init__(self, **kwargs):
            self.unconfigured = ""
            try:
                super().__init__(**kwargs)
            except AnymailConfigurationError as exc:  # e.g. no ANYMAIL_POSTAL_WEBHOOK_KEY
                self.unconfigured = str(exc).splitlines()[0]

        def dispatch(self, request, *args, **kwargs):
            if self.unconfigured:
                logger.warning("anymail webhook not configured: %s", self.unconfigured)
                return error_response(403, "forbidden", "This ESP's tracking webhook is not "
                                      f"configured: {self.unconfigured}")
            if (getattr(self, "warn_if_no_basic_auth", False)
                    and not getattr(self, "basic_auth", None)):
                return error_response(403, "forbidden", "Set ANYMAIL_WEBHOOK_SECRET: this ESP's "
                                      "webhooks are authenticated by basic auth only.")
            try:
                return super().dispatch(request, *args, **kwargs)
            except AnymailWebhookValidationFailure as exc:
                logger.warning("anymail webhook refused: %s", exc)
                return error_response(403, "forbidden", str(exc))
            except _UnreadablePayload:
                return error_response(400, "invalid_request",
                                      f"The body is not a {self.esp_name} tracking payload.")

        def parse_events(self, request):
            try:
                return super().parse_events(request)
            except _UNREADABLE as exc:
                events = self.parse_each(request)
                if events is None:
                    logger.warning("unreadable %s tracking payload: %s: %s", self.esp_name,
                                   type(exc).__name__, exc)
                    raise _UnreadablePayload from exc
                return events

        def parse_each(self, request) -> list | None:
            """A batch (a JSON list, as SendGrid posts) with unreadable events among readable
            ones: the readable ones, each unreadable one logged and skipped, so one bad event
            does not refuse the others (the ESP would retry the whole batch). None when the
            body is not such a list."""
            convert = getattr(self, "esp_to_anymail_event", None)
            try:
                batch = json.loads(request.body)
            except (ValueError, RecursionError):
                return None
            if convert is None or not isinstance(batch, list):
                return None
            events = []
            for index, item in enumerate(batch):
                try:
                    events.append(convert(item))
                except _UNREADABLE as exc:
                    logger.warning("unreadable %s tracking event %d of %d skipped: %s: %s",
                                   self.esp_name, index + 1, len(batch),
                                   type(exc).__name__, exc)
            return events

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{view_class.__name__}"
    return Guarded


def anymail_tracking_patterns() -> list[URLPattern]:
    """anymail's tracking webhook URLs (``<esp>/tracking/``), each view guarded as above. Their
    events reach anymail's `tracking` signal, whose receiver records them."""
    from anymail import urls as anymail_urls

    return [URLPattern(pattern.pattern,
                       _guarded(pattern.callback.view_class).as_view(
                           **pattern.callback.view_initkwargs),
                       pattern.default_args, pattern.name)
            for pattern in anymail_urls.urlpatterns
            if pattern.name and "tracking" in pattern.name]
