"""Many inbox websockets on one web process: memory per connection, and a burst's latency.

One uvicorn process (the production web server, serving Channels' websockets) with the Redis
channel layer; this script's own process opens `--sockets` inbox websockets to it (one recipient
each, authenticated with an inbox token, as a browser does, offering permessage-deflate), then:

- memory: the server's resident set before the sockets and with all of them open, per socket;
- held: every socket still open after the burst (none closed by the server or lost);
- burst: `--burst` items to as many different connected recipients, written by the product's
  worker path (a trigger of an in-app workflow to all of them, its runs advanced in one batch
  by `tasks.advance_runs` in another process, so a single commit releases the whole burst, whose
  items are then published to the layer), from that commit to each `item.created` frame:
  p50/p99/max, and to the `counts.changed` frame after it; and how long publishing the burst
  took in the worker (this client's garbage collector is off over the floor and the burst);
- floor: the same number of `ping`s sent at once, one on each of as many sockets, to their
  `pong` (the server's websocket path without the layer or the database);
- CPU: the server's and this client's CPU time over the burst (from the producer's go to
  the last frame, its counts.changed included) and over the floor, and the server's share of
  a core while the sockets are held idle (10 s once their heartbeats, with their push checks,
  have begun), from /proc.

Goal: every socket held, burst p99 ≤ 500 ms. PostgreSQL + Redis: DATABASE_URL defaults to
postgres://postgres@127.0.0.1:5432/clarion_bench_ws (emptied), REDIS_URL to
redis://127.0.0.1:6379/3 (emptied). Raises its own open-file limit to the hard limit.

Usage: .venv/bin/python bench/websockets.py [--sockets 5000] [--burst 1000]
"""

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# This directory holds this file, websockets.py: `import websockets` must find the library.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
import websockets  # noqa: E402

sys.path[:0] = [str(ROOT)]
sys.path.append(str(BENCH))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench_ws")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ.setdefault("SECRET_KEY", "bench-websockets-" + "x" * 40)
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"
os.environ["INBOX_REALTIME"] = "layer"

import gc_pauses  # noqa: E402
from common import free_port, result  # noqa: E402
from trigger import ensure_database  # noqa: E402

WORKFLOW = "bench-ws"


def rss_kib(pid: int) -> int:
    """The resident set of process `pid`, in KiB (/proc/<pid>/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user + system) process `pid` has used, in seconds (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def setup(sockets: int) -> dict[str, str]:
    """Migrate, empty the layer's Redis database, make the in-app workflow and `sockets`
    recipients; their inbox tokens by external id."""
    import django

    django.setup()
    import redis
    from django.core.management import call_command

    from inbox.auth import inbox_token_create
    from notifications.models import Recipient
    from notifications.services import StepSpec, workflow_put

    call_command("migrate", verbosity=0)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    workflow_put(key=WORKFLOW, name="Bench websockets", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Item {{ data.n }}"}})])
    tag = str(int(time.time()))
    Recipient.objects.bulk_create([Recipient(external_id=f"ws-{tag}-{i}", name=f"P{i}")
                                   for i in range(sockets)], batch_size=1000)
    people = Recipient.objects.filter(external_id__startswith=f"ws-{tag}-")
    return {r.external_id: inbox_token_create(recipient=r)[0] for r in people}


def burst(recipient_ids: list[str]) -> None:
    """In its own process (the worker's part): one trigger to `recipient_ids`, then, once a line
    comes on stdin, its runs advanced in one batch; prints "ready" before waiting, then the
    commit time and the end of publishing (time.time())."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import transaction

    from inbox.realtime import published_wait
    from notifications import tasks
    from notifications.models import Workflow
    from notifications.services import TriggerRequest, trigger_workflow

    settings.CLARION["ADVANCE_BATCH_SIZE"] = len(recipient_ids)
    workflow = Workflow.objects.get(key=WORKFLOW)
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=recipient_ids,
                                              data={"n": 1}))
    marks = {}
    print("ready", flush=True)
    sys.stdin.readline()
    with transaction.atomic():
        # The first on-commit callback: it runs right after COMMIT, before the publishes.
        transaction.on_commit(lambda: marks.setdefault("committed", time.time()))
        tasks.advance_runs(*[str(run.pk) for run in runs])
    published_wait(60)
    print(json.dumps({"committed": marks["committed"], "published": time.time()}), flush=True)


