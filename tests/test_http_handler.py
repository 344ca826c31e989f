"""clarion/http.py: the web process's Django handler runs a request's middleware chain and view
in one synchronous call on a kept thread, and answers as Django's own ASGIHandler does.

Requests go through the ASGI callables themselves with the scope an ASGI server builds (Django's
test clients bring their own handler)."""

import asyncio
import json
import threading
import time

import pytest
from asgiref.sync import iscoroutinefunction
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import include, path

from clarion.http import SyncChainASGIHandler

from .conftest import in_app_step

seen: dict[str, list] = {}
barrier: list[threading.Barrier] = []


def _note(what: str) -> None:
    seen.setdefault(what, []).append(threading.get_ident())


def thread_view(request):
    _note("view")
    return JsonResponse({"ok": True})


def waiting_view(request):
    # Answers only once three requests are in their views at the same time.
    barrier[0].wait()
    return HttpResponse("met")


running = {"now": 0, "most": 0}
running_lock = threading.Lock()


def counting_view(request, seconds: float = 0.05):
    # Notes how many requests are in their views at once, staying a moment in its own.
    with running_lock:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
    time.sleep(seconds)
    with running_lock:
        running["now"] -= 1
    return HttpResponse("counted")


def failing_view(request):
    raise RuntimeError("a bug in a view")


def streaming_view(request):
    async def parts():
        for i in range(3):
            yield f"part {i}\n"

    return StreamingHttpResponse(parts())


urlpatterns = [
    path("t/thread", thread_view),
    path("t/wait", waiting_view),
    path("t/count", counting_view),
    path("t/fail", failing_view),
    path("t/stream", streaming_view),
    path("", include("clarion.urls")),  # its middleware reverses the admin's URLs
]


def scope_of(method: str, route: str, headers: dict | None = None) -> dict:
    """The scope uvicorn builds for a request (no query string)."""
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": route, "raw_path": route.encode(),
            "query_string": b"", "root_path": "",
            "headers": [(name.lower().encode(), value.encode())
                        for name, value in (headers or {}).items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}


