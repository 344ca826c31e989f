"""Fixtures for provider tests: real HTTP servers on 127.0.0.1 and ProviderConfig rows."""

import pytest

from notifications.models import ProviderConfig

from .servers import ProviderServer


@pytest.fixture
def provider_server():
    """provider_server(check, respond) -> a started ProviderServer, stopped after the test."""
    servers = []

    def start(check=None, respond=None) -> ProviderServer:
        kwargs = {}
        if check is not None:
            kwargs["check"] = check
        if respond is not None:
            kwargs["respond"] = respond
        server = ProviderServer(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def provider_config(db):
    """provider_config(key, channel, kind, credentials, **fields) -> a saved ProviderConfig."""

    def make(key, channel, kind, credentials=None, **fields) -> ProviderConfig:
        config = ProviderConfig(key=key, channel=channel, kind=kind, **fields)
        config.credentials = credentials or {}
        config.save()
        return config

    return make
