"""ASGI entry: HTTP through Django (but /mcp, the MCP server for AI agents), websockets through
Channels (the inbox's routes)."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clarion.settings")
from django.conf import settings as _settings  # noqa: E402

_WEB_PROCESS = not _settings.configured
if _WEB_PROCESS:
    # Loaded by an ASGI server: a web process (its database connections come from a pool).
    os.environ.setdefault("CLARION_PROCESS", "web")
django.setup(set_prefix=False)  # what get_asgi_application() does before its handler

from clarion.http import SyncChainASGIHandler  # noqa: E402

# Django's ASGIHandler, with its middleware chain and views run in one call on a kept thread
# (clarion/http.py: the stock handler crossed between the event loop and threads ~10 times a
# request, on a new thread each time), at most WEB_THREADS requests at once (0: no bound).
django_asgi_app = SyncChainASGIHandler(threads=_settings.WEB_THREADS)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from inbox.routing import websocket_urlpatterns  # noqa: E402
from notifications.agents.http import MCP_PATH, McpApp  # noqa: E402

# The inbox authenticates with a token or HMAC in the URL, never a cookie, so any embedding page
# may connect unless INBOX_ALLOWED_ORIGINS names the allowed ones.
websocket_app = URLRouter(websocket_urlpatterns)
if settings.INBOX_ALLOWED_ORIGINS != ["*"]:
    websocket_app = OriginValidator(websocket_app, settings.INBOX_ALLOWED_ORIGINS)


class HttpRouter:
    """MCP_PATH to the MCP server (its own ASGI app: streamable HTTP), the rest to Django."""

    def __init__(self, django_app):
        self.django_app = django_app
        self.mcp_app = McpApp()

    async def __call__(self, scope, receive, send):
        if scope["path"].rstrip("/") == MCP_PATH:
            return await self.mcp_app(scope, receive, send)
        return await self.django_app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": HttpRouter(django_asgi_app),
        "websocket": websocket_app,
    }
)

if _WEB_PROCESS:
    # What is loaded by now (Django, the apps, their modules: ~200,000 objects) lives as long as
    # the process: out of the cyclic garbage collector's sight, and what the process holds later
    # (its sockets) frozen every GC_FREEZE_SECONDS, thawed and collected at quiet moments
    # (clarion/collector.py): its full passes stop the event loop.
    from clarion import collector  # noqa: E402

    collector.install(freeze_seconds=settings.GC_FREEZE_SECONDS,
                      thaw_seconds=settings.GC_THAW_SECONDS)
