"""The MCP server (Model Context Protocol): Clarion's tools for AI agents.

`tools` holds what each tool does, as plain functions of an API key and the tool's arguments,
reusing the REST API's serializers and services so an agent's input is validated as a REST call's
is; `server` declares them to the official `mcp` package (names, descriptions, input schemas,
resources); `http` serves them over streamable HTTP behind `Authorization: Bearer <api key>`,
mounted at /mcp by clarion/asgi.py; `manage.py mcp` serves them over stdio or HTTP.
"""