async def call(app, method: str, route: str, *, body: bytes = b"",
               headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One request through the ASGI callable `app`: (status, headers, body)."""
    sent, incoming = [], [{"type": "http.request", "body": body, "more_body": False}]
    never = asyncio.Event()

    async def receive():
        if incoming:
            return incoming.pop()
        await never.wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    headers = {**(headers or {}), "Content-Length": str(len(body))} if body else headers
    await app(scope_of(method, route, headers), receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    return (start["status"], {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(message.get("body", b"") for message in sent[1:]))


@pytest.fixture
def noted():
    seen.clear()

    def started(**kwargs):
        _note("started")

    def finished(**kwargs):
        _note("finished")

    request_started.connect(started)
    request_finished.connect(finished)
    yield seen
    request_started.disconnect(started)
    request_finished.disconnect(finished)


@override_settings(ROOT_URLCONF=__name__)
def test_the_chain_and_view_run_on_one_kept_thread_not_a_new_one_per_request(noted):
    handler = SyncChainASGIHandler()
    assert not iscoroutinefunction(handler._middleware_chain)  # built in sync mode, as WSGI

    async def two_requests():
        loop_thread = threading.get_ident()
        first = await call(handler, "GET", "/t/thread")
        second = await call(handler, "GET", "/t/thread")
        return loop_thread, first, second

    loop_thread, first, second = asyncio.run(two_requests())
    assert first[0] == second[0] == 200 and json.loads(first[2]) == {"ok": True}
    # The signals and the view of both requests on one thread, not the event loop's: Django's
    # ASGIHandler makes a thread per request, so its two requests would show two.
    threads = {*noted["started"], *noted["view"], *noted["finished"]}
    assert len(noted["view"]) == 2 and len(threads) == 1
    assert loop_thread not in threads


@override_settings(ROOT_URLCONF=__name__)
def test_concurrent_requests_each_have_a_thread_and_only_keep_threads_are_kept():
    handler = SyncChainASGIHandler(keep_threads=2)
    barrier[:] = [threading.Barrier(3, timeout=10)]

    async def three_at_once():
        return await asyncio.gather(*(call(handler, "GET", "/t/wait") for _ in range(3)))

    # On one shared thread the first view would wait for the others forever (the barrier
    # breaks after 10 s and the views fail).
    answers = asyncio.run(three_at_once())
    assert [(status, body) for status, _, body in answers] == [(200, b"met")] * 3
    assert len(handler._idle) == 2


@override_settings(ROOT_URLCONF=__name__)
def test_threads_bounds_the_requests_in_django_at_once_in_every_event_loop():
    handler = SyncChainASGIHandler(threads=2)

    async def six_at_once():
        return await asyncio.gather(*(call(handler, "GET", "/t/count") for _ in range(6)))

    for _ in range(2):  # a second loop gets its own turns (a semaphore belongs to one loop)
        running.update(now=0, most=0)
        answers = asyncio.run(six_at_once())
        assert [(status, body) for status, _, body in answers] == [(200, b"counted")] * 6
        assert running["most"] == 2
    # Unbounded (threads=0): all six in their views together.
    handler, running["most"] = SyncChainASGIHandler(), 0
    asyncio.run(six_at_once())
    assert running["most"] > 2


def slow_counting_view(request):
    # As counting_view, but long enough for its client to leave while it runs.
    return counting_view(request, seconds=0.3)


urlpatterns.append(path("t/slow", slow_counting_view))


@override_settings(ROOT_URLCONF=__name__)
def test_a_request_whose_client_left_keeps_its_turn_until_its_view_ends():
    """With threads=1, a client that disconnects while its view runs does not free the turn:
    the next request waits until that view has ended (its thread is still busy)."""
    handler = SyncChainASGIHandler(threads=1)

    async def leaving(route):
        gone = asyncio.Event()

        async def receive():
            if not gone.is_set():
                gone.set()
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(0.05)
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        await handler(scope_of("GET", route), receive, send)

    async def both():
        first = asyncio.create_task(leaving("/t/slow"))
        await asyncio.sleep(0.1)  # the first client has left; its view runs on
        answer = await call(handler, "GET", "/t/count")
        await first
        return answer

    running.update(now=0, most=0)
    status, _, body = asyncio.run(both())
    assert (status, body) == (200, b"counted")
    assert running["most"] == 1


def test_the_web_process_handler_is_bounded_by_the_setting():
    from django.conf import settings

    from clarion.asgi import django_asgi_app

    assert django_asgi_app.threads == settings.WEB_THREADS == 0  # a thread per request


@override_settings(ROOT_URLCONF=__name__)
def test_errors_and_streams_are_answered_as_djangos_handler_answers_them():
    ours, django_own = SyncChainASGIHandler(), ASGIHandler()
    for route in ("/t/fail", "/t/missing", "/t/stream"):
        mine, theirs = (asyncio.run(call(app, "GET", route)) for app in (ours, django_own))
        assert (mine[0], mine[2]) == (theirs[0], theirs[2]), route
    assert asyncio.run(call(ours, "GET", "/t/stream"))[2] == b"part 0\npart 1\npart 2\n"
    assert asyncio.run(call(ours, "GET", "/t/fail"))[0] == 500


@pytest.mark.django_db(transaction=True)
def test_api_answers_match_djangos_handler(api_key, make_workflow):
    # A trigger, its replay, a 400 body, a 401 and a 404 through the project's middleware.
    make_workflow("ping", steps=[in_app_step(body="Hi {{ recipient.name }}")])
    ours, django_own = SyncChainASGIHandler(), ASGIHandler()
    auth = {"Authorization": f"Bearer {api_key[1]}", "Content-Type": "application/json"}
    trigger = "/api/v1/workflows/ping/trigger"
    for name, app in (("ours", ours), ("django", django_own)):
        key = {**auth, "Idempotency-Key": f"key-{name}"}
        body = json.dumps({"recipients": [f"user-{name}"]}).encode()
        status, headers, first = asyncio.run(call(app, "POST", trigger, body=body, headers=key))
        assert status == 202 and "Idempotent-Replayed" not in headers, first
        status, headers, again = asyncio.run(call(app, "POST", trigger, body=body, headers=key))
        assert (status, headers.get("Idempotent-Replayed")) == (202, "true")
        assert json.loads(again) == json.loads(first)
    for method, route, headers, body in [
        ("POST", trigger, auth, b'{"recipients": "nobody"}'),
        ("POST", trigger, {"Content-Type": "application/json"}, b'{"recipients": ["a"]}'),
        ("GET", "/api/v1/workflows/nothing-here", auth, b""),
        ("GET", "/healthz", {}, b""),
    ]:
        mine, theirs = (asyncio.run(call(app, method, route, body=body, headers=headers))
                        for app in (ours, django_own))
        assert (mine[0], mine[2]) == (theirs[0], theirs[2]), route
        assert mine[0] in (200, 400, 401, 404)


@override_settings(ROOT_URLCONF=__name__)
def test_a_response_is_closed_before_it_is_sent_unless_it_streams():
    # request_finished (the database connection back to the pool) runs in the request's one
    # thread call for a response made whole; a streamed one is closed once it was sent.
    handler, events = SyncChainASGIHandler(), []

    def finished(**kwargs):
        events.append("finished")

    async def run(route):
        events.clear()
        never = asyncio.Event()
        incoming = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive():
            if incoming:
                return incoming.pop()
            await never.wait()

        async def send(message):
            events.append(message["type"] + ("+more" if message.get("more_body") else ""))

        await handler(scope_of("GET", route), receive, send)
        return list(events)

    request_finished.connect(finished)
    try:
        whole, streamed = asyncio.run(run("/t/thread")), asyncio.run(run("/t/stream"))
    finally:
        request_finished.disconnect(finished)
    assert whole == ["finished", "http.response.start", "http.response.body"]
    assert streamed[0] == "http.response.start" and streamed[-2:] == [
        "http.response.body", "finished"]
