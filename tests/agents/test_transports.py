"""The MCP server as agents reach it: `manage.py mcp` over stdio (a subprocess, as a desktop
client starts it), `manage.py mcp --transport http`, and /mcp of a served Clarion (daphne and a
qcluster), where a notify's email arrives on a real SMTP server and its in-app item in the feed."""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import httpx2
import pytest
from django.conf import settings
from mcp import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from notifications.models import Trigger
from notifications.services import api_key_create

from ..conftest import free_port, in_app_step
from ..e2e_support import served_database_url
from .conftest import call_tools

pytestmark = pytest.mark.django_db(transaction=True)
MANAGE = str(settings.BASE_DIR / "manage.py")


def _environment(tmp_path, **extra) -> dict:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("CLARION_", "EMAIL_")) and name != "DATABASE_URL"}
    env.update(DATABASE_URL=served_database_url(), CLARION_VAR_DIR=str(tmp_path),
               PYTHONUNBUFFERED="1", **extra)
    return env


def http_transport(url: str, secret: str):
    return streamable_http_client(url, http_client=httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {secret}"}, timeout=30))


def test_stdio_lists_and_triggers_with_the_key_from_the_environment(make_workflow, tmp_path):
    make_workflow("welcome", steps=[in_app_step()])
    api_key, secret = api_key_create(name="desktop agent")
    params = StdioServerParameters(command=sys.executable, args=[MANAGE, "mcp"],
                                   cwd=str(settings.BASE_DIR),
                                   env=_environment(tmp_path, CLARION_API_KEY=secret))
    listed, triggered = asyncio.run(call_tools(params, [
        ("list_workflows", {}),
        ("trigger_workflow", {"workflow": "welcome", "recipients": ["ada"]}),
    ]))
    assert [w["key"] for w in listed.result["workflows"]] == ["welcome"]
    trigger = Trigger.objects.get(pk=triggered.result["trigger_id"])
    assert trigger.api_key_id == api_key.pk


def test_stdio_takes_the_key_from_the_command_line_and_names_its_errors(make_workflow,
                                                                        tmp_path):
    _, secret = api_key_create(name="desktop agent")
    params = StdioServerParameters(command=sys.executable,
                                   args=[MANAGE, "mcp", "--api-key", secret],
                                   cwd=str(settings.BASE_DIR), env=_environment(tmp_path))
    [refused] = asyncio.run(call_tools(params, [("get_run", {"run_id": "nope"})]))
    assert refused.error["fields"] == {"run_id": ["Must be a valid UUID."]}


@pytest.mark.parametrize("arguments, message", [
    ([], "No API key: pass --api-key or set CLARION_API_KEY."),
    (["--api-key", "ck_nope"], "Invalid or revoked API key."),
])
def test_stdio_without_a_valid_key_exits_saying_why(transactional_db, tmp_path, arguments,
                                                    message):
    done = subprocess.run([sys.executable, MANAGE, "mcp", *arguments], cwd=settings.BASE_DIR,
                          env=_environment(tmp_path), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 1 and message in done.stderr and done.stdout == ""


@contextlib.contextmanager
def mcp_http_command(tmp_path):
    port = free_port()
    log = open(tmp_path / "mcp-http.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [sys.executable, MANAGE, "mcp", "--transport", "http", "--port", str(port)],
        cwd=settings.BASE_DIR, env=_environment(tmp_path), stdin=subprocess.DEVNULL,
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/mcp", timeout=2)
            except urllib.error.HTTPError:
                break  # it answers (401 without a key)
            except OSError:
                assert process.poll() is None, (tmp_path / "mcp-http.log").read_text()
                assert time.monotonic() < deadline, "manage.py mcp --transport http is silent"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_the_http_command_serves_the_tools_behind_the_api_key(make_workflow, tmp_path):
    make_workflow("welcome", steps=[in_app_step()])
    _, secret = api_key_create(name="remote agent")
    with mcp_http_command(tmp_path) as url:
        [listed] = asyncio.run(call_tools(http_transport(url, secret), [("list_workflows", {})]))
        assert [w["key"] for w in listed.result["workflows"]] == ["welcome"]
        for header in (None, "Bearer ck_nope", "Basic abc"):
            request = urllib.request.Request(url, data=b"{}", method="POST", headers={
                "Content-Type": "application/json", **({"Authorization": header}
                                                       if header else {})})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 401
            assert refused.value.headers["WWW-Authenticate"] == 'Bearer realm="clarion"'


def test_notify_over_http_at_mcp_of_the_served_product(serve, smtp_server):
    _, _, mailbox = smtp_server
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        secret = server.credentials()["api_key"]
        listed, notified = asyncio.run(call_tools(http_transport(f"{server.base_url}/mcp",
                                                                 secret), [
            ("list_workflows", {}),
            ("notify", {"recipient": "demo-user", "title": "Build green",
                        "body": "Main is deployable.", "urgency": "high"}),
        ]))
        assert "welcome" in [w["key"] for w in listed.result["workflows"]]
        assert not notified.is_error, notified
        [mail] = mailbox.wait_for(1, timeout=60)
        assert mail["Subject"] == "Build green"
        assert "Main is deployable." in mail.get_body(("plain",)).get_content()
        token = server.request("POST", "/api/v1/recipients/demo-user/inbox-token", {},
                               api_key=secret).json()["token"]
        feed = server.request("GET", "/api/v1/inbox/",
                              headers={"Authorization": f"Bearer {token}"}).json()
        assert feed["items"][0]["body"] == "Build green: Main is deployable."
        assert feed["items"][0]["workflow"] == "clarion-notify"
