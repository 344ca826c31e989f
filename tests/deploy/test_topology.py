"""The production topology of docs/deploy.md, run for real: PostgreSQL, Redis (the channel layer,
and in one case the queue broker too), two web processes (uvicorn) and two `manage.py qcluster`
processes on 127.0.0.1, all with the production environment (DEBUG off, secrets from the
environment, HTTPS behind a load balancer), started from the Procfile.

A recipient's websocket held on web A receives the inbox item a worker wrote for a trigger sent
to web B (the item crosses processes through Redis, never through a shared memory); web A serves
static files (WhiteNoise) with DEBUG off. PostgreSQL and Redis: the suite runs it when
DATABASE_URL names PostgreSQL and REDIS_URL is set (CI sets both).
"""

import asyncio
import hashlib
import hmac
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
import redis
import websockets
from django.db import connection  # noqa: F401  (the skipif condition reads it)

from notifications.services import api_key_create
from tests.e2e_support import served_database_url

from .support import (
    ROOT,
    production_env,
    qcluster,
    request,
    wait_for,
    wait_until_ready,
    web,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql' or not os.environ.get('REDIS_URL')",
                       reason="the production topology needs PostgreSQL and Redis"),
]

# Bounds: four processes start (their Python startup is most of the test; on a 2-core machine
# shared with other work it can take 40 s), then the scenario runs.
STARTUP_SECONDS = 60
SCENARIO_SECONDS = 30
RECIPIENT = "ada/ops"  # a recipient id that needs percent-encoding in a path


async def next_frame(socket, frame_type: str, timeout: float) -> dict:
    """The next frame of `frame_type` (others are skipped); TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(
            socket.recv(), max(deadline - time.monotonic(), 0.01)))
        if frame["type"] == frame_type:
            return frame


def clear_redis_queue(redis_url: str) -> None:
    """Drop tasks a crashed earlier run left in the Redis broker's list (django-q2's key for
    the cluster "clarion"), so no worker here picks up tasks of another test's rows."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete("django_q:clarion:q")
    finally:
        client.close()