def procfile_ws_options() -> dict:
    """The websocket options the Procfile's `web` command gives uvicorn (the production web
    server's), as uvicorn.run's keyword arguments: {"ws_per_message_deflate": False, …}."""
    web = next(line.split(":", 1)[1] for line in (ROOT / "Procfile").read_text().splitlines()
               if line.startswith("web:"))
    words, options = web.split(), {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("--ws-per-message-deflate", "--ws-ping-interval", "--ws-ping-timeout"):
            options[flag[2:].replace("-", "_")] = (value.lower() in ("true", "1", "yes")
                                                   if flag.endswith("deflate") else float(value))
    return options


def start_server(port: int, log: Path, options: dict) -> subprocess.Popen:
    """uvicorn on clarion.asgi in its own process with uvicorn.run's `options` (bench/gc_pauses.py
    records its collector's passes, reported to `log`'s directory, gc.json)."""
    env = dict(os.environ, LOG_LEVEL="WARNING", CLARION_VAR_DIR=tempfile.mkdtemp(
        prefix="clarion-bench-ws-"))
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(port), "--gc-report",
             str(log.parent / "gc.json"), "--serve-options", json.dumps(options)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            sys.exit(f"uvicorn exited: see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
            return server
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                sys.exit(f"uvicorn did not start: see {log}")
            time.sleep(0.3)


async def measure(port: int, server_pid: int, tokens: dict[str, str], burst_size: int,
                  gc_report: Path, census: bool, profile: Path | None, churn: int,
                  profile_gil: bool = False, profile_idle: bool = False) -> dict:
    url = f"ws://127.0.0.1:{port}/ws/inbox/?token="
    client_gc = gc_pauses.PauseLog()  # this process's collector passes, which delay frames too
    gc.callbacks.append(client_gc)

    async def connect(token: str):
        ws = await websockets.connect(url + token, max_queue=None, ping_interval=None,
                                      open_timeout=120, close_timeout=5)
        json.loads(await ws.recv())  # counts.changed on connect
        return ws

    warm = await connect(next(iter(tokens.values())))  # the code paths loaded, pools opened
    await warm.close()
    await asyncio.sleep(1)
    before = rss_kib(server_pid)
    gc_before = await gc_pauses.read(server_pid, gc_report, census=census)
    started, started_wall = time.monotonic(), time.time()
    gate = asyncio.Semaphore(64)

    async def connect_gated(token: str):
        async with gate:
            return await connect(token)

    ids = list(tokens)
    sockets = dict(zip(ids, await asyncio.gather(*[connect_gated(tokens[i]) for i in ids]),
                       strict=True))
    connect_seconds = time.monotonic() - started
    # This client's own sockets (~5,000 websockets connections' objects) out of its collector's
    # sight: its full passes took up to 1.3 s here and delayed the frames it timestamps.
    gc.collect()
    gc.freeze()
    await asyncio.sleep(2)
    after = rss_kib(server_pid)
    gc_after = await gc_pauses.read(server_pid, gc_report, census=census)
    # Held sockets are long-lived: wait (at most 90 s) until the server's collector policy
    # (clarion/collector.py, a freeze every CLARION_GC_FREEZE_SECONDS) has frozen their state,
    # as it has for any socket held longer than that.
    held_objects = (gc_after["tracked"] + gc_after["frozen"]
                    - gc_before["tracked"] - gc_before["frozen"])
    frozen_wait = time.monotonic()
    while time.monotonic() - frozen_wait < 90:
        report = await gc_pauses.read(server_pid, gc_report)
        if report["frozen"] - gc_before["frozen"] >= 0.8 * held_objects:
            break
        await asyncio.sleep(2)
    frozen_wait = time.monotonic() - frozen_wait
    # Held and idle, once heartbeats (each with its push check, every INBOX_HEARTBEAT_SECONDS,
    # 25 s by default, from each socket's connect) have begun: 10 s of them.
    await asyncio.sleep(max(started + 26 - time.monotonic(), 0))
    if profile and profile_idle:  # --profile-idle: py-spy over the idle window instead
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server_pid),
            "--format", "raw", "--rate", "250", "--duration", "10",
            "--nonblocking", *(["--gil"] if profile_gil else []), "--output", str(profile),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    idle_cpu, idle_started = cpu_seconds(server_pid), time.monotonic()
    idle_wall = time.time()
    await asyncio.sleep(10)
    idle_cpu = (cpu_seconds(server_pid) - idle_cpu) / (time.monotonic() - idle_started)
    if profile and profile_idle:
        await spy.wait()
        profile = None
    idle_wall = (idle_wall, time.time())

    arrived: dict[str, float] = {}
    counted: dict[str, float] = {}  # the first counts.changed after the item.created
    pongs: dict[str, float] = {}

    async def reader(rid: str, ws) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "item.created":
                arrived.setdefault(rid, time.time())
            elif frame["type"] == "counts.changed":
                if rid in arrived:
                    counted.setdefault(rid, time.time())
            elif frame["type"] == "pong":
                pongs.setdefault(rid, time.time())

    readers = [asyncio.create_task(reader(rid, ws)) for rid, ws in sockets.items()]
    await asyncio.sleep(0.5)
    gc.collect()
    gc.freeze()  # the readers too (5,000 tasks): the client's full passes took 0.4-0.7 s
    # And none of this client's collector passes over the floor and the burst: they stopped
    # its event loop up to 250 ms (load average 6), and every frame waiting behind one was
    # timestamped late. Its passes are still recorded (none expected).
    gc.disable()
    # Floor: a ping on each of `burst_size` sockets, all at once.
    targets = ids[:burst_size]
    cpu = (cpu_seconds(server_pid), time.process_time())
    sent = time.time()
    await asyncio.gather(*[sockets[rid].send('{"type": "ping"}') for rid in targets])
    deadline = time.monotonic() + 30
    while len(pongs) < len(targets) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    floor = [(pongs[rid] - sent) * 1000 for rid in targets if rid in pongs]
    floor_cpu = (cpu_seconds(server_pid) - cpu[0], time.process_time() - cpu[1])
    floor_wall = (sent, max(pongs.values(), default=sent))

    # The burst, written and published by another process: its trigger made, it waits for a go.
    targets = ids[-burst_size:]
    producer = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--burst-for", ",".join(targets), cwd=str(ROOT),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    if (await producer.stdout.readline()).strip() != b"ready":
        sys.exit("the burst's producer failed")
    if profile:  # py-spy's samples of the server over the burst (--profile)
        spy = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(server_pid),
            "--format", "raw", "--rate", "250",
            "--nonblocking", *(["--gil"] if profile_gil else []), "--output", str(profile),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(1)
    cpu = (cpu_seconds(server_pid), time.process_time())
    out, _ = await producer.communicate(b"go\n")
    if producer.returncode:
        sys.exit("the burst's producer failed")
    marks = json.loads(out.decode().strip().splitlines()[-1])
    deadline = time.monotonic() + 30
    while len(arrived) < len(targets) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    while len(counted) < len(targets) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    # From the go (this process idles while the producer commits and publishes) to the last
    # frame (the counts.changed after the items included).
    burst_cpu = (cpu_seconds(server_pid) - cpu[0], time.process_time() - cpu[1])
    if profile:
        spy.send_signal(signal.SIGINT)
        await spy.wait()
    gc.enable()
    latencies = [(arrived[rid] - marks["committed"]) * 1000 for rid in targets if rid in arrived]
    counts_latencies = [(counted[rid] - marks["committed"]) * 1000 for rid in targets
                        if rid in counted]
    burst_wall = (marks["committed"], max(arrived.values(), default=marks["committed"]))
    await asyncio.sleep(1)
    gc_end = await gc_pauses.read(server_pid, gc_report)
    open_now = sum(1 for ws in sockets.values() if ws.state is websockets.State.OPEN)
    churn_rows = []
    for _ in range(churn):  # --churn: memory while sockets come and go
        round_started, chosen = time.time(), ids[:burst_size]
        await asyncio.gather(*[sockets[rid].close() for rid in chosen], return_exceptions=True)
        sockets.update(zip(chosen, await asyncio.gather(*[connect_gated(tokens[rid])
                                                           for rid in chosen]), strict=True))
        # Long enough for the server's next freeze (CLARION_GC_FREEZE_SECONDS).
        await asyncio.sleep(float(os.environ.get("CLARION_GC_FREEZE_SECONDS", "30")) + 2)
        report = await gc_pauses.read(server_pid, gc_report)
        churn_rows.append({"rss": rss_kib(server_pid), "tracked": report["tracked"],
                           "frozen": report["frozen"],
                           "passes": gc_pauses.summary(report["passes"], round_started)})
    for task in readers:
        task.cancel()
    await asyncio.gather(*[ws.close() for ws in sockets.values()], return_exceptions=True)
    return {"before": before, "after": after, "connect_seconds": connect_seconds,
            "held": open_now, "latencies": latencies, "counts": counts_latencies,
            "floor": floor,
            "burst_cpu": burst_cpu, "floor_cpu": floor_cpu, "idle_cpu": idle_cpu,
            "publish_ms": (marks["published"] - marks["committed"]) * 1000,
            "frozen_wait": frozen_wait, "churn": churn_rows,
            "gc": {"before": gc_before, "after": gc_after, "end": gc_end,
                   "held": gc_pauses.summary(gc_end["passes"], started_wall),
                   "idle": gc_pauses.summary(gc_end["passes"], *idle_wall),
                   "floor": gc_pauses.summary(gc_end["passes"], *floor_wall),
                   "burst": gc_pauses.summary(gc_end["passes"], *burst_wall)},
            "client_gc": {"floor": gc_pauses.summary(client_gc.passes, *floor_wall),
                          "burst": gc_pauses.summary(client_gc.passes, *burst_wall)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--census", action="store_true",
                        help="print the server's garbage-collected objects per socket by type")
    parser.add_argument("--profile", type=Path,
                        help="write py-spy's samples of the server over the burst to this file "
                             "(raw, for flamegraph.pl or speedscope; py-spy, a dev dependency)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="with --profile: only the samples holding the GIL (the CPU the "
                             "server spends, not its waits for a core on a loaded machine)")
    parser.add_argument("--profile-idle", action="store_true",
                        help="with --profile: py-spy over the 10 s the sockets are held idle "
                             "(heartbeats), not over the burst")
    parser.add_argument("--churn", type=int, default=0,
                        help="then this many rounds of closing and reopening --burst sockets, "
                             "the server's memory and frozen objects after each")
    parser.add_argument("--ws-deflate", choices=("on", "off"),
                        help="permessage-deflate accepted by the server or not (default: as the "
                             "Procfile's uvicorn command says)")
    parser.add_argument("--ws-ping-interval", type=float,
                        help="uvicorn's keepalive pings every this many seconds, 0: none "
                             "(default: as the Procfile's uvicorn command says)")
    parser.add_argument("--burst-for", help=argparse.SUPPRESS)  # the producer, another process
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server, on this port
    parser.add_argument("--gc-report", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--serve-options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.burst_for:
        return burst(args.burst_for.split(","))
    if args.serve:
        return gc_pauses.serve_recorded("clarion.asgi:application", args.serve, args.gc_report,
                                        **json.loads(args.serve_options))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 2 * args.sockets + 1000  # this client's sockets and the server's, inherited
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
        soft = min(wanted, hard)
    if soft < wanted:
        sys.exit(f"open-file limit {soft} < {wanted}: raise the hard limit (ulimit -Hn)")
    ensure_database(os.environ["DATABASE_URL"])
    tokens = setup(args.sockets)
    print(f"Websockets benchmark: {args.sockets} inbox sockets on one uvicorn process (Redis "
          f"channel layer), a burst of {args.burst} items to {args.burst} of them", flush=True)
    options = procfile_ws_options()
    if args.ws_deflate:
        options["ws_per_message_deflate"] = args.ws_deflate == "on"
    if args.ws_ping_interval is not None:
        options["ws_ping_interval"] = args.ws_ping_interval or None
    print(f"  server    uvicorn, websocket options {options or 'uvicorn defaults'} (the "
          f"Procfile's, or as given)", flush=True)
    log = Path(tempfile.mkdtemp(prefix="clarion-bench-ws-")) / "uvicorn.log"
    port = free_port()
    server = start_server(port, log, options)
    try:
        figures = asyncio.run(measure(port, server.pid, tokens, args.burst,
                                      log.parent / "gc.json", args.census, args.profile,
                                      args.churn, args.profile_gil, args.profile_idle))
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
    per_socket = (figures["after"] - figures["before"]) / args.sockets
    lat, floor = figures["latencies"], figures["floor"]
    print(f"  sockets   {figures['held']} of {args.sockets} held (opened in "
          f"{figures['connect_seconds']:.1f} s, {args.sockets / figures['connect_seconds']:.0f}/s)")
    print(f"  memory    server RSS {figures['before'] / 1024:.0f} MiB → "
          f"{figures['after'] / 1024:.0f} MiB: {per_socket:.1f} KiB per socket; held idle "
          f"(heartbeats), the server uses {figures['idle_cpu'] * 100:.0f} % of a core")
    if len(lat) < args.burst:
        print(f"  {args.burst - len(lat)} of {args.burst} items did not arrive within 30 s")
    print(f"  burst     commit → item.created  p50 {statistics.median(lat):7.1f} ms  "
          f"p99 {percentile(lat, 0.99):7.1f} ms  max {max(lat):7.1f} ms  ({len(lat)} frames; "
          f"the worker published them in {figures['publish_ms']:.0f} ms)")
    if figures["counts"]:
        counts = figures["counts"]
        print(f"  counts    commit → counts.changed after it  p50 {statistics.median(counts):7.1f}"
              f" ms  p99 {percentile(counts, 0.99):7.1f} ms  ({len(counts)} frames)")
    print(f"  floor     {len(floor)} pings at once → pong  p50 {statistics.median(floor):7.1f} ms"
          f"  p99 {percentile(floor, 0.99):7.1f} ms")
    for name, frames in (("burst", lat), ("floor", floor)):
        server_cpu, client_cpu = figures[f"{name}_cpu"]
        print(f"  CPU       {name}: server {server_cpu * 1000:.0f} ms, this client "
              f"{client_cpu * 1000:.0f} ms ({server_cpu / len(frames) * 1e6:.0f} / "
              f"{client_cpu / len(frames) * 1e6:.0f} µs per frame; heartbeats included)")
    collector = figures["gc"]
    tracked = sum(collector["after"][k] - collector["before"][k]
                  for k in ("tracked", "frozen")) / args.sockets  # frozen ones too
    print(f"  GC        objects the collector tracks: {collector['before']['tracked']:,} → "
          f"{collector['after']['tracked']:,} ({tracked:.0f} per socket; "
          f"{collector['after']['frozen']:,} frozen), after the burst "
          f"{collector['end']['tracked']:,} ({collector['end']['frozen']:,} frozen; "
          f"the sockets' state frozen {figures['frozen_wait']:.0f} s after they were open)")
    for name, passes in [*collector.items(), *[(f"client {name}", passes) for name, passes
                                              in figures["client_gc"].items()]]:
        if "count" in passes:
            print(f"  GC        {name:12}: {passes['count']} passes, max {passes['max_ms']:.0f} "
                  f"ms, total {passes['total_ms']:.0f} ms; {passes['full']} full, max "
                  f"{passes['full_max_ms']:.0f} ms")
    for n, row in enumerate(figures["churn"], 1):
        print(f"  churn {n:2}  {args.burst} sockets closed and reopened: server RSS "
              f"{row['rss'] / 1024:.0f} MiB, {row['tracked']:,} tracked, {row['frozen']:,} "
              f"frozen; {row['passes']['full']} full passes, longest "
              f"{row['passes']['full_max_ms']:.0f} ms")
    if args.census:
        grown = {kind: n - collector["before"]["census"].get(kind, 0)
                 for kind, n in collector["after"]["census"].items()}
        for kind, n in sorted(grown.items(), key=lambda kv: -kv[1])[:60]:
            print(f"  census    {n / args.sockets:7.2f} per socket  {kind}")
    ok = figures["held"] == args.sockets and len(lat) == args.burst \
        and percentile(lat, 0.99) <= 500
    print(f"  goal {args.sockets} sockets held, burst p99 ≤ 500 ms: {'ok' if ok else 'MISSED'}")
    result(f"websockets: {args.sockets} sockets held on one process, KiB per socket",
           per_socket, f"{figures['held']} held", figures["held"] / args.sockets)
    result(f"websockets: burst of {args.burst}, commit → frame p99 ms "
           f"(p50 {statistics.median(lat):.0f})", percentile(lat, 0.99),
           f"pings at once p99 {percentile(floor, 0.99):.0f} ms",
           percentile(lat, 0.99) / max(percentile(floor, 0.99), 1e-3))


if __name__ == "__main__":
    main()
