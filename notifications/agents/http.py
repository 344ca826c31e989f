"""The MCP server over streamable HTTP, as an ASGI app behind `Authorization: Bearer <api key>`.

clarion/asgi.py mounts it at /mcp; `manage.py mcp --transport http` serves it alone. Each request
is authenticated on its own (a revoked key is refused at once) and the key's id is put in the
request's scope, where the tools read it. The server is stateless (no MCP session kept between
requests, JSON answers), so any web process behind a load balancer answers any request.
"""

import asyncio
import json

from asgiref.sync import sync_to_async
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.transport_security import TransportSecuritySettings

from ..services import api_key_authenticate
from .server import SCOPE_API_KEY, build_server

MCP_PATH = "/mcp"


def _authenticate(secret: str):
    from django.db import close_old_connections

    close_old_connections()
    try:
        return api_key_authenticate(secret=secret)
    finally:
        close_old_connections()


class McpApp:
    """ASGI app: MCP over streamable HTTP at MCP_PATH, API key required.

    The SDK's session manager needs a running task group; it is started on the first request
    (daphne, which serves clarion/asgi.py, has no ASGI lifespan) or at lifespan startup where
    the server has one (uvicorn), and lives as long as the process.
    """

    def __init__(self):
        self.server = build_server()
        # Authentication is the API key (a browser cannot add one to a rebinding attack), and
        # Django's ALLOWED_HOSTS does not reach here: no Host/Origin allow-list of the SDK's.
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH, stateless_http=True, json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
        self.session_manager = self.server.session_manager
        self._started: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    async def _start(self) -> None:
        if self._started is None:
            self._started, self._stop = asyncio.Event(), asyncio.Event()

            async def run() -> None:
                async with self.session_manager.run():
                    self._started.set()
                    await self._stop.wait()

            self._task = asyncio.get_running_loop().create_task(run())
        await self._started.wait()

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self._start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._stop is not None:
                    self._stop.set()
                    await self._task
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http" or scope["path"].rstrip("/") != MCP_PATH:
            await _json(send, 404, {"error": "not_found",
                                    "detail": f"The MCP endpoint is {MCP_PATH}."})
            return
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            await _json(send, 401, {"error": "unauthorized",
                                    "detail": "Expected 'Authorization: Bearer <api key>'."})
            return
        api_key = await sync_to_async(_authenticate)(secret.strip())
        if api_key is None:
            await _json(send, 401, {"error": "unauthorized",
                                    "detail": "Invalid or revoked API key."})
            return
        await self._start()
        principal = f"clarion-api-key:{api_key.pk}"
        scope = {**scope, SCOPE_API_KEY: api_key.pk,
                 "user": AuthenticatedUser(AccessToken(token=principal, client_id=principal,
                                                       scopes=list(api_key.scopes or [])))}
        await self.session_manager.handle_request(scope, receive, send)


async def _json(send, status: int, body: dict) -> None:
    headers = [(b"content-type", b"application/json")]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="clarion"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