# The suite runs the default ORM broker; `make chaos` the Redis broker too (the same processes).
@pytest.mark.parametrize("broker", ["orm", pytest.param("redis", marks=pytest.mark.chaos)])
def test_a_socket_on_web_a_receives_the_item_of_a_trigger_sent_to_web_b(
        tmp_path, services, broker):
    started = time.monotonic()
    redis_url = os.environ["REDIS_URL"]
    if broker == "redis":
        clear_redis_queue(redis_url)
    env = production_env(database_url=served_database_url(), redis_url=redis_url,
                         var_dir=tmp_path / "var", QUEUE_BROKER=broker, QUEUE_WORKERS="2")
    workers = [qcluster(f"qcluster-{n}", env=env, log_dir=tmp_path) for n in (1, 2)]
    services.extend(workers)
    web_a, port_a = web("web-a", env=env, log_dir=tmp_path)
    web_b, port_b = web("web-b", env=env, log_dir=tmp_path)
    services.extend([web_a, web_b])
    _, secret = api_key_create(name="deploy")
    wait_until_ready({port_a: web_a, port_b: web_b}, timeout=STARTUP_SECONDS)
    for worker in workers:
        wait_for(lambda worker=worker: worker.alive() and "ready for work" in worker.log(),
                 f"{worker.name} to start its workers", timeout=STARTUP_SECONDS)
    ready_at = time.monotonic()

    auth = {"Authorization": f"Bearer {secret}"}
    workflow = request(port_b, "PUT", "/api/v1/workflows/deploy-check", {
        "name": "Deploy check",
        "steps": [{"ref": "inbox", "type": "in_app",
                   "templates": {"en": {"body": "Hello {{ recipient.name }}, {{ data.n }}"}}}],
    }, headers=auth)
    assert workflow.status == 201, workflow
    person = request(port_a, "PUT", f"/api/v1/recipients/{quote(RECIPIENT, safe='')}",
                     {"name": "Ada"}, headers=auth)
    assert person.status in (200, 201), person

    signature = hmac.new(env["INBOX_HMAC_SECRET"].encode(), RECIPIENT.encode(),
                         hashlib.sha256).hexdigest()
    query = f"recipient={quote(RECIPIENT, safe='')}&hmac={signature}"

    async def scenario():
        async with websockets.connect(f"ws://127.0.0.1:{port_a}/ws/inbox/?{query}") as on_a, \
                websockets.connect(f"ws://127.0.0.1:{port_b}/ws/inbox/?{query}") as on_b:
            hello = await next_frame(on_a, "counts.changed", 10)
            await next_frame(on_b, "counts.changed", 10)
            # The client offered permessage-deflate (as browsers do); the Procfile declines it.
            assert on_a.protocol.extensions == [] and on_b.protocol.extensions == []
            triggered = await asyncio.to_thread(
                request, port_b, "POST", "/api/v1/workflows/deploy-check/trigger",
                {"recipients": [RECIPIENT], "data": {"n": 42}}, headers=auth)
            assert triggered.status == 202, triggered
            accepted = time.monotonic()
            created = await next_frame(on_a, "item.created", 20)
            latency = time.monotonic() - accepted
            counts = await next_frame(on_a, "counts.changed", 5)
            on_b_too = await next_frame(on_b, "item.created", 5)
            return hello, triggered.json(), created, counts, on_b_too, latency

    hello, triggered, created, counts, on_b_too, latency = asyncio.run(scenario())
    assert created["item"]["body"] == "Hello Ada, 42"
    assert created["item"]["workflow"] == "deploy-check"
    assert on_b_too["item"] == created["item"]
    assert counts["meta"]["unread_count"] == hello["meta"]["unread_count"] + 1
    run = request(port_a, "GET", f"/api/v1/runs/{triggered['runs'][0]['id']}", headers=auth)
    assert run.status == 200 and run.json()["status"] == "completed", run

    assert_static_files_served(port_a)
    assert_production_answers(port_a)
    for worker in workers:
        assert worker.alive(), worker.log()[-3000:]
    elapsed = time.monotonic() - ready_at
    print(f"\n{broker} broker: processes ready in {ready_at - started:.1f} s; trigger 202 on B → "
          f"item.created on A in {latency * 1000:.0f} ms; checks done {elapsed:.1f} s later")
    assert elapsed < SCENARIO_SECONDS


def assert_static_files_served(port: int) -> None:
    """The admin's CSS and the widget's JS, byte for byte, from the web process (WhiteNoise:
    with DEBUG off Django itself serves no static file)."""
    with ThreadPoolExecutor(2) as pool:
        widget, admin_css = pool.map(lambda path: request(port, "GET", path), (
            "/static/clarion/inbox.js", "/static/admin/css/base.css"))
    assert widget.status == 200, widget
    assert widget.body == (ROOT / "static/clarion/inbox.js").read_bytes()
    assert widget.headers["content-type"].startswith("text/javascript")
    assert "max-age" in widget.headers.get("cache-control", ""), widget.headers
    assert admin_css.status == 200, admin_css
    assert admin_css.headers["content-type"].startswith("text/css")
    assert b"body" in admin_css.body


def assert_production_answers(port: int) -> None:
    """DEBUG is off (a 404 is the plain JSON/HTML answer, not Django's debug page), HSTS is on,
    and plain HTTP through the load balancer is redirected to HTTPS."""
    missing = request(port, "GET", "/no-such-page/")
    assert missing.status == 404, missing
    assert b"URLconf" not in missing.body and b"DEBUG = True" not in missing.body
    healthy = request(port, "GET", "/healthz")
    assert healthy.status == 200, healthy
    assert healthy.headers["strict-transport-security"] == \
        "max-age=31536000; includeSubDomains; preload"
    plain = request(port, "GET", "/healthz", headers={"X-Forwarded-Proto": "http"})
    assert plain.status == 301 and plain.headers["location"] == \
        "https://clarion.example.com/healthz", plain
