"""Clarion: project settings, URLs, the ASGI entry and the embedded `serve` command."""
