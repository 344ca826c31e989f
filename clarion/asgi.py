"""ASGI entry: HTTP through Django, websockets through Channels (the inbox's routes)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clarion.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from inbox.routing import websocket_urlpatterns  # noqa: E402

# The inbox authenticates with a token or HMAC in the URL, never a cookie, so any embedding page
# may connect unless INBOX_ALLOWED_ORIGINS names the allowed ones.
websocket_app = URLRouter(websocket_urlpatterns)
if settings.INBOX_ALLOWED_ORIGINS != ["*"]:
    websocket_app = OriginValidator(websocket_app, settings.INBOX_ALLOWED_ORIGINS)

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_app,
    }
)
