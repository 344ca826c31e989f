"""/webhooks/: every provider's status callback, recording through the status state machine,
and anymail's tracking views (whose events reach anymail's `tracking` signal)."""

from django.urls import include, path

from ..providers.anymail_tracking import anymail_tracking_patterns
from ..providers.callbacks import callback_views
from .status import message_event_record


def _record(event):
    return message_event_record(event=event)


urlpatterns = [
    path("anymail/", include((anymail_tracking_patterns(), "anymail"), namespace="anymail")),
    *(path(view.route, view.as_view(record=_record), name=view.name)
      for view in callback_views()),
]
