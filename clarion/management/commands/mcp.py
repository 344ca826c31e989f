"""`python manage.py mcp`: Clarion's MCP server for AI agents (notifications/agents/), over stdio
(a desktop client starts it) or streamable HTTP. Over stdio it acts for the API key given by
--api-key or the CLARION_API_KEY environment variable; over HTTP each request brings its own
(`Authorization: Bearer`), as at /mcp of the web server."""

import os

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Run the MCP server (tools for AI agents) over stdio or streamable HTTP."

    def add_arguments(self, parser):
        parser.add_argument("--transport", choices=["stdio", "http"], default="stdio")
        parser.add_argument("--api-key", default=None,
                            help="stdio: the API key tool calls act for (default: the "
                                 "CLARION_API_KEY environment variable).")
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"),
                            help="http: the address to listen on.")
        parser.add_argument("--port", type=int, default=8001, help="http: the port.")

    def handle(self, *args, transport, api_key, host, port, **options):
        if transport == "http":
            import uvicorn

            from notifications.agents.http import McpApp

            self.stderr.write(f"Clarion's MCP server: http://{host}:{port}/mcp")
            uvicorn.run(McpApp(), host=host, port=port, lifespan="on", log_level="warning")
            return
        from notifications.agents.server import build_server
        from notifications.services import api_key_authenticate

        secret = (api_key or os.environ.get("CLARION_API_KEY") or "").strip()
        if not secret:
            raise CommandError("No API key: pass --api-key or set CLARION_API_KEY.")
        key = api_key_authenticate(secret=secret)
        if key is None:
            raise CommandError("Invalid or revoked API key.")
        # stdout carries the protocol: nothing else may be written to it.
        build_server(api_key_id=key.pk).run("stdio")
