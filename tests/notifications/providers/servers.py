"""A real HTTP server on 127.0.0.1 standing in for a provider's API.

Each test gives it `check(request) -> [problems]` (the provider's documented path, auth and body
fields) and `respond(request) -> Reply` (the provider's answer). A request with problems is
answered 400 with the problems, as a provider would refuse it, and recorded with them, so a test
asserts `server.problems == []`. `server.script(Reply(503), Reply(503))` answers the next requests
with these replies first (then `respond` again): failures, throttling, slow answers.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    problems: list[str] = field(default_factory=list)

    def json(self):
        return json.loads(self.body or b"null")

    def form(self) -> dict[str, str]:
        """An application/x-www-form-urlencoded body, one value per field."""
        return {k: v[-1] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}


@dataclass
class Reply:
    status: int = 200
    json: object = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a slow provider)


def _no_problems(request: Request) -> list[str]:
    return []


class ProviderServer:
    def __init__(self, check: Callable[[Request], list[str]] = _no_problems,
                 respond: Callable[[Request], Reply] | None = None):
        self.check = check
        self.respond = respond or (lambda request: Reply(200, json={}))
        self.requests: list[Request] = []
        # Client ports of the requests read and not yet answered (a kill test picks its victim).
        self.in_flight: set[int] = set()
        self._scripted: deque[Reply] = deque()
        self._lock = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:
                    # The client died mid-body (a killed worker): like a real provider, act on
                    # nothing and record nothing.
                    self.close_connection = True
                    return
                parts = urlsplit(self.path)
                request = Request(method=self.command, path=parts.path,
                                  query=parse_qs(parts.query, keep_blank_values=True),
                                  headers={k.lower(): v for k, v in self.headers.items()},
                                  body=body)
                server.in_flight.add(self.client_address[1])
                try:
                    self._answer(server._reply_for(request))
                finally:
                    server.in_flight.discard(self.client_address[1])

            def _answer(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                payload = reply.body
                headers = dict(reply.headers)
                if reply.json is not None:
                    payload = json.dumps(reply.json).encode()
                    headers.setdefault("Content-Type", "application/json")
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def problems(self) -> list[str]:
        return [problem for request in self.requests for problem in request.problems]

    def script(self, *replies: Reply) -> ProviderServer:
        with self._lock:
            self._scripted.extend(replies)
        return self

    def _reply_for(self, request: Request) -> Reply:
        request.problems = list(self.check(request))
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            if request.problems:
                return Reply(400, json={"error": "; ".join(request.problems)})
            if self._scripted:
                return self._scripted.popleft()
        return self.respond(request)

    def wait_for(self, count: int, timeout: float = 10) -> list[Request]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} request(s), got {len(self.requests)}")
                self._lock.wait(remaining)
            return list(self.requests)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
