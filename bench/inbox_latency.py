"""Trigger to websocket frame: how long an in-app notification takes to reach an open socket.

Runs the product as `manage.py serve` does (daphne + a qcluster, separate processes), connects
one websocket per recipient (`websockets`), then sends triggers of the in-app-only
`comment-mentioned` workflow round-robin over those recipients at a steady rate, and measures, per
trigger, from its HTTP 202 to the `item.created` frame on the recipient's socket. Two modes:

- redis:    PostgreSQL + REDIS_URL (channels-redis; the worker publishes after commit);
- redis-broker: the same with QUEUE_BROKER=redis (django-q2 on Redis instead of the ORM broker);
- embedded: SQLite in a temporary directory, no servers (the web process's database bridge
            polls every INBOX_POLL_SECONDS).

The floor printed beside each mode is the same socket's ping → pong round trip (the transport
and the web process alone). Goal with Redis: p50 ≤ 100 ms, p99 ≤ 300 ms.

Usage: .venv/bin/python bench/inbox_latency.py [--triggers 500] [--recipients 50] [--rate 10]
                                               [--modes redis,embedded]
DATABASE_URL (redis mode) defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_latency,
REDIS_URL to redis://127.0.0.1:6379/3.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds websockets.py (a benchmark): `import websockets` must find the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
import websockets  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))

from trigger import ensure_database  # noqa: E402

PG_URL = os.environ.get("DATABASE_URL",
                        "postgres://postgres@127.0.0.1:5432/clarion_bench_latency")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """`manage.py serve` in its own process group, stopped with everything it started."""

    def __init__(self, env: dict, var_dir: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.var_dir = Path(var_dir)
        self.log = open(self.var_dir / "serve.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def wait(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"serve exited: see {self.log.name}")
            try:
                urllib.request.urlopen(f"{self.base}/healthz", timeout=2).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        sys.exit("serve did not start")

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGINT)
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()

    def api_key(self) -> str:
        return json.loads((self.var_dir / "demo-credentials.json").read_text())["api_key"]

    def request(self, method: str, path: str, body=None, api_key: str | None = None):
        req = urllib.request.Request(
            self.base + path, method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


async def run_mode(server: Served, args) -> tuple[list[float], list[float]]:
    key = server.api_key()
    recipients = [f"bench-lat-{i}" for i in range(args.recipients)]
    tokens = {}
    for rid in recipients:
        await asyncio.to_thread(server.request, "PUT", f"/api/v1/recipients/{rid}",
                                {"name": rid}, key)
        _, body = await asyncio.to_thread(server.request, "POST",
                                          f"/api/v1/recipients/{rid}/inbox-token", {}, key)
        tokens[rid] = body["token"]
    arrived: dict[int, float] = {}
    written: dict[int, float] = {}  # seq → the item's created_at, as wall-clock seconds
    pongs: list[float] = []
    pattern = re.compile(r"seq-(\d+)-")
    sockets = []
    for rid in recipients:
        ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/ws/inbox/?token="
                                      f"{tokens[rid]}", max_queue=None)
        json.loads(await ws.recv())  # counts
        sockets.append(ws)
    ping_sent: dict[int, float] = {}

    async def reader(ws):
        async for raw in ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame["type"] == "item.created":
                match = pattern.search(frame["item"]["body"])
                if match:
                    arrived[int(match.group(1))] = now
                    created = datetime.fromisoformat(frame["item"]["created_at"])
                    written[int(match.group(1))] = created.timestamp() - time.time() + now
            elif frame["type"] == "pong" and ws in ping_sent:
                pongs.append((now - ping_sent.pop(ws)) * 1000)

    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    # The floor: ping → pong on the same sockets.
    for i in range(min(200, args.triggers)):
        ws = sockets[i % len(sockets)]
        ping_sent[ws] = time.perf_counter()
        await ws.send('{"type": "ping"}')
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)

    accepted: dict[int, float] = {}

    async def trigger(seq: int) -> None:
        rid = recipients[seq % len(recipients)]
        status, _ = await asyncio.to_thread(
            server.request, "POST", "/api/v1/workflows/comment-mentioned/trigger",
            {"recipients": [rid], "data": {"excerpt": f"seq-{seq}-", "url": "/x"}}, key)
        assert status == 202
        accepted[seq] = time.perf_counter()

    tasks = []
    for seq in range(args.triggers):
        tasks.append(asyncio.create_task(trigger(seq)))
        await asyncio.sleep(1 / args.rate)
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + 30
    while len(arrived) < args.triggers and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    missing = args.triggers - len(arrived)
    if missing:
        print(f"  {missing} of {args.triggers} items did not arrive within 30 s")
    # A frame can beat the 202 home (the worker is fast, the HTTP response still in flight): 0.
    latencies = [max(arrived[s] - accepted[s], 0) * 1000 for s in accepted if s in arrived]
    # The two halves: 202 → the row written by the worker (queue + engine), and that row → the
    # frame (commit, publish or bridge poll, consumer).
    queue = [max(written[s] - accepted[s], 0) * 1000 for s in accepted if s in written]
    push = [max(arrived[s] - written[s], 0) * 1000 for s in accepted if s in written]
    return latencies, pongs, queue, push


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--triggers", type=int, default=500)
    parser.add_argument("--recipients", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10, help="triggers per second")
    parser.add_argument("--modes", default="redis,embedded")
    args = parser.parse_args()
    print(f"Clarion inbox latency benchmark: {args.triggers} triggers at {args.rate:g}/s over "
          f"{args.recipients} connected recipients; trigger 202 → item.created frame")
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "QUEUE_BROKER", "INBOX_REALTIME",
                             "PORT", "CLARION_VAR_DIR")}
    base_env["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    base_env["LOG_LEVEL"] = "WARNING"
    for mode in args.modes.split(","):
        var_dir = tempfile.mkdtemp(prefix=f"clarion-latency-{mode}-")
        env = dict(base_env, CLARION_VAR_DIR=var_dir)
        if mode == "redis":
            ensure_database(PG_URL)
            env.update(DATABASE_URL=PG_URL, REDIS_URL=REDIS_URL)
            label = "redis (PostgreSQL + channels-redis; django-q2 ORM broker)"
        elif mode == "redis-broker":
            ensure_database(PG_URL)
            env.update(DATABASE_URL=PG_URL, REDIS_URL=REDIS_URL, QUEUE_BROKER="redis")
            label = "redis-broker (PostgreSQL + channels-redis; django-q2 Redis broker)"
        else:
            label = "embedded (SQLite, database bridge)"
        server = Served(env, var_dir)
        try:
            server.wait()
            latencies, pongs, queue, push = asyncio.run(run_mode(server, args))
        finally:
            server.stop()
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        f50, f99 = statistics.median(pongs), percentile(pongs, 0.99)
        print(f"\n== {label}")
        print(f"  trigger→frame  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  max "
              f"{max(latencies):7.1f} ms  ({len(latencies)} frames)")
        print(f"    202→row      p50 {statistics.median(queue):7.1f} ms  p99 "
              f"{percentile(queue, 0.99):7.1f} ms  (queue pick-up + engine, the worker)")
        print(f"    row→frame    p50 {statistics.median(push):7.1f} ms  p99 "
              f"{percentile(push, 0.99):7.1f} ms  (commit, layer or bridge, consumer)")
        print(f"  floor (ping)   p50 {f50:7.1f} ms  p99 {f99:7.1f} ms")
        print(f"  ratio          p50 {p50 / f50:7.1f}x    p99 {p99 / f99:7.1f}x")
        if mode.startswith("redis"):
            ok = p50 <= 100 and p99 <= 300
            print(f"  goal p50 ≤ 100 ms, p99 ≤ 300 ms: {'ok' if ok else 'MISSED'}")
        else:
            print(f"  goal p99 < 1000 ms: {'ok' if p99 < 1000 else 'MISSED'}")


if __name__ == "__main__":
    main()
