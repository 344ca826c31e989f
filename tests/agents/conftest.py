"""Driving the MCP server with the `mcp` client library: in process (the server object), over
stdio (`manage.py mcp` as a subprocess) and over HTTP (/mcp of a served Clarion)."""

import asyncio
import json

import pytest
from mcp import Client

from notifications.agents.server import build_server


class McpCall:
    """One tool call's outcome: `error` (the refusal's body) or `result` (the tool's answer)."""

    def __init__(self, result):
        self.raw = result
        self.is_error = result.is_error
        text = result.content[0].text if result.content else ""
        self.error = json.loads(text) if result.is_error else None
        self.result = (result.structured_content if result.structured_content is not None
                       else json.loads(text)) if not result.is_error else None

    def __repr__(self):
        return f"<McpCall error={self.error!r} result={self.result!r}>"


async def call_tools(target, calls: list[tuple[str, dict]]) -> list[McpCall]:
    """Call each (tool, arguments) in order over one connection to `target` (a server object, a
    StdioServerParameters or an HTTP transport)."""
    async with Client(target) as client:
        return [McpCall(await client.call_tool(name, arguments)) for name, arguments in calls]


@pytest.fixture
def mcp_call(transactional_db):
    """mcp_call(api_key, tool, arguments) → McpCall, through an in-process server acting for
    the key (as over stdio). Tools run in the SDK's worker threads, with their own database
    connections: the test database is transactional so they see this test's rows."""

    def call(api_key, tool: str, arguments: dict | None = None) -> McpCall:
        server = build_server(api_key_id=api_key.pk if api_key is not None else None)
        return asyncio.run(call_tools(server, [(tool, arguments or {})]))[0]

    return call
