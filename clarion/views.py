"""Project-level endpoints: the home page (`/`), the favicon, health (`/healthz`), readiness
(`/readyz`); `/metrics` is in clarion/metrics.py."""

from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connections
from django.http import HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import render
from django.templatetags.static import static

# How long a readiness check waits for Redis before calling it down, in seconds.
REDIS_TIMEOUT = 2.0


def home(request):
    """GET /: where a newcomer who opens the server's address goes next (admin, API reference,
    the inbox demo when it is on, readiness). HTML; no data, no login."""
    return render(request, "clarion/home.html", {"demo": settings.INBOX_DEMO_PAGE})


def favicon(request):
    """GET /favicon.ico, which browsers ask for on every page without a <link rel=icon>: a
    permanent redirect to the SVG icon among the static files."""
    return HttpResponsePermanentRedirect(static("clarion/favicon.svg"))


def health(request):
    """200 when this process can reach its database; for load balancers and orchestrators."""
    problem = _database_problem()
    if problem:
        return JsonResponse({"status": "unavailable", "detail": problem}, status=503)
    return JsonResponse({"status": "ok"})


def ready(request):
    """GET /readyz: 200 `{"status": "ok", "checks": {...: "ok"}}` when the database, the task
    queue's broker and the channel layer all answer; else 503 with `"status": "unavailable"`,
    `"down": [names]` and each failing check's error in `checks`."""
    checks = {
        "database": _database_problem(),
        "broker": _broker_problem(),
        "channel_layer": _channel_layer_problem(),
    }
    down = [name for name, problem in checks.items() if problem]
    body = {"status": "unavailable" if down else "ok",
            "checks": {name: problem or "ok" for name, problem in checks.items()}}
    if down:
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)


def _database_problem(alias: str = "default") -> str | None:
    try:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return str(exc)[:200] or type(exc).__name__
    return None


def _redis_problem(url: str) -> str | None:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                      socket_timeout=REDIS_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        return str(exc)[:200] or type(exc).__name__
    return None


def _broker_problem() -> str | None:
    if settings.QUEUE_BROKER == "redis":
        return _redis_problem(settings.REDIS_URL)
    return _database_problem(settings.Q_CLUSTER.get("orm", "default"))


def _channel_layer_problem() -> str | None:
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if "redis" not in layer.get("BACKEND", "").lower():
        return None  # the in-memory layer lives in this process
    for host in layer.get("CONFIG", {}).get("hosts", []):
        address = host.get("address") if isinstance(host, dict) else host
        if isinstance(address, (list, tuple)):
            address = f"redis://{address[0]}:{address[1]}"
        if not urlsplit(str(address)).scheme:
            address = f"redis://{address}"
        problem = _redis_problem(str(address))
        if problem:
            return problem
    return None
