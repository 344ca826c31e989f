"""Real processes for the fault tests: a private Redis, a daphne web process, inbox websocket
clients that re-sync from the REST feed, and figures printed at the end of a test.

Nothing here touches the shared Redis or PostgreSQL servers: each test starts its own
`redis-server` on a free port (no persistence: a restart loses every key, as a crashed cache
would) and points the processes it starts at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import websockets
from django.conf import settings

from tests.conftest import free_port
from tests.processes import Service, process_env

__all__ = ["ClientFleet", "InboxClient", "RedisServer", "SilentServer", "WebProcess",
           "metric_value", "process_env", "wait"]


def wait(condition, what: str, timeout: float = 60, interval: float = 0.05) -> None:
    """Poll `condition()` until it is true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}")
        time.sleep(interval)


class RedisServer:
    """`redis-server` on 127.0.0.1:`port`, without persistence; stop() and start() again."""

    def __init__(self, log_path: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--daemonize", "no"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait(self.answers, f"redis-server on port {self.port}", timeout=20)

    def answers(self) -> bool:
        import redis

        try:
            return redis.Redis.from_url(self.url, socket_timeout=1).ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGKILL: the server vanishes as in a crash, with every key it held."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


class WebProcess(Service):
    """`daphne clarion.asgi:application` on a free port, with `env` (see process_env)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        super().__init__("daphne", [sys.executable, "-m", "daphne", "-b", "127.0.0.1",
                                    "-p", str(self.port), "clarion.asgi:application"],
                         env={**env, "CLARION_PROCESS": "web"}, log_path=log_path,
                         cwd=settings.BASE_DIR)
        try:
            wait(self._answers, f"daphne on port {self.port}", timeout=90, interval=0.2)
        except BaseException:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"daphne exited with {self.process.returncode}:\n"
                                 f"{self.log()}")
        try:
            urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def get_json(self, path: str, headers: dict[str, str]) -> dict:
        request = urllib.request.Request(self.base_url + path, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def get_text(self, path: str) -> str:
        with urllib.request.urlopen(self.base_url + path, timeout=30) as response:
            return response.read().decode()

    def stop(self, timeout: float = 15, sig: signal.Signals = signal.SIGTERM) -> int | None:
        return super().stop(timeout, sig)


def metric_value(exposition: str, name: str) -> float:
    """The value of sample `name` (no labels) in a Prometheus text exposition; 0 if absent."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


class InboxClient:
    """One recipient's inbox as the widget keeps it: a websocket that adds pushed items, and the
    REST feed it re-syncs from (`GET /api/v1/inbox/?before=<cursor>`, page after page) on every
    (re)connect and on a `resync` frame. A socket that closes is opened again (backoff 0.2 to
    2 s) until stop(). All in one asyncio task; the figures are attributes."""

    def __init__(self, base_url: str, recipient_id: str, hmac: str):
        self.base_url = base_url
        self.recipient_id = recipient_id
        self.headers = {"X-Clarion-Recipient": recipient_id, "X-Clarion-Hmac": hmac}
        self.ws_url = (base_url.replace("http://", "ws://")
                       + f"/ws/inbox/?recipient={recipient_id}&hmac={hmac}")
        self.items: dict[int, dict] = {}
        self.counts: dict = {}
        self.connects = 0
        self.closes: list[int | None] = []
        self.pushed = 0
        self.fetched = 0
        self.resync_frames = 0
        self.connected = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # An error the task ended with is reported by ClientFleet.failures().
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        import httpx

        backoff = 0.2
        async with httpx.AsyncClient(base_url=self.base_url, headers=self.headers,
                                     timeout=30) as http:
            while not self._stopping:
                try:
                    async with websockets.connect(self.ws_url, open_timeout=10) as socket:
                        first = json.loads(await socket.recv())
                        self.connects += 1
                        self._frame(first)
                        await self.resync(http, self.newest())
                        self.connected.set()
                        backoff = 0.2
                        async for raw in socket:
                            frame = json.loads(raw)
                            if frame["type"] == "resync":
                                self.resync_frames += 1
                                await self.resync(http, int(frame["before"]))
                            else:
                                self._frame(frame)
                except websockets.ConnectionClosed as closed:
                    self.closes.append(closed.rcvd.code if closed.rcvd else None)
                except (OSError, TimeoutError, httpx.HTTPError, websockets.WebSocketException):
                    # Refused, reset, a failed handshake (the web process's answer while the
                    # layer is down), a feed request that failed: try again, as the widget does.
                    self.closes.append(None)
                self.connected.clear()
                if self.closes and self.closes[-1] == 4401:
                    raise AssertionError(f"{self.recipient_id}: socket refused (4401)")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2)

    def _frame(self, frame: dict) -> None:
        if frame["type"] == "counts.changed":
            self.counts = frame["meta"]
        elif frame["type"] == "item.created":
            self.pushed += 1
            self.items[frame["item"]["id"]] = frame["item"]

    def newest(self) -> int:
        return max(self.items, default=0)

    async def resync(self, http, before: int) -> None:
        """Every item newer than `before` (an item id), oldest page first; then the counts."""
        while True:
            response = await http.get("/api/v1/inbox/", params={"before": before,
                                                                 "limit": 100})
            response.raise_for_status()
            page = response.json()
            for item in page["items"]:
                self.fetched += 1
                self.items[item["id"]] = item
            self.counts = page["meta"]
            if not page["items"]:
                return
            before = int(page["page_info"]["before"])


class ClientFleet:
    """InboxClients on an event loop of their own thread, so the test drives the database and
    the processes from its own (synchronous) thread meanwhile."""

    def __init__(self, clients: list[InboxClient]):
        import threading

        self.clients = clients
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="inbox-clients",
                                        daemon=True)
        self._thread.start()
        for client in clients:
            self.loop.call_soon_threadsafe(client.start)

    def connected(self) -> int:
        return sum(client.connected.is_set() for client in self.clients)

    def failures(self) -> list[str]:
        """The clients whose task ended with an error (e.g. their socket refused with 4401)."""
        return [f"{client.recipient_id}: {client._task.exception()!r}"
                for client in self.clients
                if client._task is not None and client._task.done()
                and not client._task.cancelled() and client._task.exception()]

    def stop(self) -> None:
        async def stop_all():
            await asyncio.gather(*(client.stop() for client in self.clients))

        asyncio.run_coroutine_threadsafe(stop_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers (nor closes):
    a provider hung behind its load balancer. `accepted` counts the connections."""

    def __init__(self):
        import socket
        import threading

        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.accepted = 0
        self._held: list = []
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._listener.accept()
                self.accepted += 1
                self._held.append(connection)  # held open, never read, never answered

    def stop(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()
