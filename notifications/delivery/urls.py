"""/webhooks/: every provider's status callback, recording through the status state machine."""

from ..providers.callbacks import callback_urlpatterns
from .status import message_event_record


def _record(event):
    return message_event_record(event=event)


urlpatterns = callback_urlpatterns(record=_record)
