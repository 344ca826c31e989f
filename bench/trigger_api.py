"""Triggers per second at the HTTP API, against a trivial authenticated endpoint as the floor.

A closed-loop load generator (`wrk`, from Debian, with the Lua script below) on 127.0.0.1 keeps
`--clients` connections busy, one request in flight each, for a window of `--seconds`:

- trigger: POST /api/v1/workflows/bench-api/trigger (in-app + email workflow, one recipient,
  an Idempotency-Key; 10 % of requests repeat the connection's previous request, key and body,
  which must be answered from the idempotency record, `Idempotent-Replayed: true`);
- floor:   GET /api/v1/tenants/bench-api (the same API-key authentication, one row read) on the
  same server processes.

Each ASGI server under test is started with the processes asked for (daphne has no process
manager: 1 only), warmed up (a second of each), then measured in alternating windows, floor
first and last: F T F T … F with `--rounds` trigger windows. Each round's ratio is its trigger
rate over the mean of the floor windows either side of it, which follows the machine's drifting
speed; the server's row reports the median ratio and the lowest and highest, the median rates of
each kind's windows, the median of their p50s and the worst window's p99 (until 2026-12-03 the
median of their p99s, which hid a window with a tail; and until then too one floor window and
one trigger window of 3 s each: the same code's ratio moved by 0.1 between runs). Over all the
trigger windows the database must hold exactly one trigger per idempotency key sent, some
requests must have been answered as replays, and every response must be a 2xx; otherwise the
script exits non-zero. No worker runs: the queued tasks are counted, then deleted. The CPU per
request of the server and of PostgreSQL is over all the windows of each kind.

PostgreSQL only. Usage: .venv/bin/python bench/trigger_api.py [--seconds 2] [--rounds 5]
    [--clients 16] [--servers daphne:1,uvicorn:1,uvicorn:2,granian:1,granian:2,gunicorn:2]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
# Count triggers against the per-key rate limit (its cost is part of the figure), never refuse.
os.environ.setdefault("CLARION_TRIGGER_RATE_LIMIT", "100000000")
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import CpuMeter, Rounds, cpu_text, free_port, result, scale  # noqa: E402
from trigger import ensure_database  # noqa: E402

BIN = Path(sys.executable).parent
APP = "clarion.asgi:application"

# One wrk thread per connection: a thread's requests are strictly sequential, so a repeated key's
# first request has been answered before the repeat is sent (never a 409 "key in use").
LUA = r"""
-- Globals: wrk reads a thread's counters through thread:get, which sees globals only.
counter, new_keys, replays, bad = 0, 0, 0, 0
last_body, last_key = nil, nil
tid = 0
threads = {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] .. "-t" .. tid
  mode = args[2]
  math.randomseed(tid * 7919 + os.time())
  wrk.headers["Authorization"] = "Bearer " .. args[3]
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  if mode == "floor" then
    return wrk.format("GET", "/api/v1/tenants/bench-api")
  end
  if last_key ~= nil and math.random() < 0.1 then
    wrk.headers["Idempotency-Key"] = last_key
    return wrk.format("POST", "/api/v1/workflows/bench-api/trigger", nil, last_body)
  end
  counter = counter + 1
  new_keys = new_keys + 1
  last_key = prefix .. "-" .. counter
  last_body = '{"recipients": [{"id": "' .. last_key .. '", "name": "User ' .. counter ..
    '", "email": "' .. last_key .. '@example.com"}], "data": {"text": "Your invoice is ready"}}'
  wrk.headers["Idempotency-Key"] = last_key
  return wrk.format("POST", "/api/v1/workflows/bench-api/trigger", nil, last_body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if bad <= 3 then io.stderr:write(status .. " " .. body .. "\n") end
  end
  if headers["Idempotent-Replayed"] == "true" or headers["idempotent-replayed"] == "true" then
    replays = replays + 1
  end
end

function done(summary, latency, requests)
  local keys, rep, nbad = 0, 0, 0
  for _, t in ipairs(threads) do
    keys = keys + (t:get("new_keys") or 0)
    rep = rep + (t:get("replays") or 0)
    nbad = nbad + (t:get("bad") or 0)
  end
  io.write(string.format(
    'RESULT {"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "socket_errors": %d, ' ..
    '"non2xx": %d, "bad": %d, "new_keys": %d, "replays": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, summary.errors.status, nbad, keys, rep))
end
"""


def server_command(server: str, processes: int, port: int) -> list[str]:
    """The command line that serves clarion.asgi with `processes` processes on `port`."""
    host = ["127.0.0.1"]
    if server == "daphne":
        assert processes == 1, "daphne runs one process"
        return [sys.executable, "-m", "daphne", "-b", *host, "-p", str(port), APP]
    if server == "uvicorn":
        return [sys.executable, "-m", "uvicorn", "--host", *host, "--port", str(port),
                "--workers", str(processes), "--no-access-log", "--log-level", "warning",
                "--loop", "uvloop", "--http", "httptools", APP]
    if server == "gunicorn":
        return [str(BIN / "gunicorn"), "-k", "uvicorn.workers.UvicornWorker", "-w",
                str(processes), "-b", f"127.0.0.1:{port}", "--log-level", "warning", APP]
    if server == "granian":
        return [str(BIN / "granian"), "--interface", "asgi", "--host", *host, "--port",
                str(port), "--workers", str(processes), "--loop", "uvloop",
                "--log-level", "warning", "--no-ws", APP]
    raise SystemExit(f"unknown server {server!r}")


class Server:
    """An ASGI server in its own process group."""

    def __init__(self, server: str, processes: int, log_dir: Path):
        self.port = free_port()
        self.log = open(log_dir / f"{server}-{processes}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            server_command(server, processes, self.port), cwd=ROOT, stdout=self.log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 180  # 4 processes start slowly on a loaded machine
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{server} exited: see {self.log.name}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        self.stop()
        raise SystemExit(f"{server} did not answer /healthz: see {self.log.name}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def wrk(port: int, mode: str, prefix: str, secret: str, clients: int, seconds: float,
        script: Path) -> dict:
    """One closed-loop wrk run; returns the figures its done() prints."""
    out = subprocess.run(
        ["wrk", "-t", str(clients), "-c", str(clients), "-d", f"{max(1, round(seconds))}s",
         "--timeout", "10s",
         "-s", str(script), f"http://127.0.0.1:{port}", "--", prefix, mode, secret],
        capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT "))
    figures = json.loads(line[len("RESULT "):])
    figures["per_s"] = figures["requests"] / figures["seconds"]
    return figures


def totals(runs: list[dict]) -> dict:
    """The requests per second of wrk runs taken together, the median of their p50 latencies
    and the worst (highest) of their p99s: wrk gives each run's percentiles, not its latencies,
    and a median of p99s hid a window with a tail (with 3 windows, one in three; until
    2026-12-03 "p99" was that median)."""
    return {"per_s": sum(f["requests"] for f in runs) / sum(f["seconds"] for f in runs),
            "p50_ms": statistics.median(f["p50_ms"] for f in runs),
            "p99_ms": max(f["p99_ms"] for f in runs)}


def per_request(shares: dict[str, list[float]], label: str, figures: dict) -> float:
    """Milliseconds of CPU per request of `label`'s processes (CpuMeter.stop() shares, percent
    of a core) over a wrk run's `figures`."""
    return sum(shares.get(label, [])) * 10 / figures["per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=2, help="each window's length (wrk "
                        "takes whole seconds)")
    parser.add_argument("--rounds", type=int, default=5, help="trigger windows, each between "
                        "two floor windows")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--servers", default="daphne:1,uvicorn:1,uvicorn:2,granian:1,granian:2,"
                                             "gunicorn:2")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench/trigger_api.py needs wrk: apt-get install wrk")
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_q.models import OrmQ

    from notifications.models import IdempotencyRecord, Tenant, Trigger
    from notifications.services import StepSpec, api_key_create, workflow_put

    call_command("migrate", verbosity=0)
    database = connection.settings_dict["NAME"]  # the CPU meters count its backends only
    workflow, _ = workflow_put(key="bench-api", name="Bench API", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ recipient.name }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Welcome {{ recipient.name }}", "html": "<p>{{ data.text }}</p>"}}),
    ])
    Tenant.objects.get_or_create(key="bench-api", defaults={"name": "Bench API"})
    api_key, secret = api_key_create(name="bench-api")
    work = Path(tempfile.mkdtemp(prefix="clarion-bench-api-"))
    script = work / "load.lua"
    script.write_text(LUA)
    print(f"Trigger API benchmark: {args.clients} closed-loop clients; per server, windows of "
          f"{args.seconds} s alternating floor and trigger ({args.rounds} trigger windows, each "
          f"between two floor windows); rates, ratio and p50 the windows' medians, p99 the worst "
          f"window's; PostgreSQL {connection.pg_version}, logs in {work}")
    print(f"{'server':<10} {'procs':>5} {'floor/s':>9} {'p50':>7} {'p99 max':>7} "
          f"{'trigger/s':>9} {'p50':>7} {'p99 max':>7} {'ratio':>6}  range")
    failures = []
    for spec in args.servers.split(","):
        server, processes = spec.split(":")
        if server in ("granian", "gunicorn") and not (BIN / server).exists():
            print(f"{server:<10} {processes:>5}  skipped: not installed (the dev extra has it)")
            continue
        served = Server(server, int(processes), work)
        prefix = f"{uuid.uuid4().hex[:8]}"
        try:
            # Warm up both paths (imports, pool, caches) before measuring.
            wrk(served.port, "floor", "warm", secret, args.clients, 1, script)
            wrk(served.port, "trigger", f"w{prefix}", secret, args.clients, 1, script)
            floors, triggers, measured = [], [], Rounds()
            floor_meter = CpuMeter({server: served.process.pid}, database=database)
            meter = CpuMeter({server: served.process.pid}, database=database)
            for i in range(args.rounds + 1):
                floor_meter.start()
                floors.append(wrk(served.port, "floor", prefix, secret, args.clients,
                                  args.seconds, script))
                floor_meter.stop()
                measured.add_floor(floors[-1]["per_s"])
                if i == args.rounds:
                    break
                meter.start()  # each window's keys apart: wrk numbers them from 1 each run
                triggers.append(wrk(served.port, "trigger", f"{prefix}-r{i}", secret,
                                    args.clients, args.seconds, script))
                meter.stop()
                measured.add_figure(triggers[-1]["per_s"])
        finally:
            served.stop()
        cpu, floor_cpu = meter.total(), floor_meter.total()
        records = IdempotencyRecord.objects.filter(api_key=api_key,
                                                   key__startswith=f"{prefix}-")
        made = Trigger.objects.filter(workflow=workflow,
                                      recipients__0__id__startswith=f"{prefix}-")
        problems = []
        for name, runs in (("floor", floors), ("trigger", triggers)):
            errors = sum(f["socket_errors"] for f in runs)
            bad = sum(f["non2xx"] or f["bad"] for f in runs)
            if errors or bad:
                problems.append(f"{name}: {errors} socket errors, {bad} non-2xx")
        n_records, n_triggers = records.count(), made.count()
        new_keys, replays = (sum(f[k] for f in triggers) for k in ("new_keys", "replays"))
        # wrk may stop with a request in flight: the server can finish up to one per client
        # that wrk did not count, in each window; each still has exactly one trigger per key.
        if not (new_keys - args.clients * args.rounds <= n_records <= new_keys
                and n_triggers == n_records):
            problems.append(f"{new_keys} keys sent, {n_records} idempotency records, "
                            f"{n_triggers} triggers")
        if replays == 0:
            problems.append("no replayed responses")
        floor_all, full_all = totals(floors), totals(triggers)
        low, high, _ = measured.spread
        print(f"{server:<10} {processes:>5} {measured.floor:9.1f} {floor_all['p50_ms']:7.1f} "
              f"{floor_all['p99_ms']:7.1f} {measured.figure:9.1f} {full_all['p50_ms']:7.1f} "
              f"{full_all['p99_ms']:7.1f} {measured.ratio:6.2f}  {low:.2f}–{high:.2f}"
              + (f"  FAILED: {'; '.join(problems)}" if problems else ""))
        print(f"{'':<16} rounds (triggers/s ÷ the mean of the floor windows either side): "
              + "  ".join(f"{t:.1f}/{(a + b) / 2:.1f} = {r:.2f}" for t, a, b, r in zip(
                  measured.figures, measured.floors[:-1], measured.floors[1:],
                  measured.ratios, strict=True)))
        if not problems:
            print(f"{'':<16} {replays} replays, {n_triggers} triggers for {n_records} keys, "
                  "0 errors")
        print(f"{'':<16} CPU (% of a core) during the triggers: {cpu_text(cpu)}")
        print(f"{'':<16} CPU per request (ms), trigger / floor GET: " + ", ".join(
            f"{label} {per_request(cpu, label, full_all):.2f} / "
            f"{per_request(floor_cpu, label, floor_all):.2f}" for label in (server, "PostgreSQL")))
        floor_text = f"GET tenant {measured.floor:.1f}/s"
        latency = (f"p50 {full_all['p50_ms']:.0f} ms, p99 (worst window) "
                   f"{full_all['p99_ms']:.0f} ms")
        scale("trigger API", f"{processes} {server} process{'es' * (processes != '1')}",
              measured.figure, f"triggers/s ({latency})", floor_text, measured.ratio, cpu,
              spread=measured.spread)
        result(f"trigger API, {server} x{processes}: triggers/s ({latency})", measured.figure,
               floor_text, measured.ratio, goal=0.6, spread=measured.spread)
        failures += problems
        OrmQ.objects.all().delete()
    shutil.rmtree(work, ignore_errors=True) if not failures else None
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
