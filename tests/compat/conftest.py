"""The official Knock and Novu SDKs, unchanged, pointed at a live Clarion on 127.0.0.1."""

import knockapi
import novu_py
import pytest

from notifications.services import api_key_create

from ..conftest import email_step


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", steps=[email_step()], category="account")


@pytest.fixture
def server_url(live_server) -> str:
    """pytest-django's live server (a thread of this process, on the test database), by its
    loopback address."""
    return live_server.url.replace("://localhost:", "://127.0.0.1:")


@pytest.fixture
def knock(server_url, api_key):
    """knockapi.Knock with base_url …/knock and a Clarion API key; no retries, so an error is
    seen at once (the SDK retries 409, 429 and 5xx by default)."""
    with knockapi.Knock(api_key=api_key[1], base_url=f"{server_url}/knock/",
                        max_retries=0) as client:
        yield client


@pytest.fixture
def knock_for(server_url):
    def make(secret: str) -> knockapi.Knock:
        return knockapi.Knock(api_key=secret, base_url=f"{server_url}/knock/", max_retries=0)

    return make


@pytest.fixture
def novu(server_url, api_key):
    """novu_py.Novu with server_url …/novu and a Clarion API key; retries off (by default the
    SDK retries 408, 409, 429 and 5xx for up to an hour)."""
    with novu_py.Novu(secret_key=api_key[1], server_url=f"{server_url}/novu/",
                      retry_config=None) as client:
        yield client


@pytest.fixture
def novu_for(server_url):
    def make(secret: str) -> novu_py.Novu:
        return novu_py.Novu(secret_key=secret, server_url=f"{server_url}/novu/", retry_config=None)

    return make


@pytest.fixture
def acme_key(acme):
    return api_key_create(name="acme only", tenant=acme)[1]
