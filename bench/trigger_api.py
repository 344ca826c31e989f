"""Triggers per second at the HTTP API, against a trivial authenticated endpoint as the floor.

A closed-loop load generator (`wrk`, from Debian, with the Lua script below) on 127.0.0.1 keeps
`--clients` connections busy, one request in flight each, for `--seconds`:

- trigger: POST /api/v1/workflows/bench-api/trigger (in-app + email workflow, one recipient,
  an Idempotency-Key; 10 % of requests repeat the connection's previous request, key and body,
  which must be answered from the idempotency record, `Idempotent-Replayed: true`);
- floor:   GET /api/v1/tenants/bench-api (the same API-key authentication, one row read) on the
  same server processes.

Each ASGI server under test is started with 1 and 2 processes (daphne has no process manager:
1 only). After each trigger run the database must hold exactly one trigger per idempotency key
sent, and every response must be a 2xx; otherwise the script exits non-zero. No worker runs:
the queued tasks are counted, then deleted.

PostgreSQL only. Usage: .venv/bin/python bench/trigger_api.py [--seconds 10] [--clients 16]
                        [--servers daphne:1,uvicorn:1,uvicorn:2,granian:1,granian:2,gunicorn:2]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import json
import os
import shutil
import signal
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

from common import CpuMeter, cpu_text, free_port, result, scale  # noqa: E402
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


def per_request(shares: dict[str, list[float]], label: str, figures: dict) -> float:
    """Milliseconds of CPU per request of `label`'s processes (CpuMeter.stop() shares, percent
    of a core) over a wrk run's `figures`."""
    return sum(shares.get(label, [])) * 10 / figures["per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10)
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
    print(f"Trigger API benchmark: {args.clients} closed-loop clients, {args.seconds:g} s each, "
          f"PostgreSQL {connection.pg_version}, logs in {work}")
    print(f"{'server':<10} {'procs':>5} {'floor/s':>9} {'p50':>7} {'p99':>7} "
          f"{'trigger/s':>9} {'p50':>7} {'p99':>7} {'ratio':>6}")
    failures = []
    for spec in args.servers.split(","):
        server, processes = spec.split(":")
        if server in ("granian", "gunicorn") and not (BIN / server).exists():
            print(f"{server:<10} {processes:>5}  skipped: not installed (the dev extra has it)")
            continue
        served = Server(server, int(processes), work)
        try:
            # Warm up both paths (imports, pool, caches) before measuring.
            wrk(served.port, "floor", "warm", secret, args.clients, 2, script)
            prefix = f"{uuid.uuid4().hex[:8]}"
            wrk(served.port, "trigger", f"w{prefix}", secret, args.clients, 2, script)
            meter = CpuMeter({server: served.process.pid})
            meter.start()
            floor = wrk(served.port, "floor", prefix, secret, args.clients, args.seconds, script)
            floor_cpu = meter.stop()
            meter.start()
            full = wrk(served.port, "trigger", prefix, secret, args.clients, args.seconds, script)
            cpu = meter.stop()
        finally:
            served.stop()
        records = IdempotencyRecord.objects.filter(api_key=api_key,
                                                   key__startswith=f"{prefix}-")
        triggers = Trigger.objects.filter(workflow=workflow,
                                          recipients__0__id__startswith=f"{prefix}-")
        problems = []
        for name, figures in (("floor", floor), ("trigger", full)):
            if figures["socket_errors"] or figures["non2xx"] or figures["bad"]:
                problems.append(f"{name}: {figures['socket_errors']} socket errors, "
                                f"{figures['non2xx'] or figures['bad']} non-2xx")
        n_records, n_triggers = records.count(), triggers.count()
        # wrk may stop with a request in flight: the server can finish up to one per client
        # that wrk did not count; each still has exactly one trigger for its key.
        if not (full["new_keys"] - args.clients <= n_records <= full["new_keys"]
                and n_triggers == n_records):
            problems.append(f"{full['new_keys']} keys sent, {n_records} idempotency records, "
                            f"{n_triggers} triggers")
        if full["replays"] == 0:
            problems.append("no replayed responses")
        ratio = full["per_s"] / floor["per_s"]
        print(f"{server:<10} {processes:>5} {floor['per_s']:9.1f} {floor['p50_ms']:7.1f} "
              f"{floor['p99_ms']:7.1f} {full['per_s']:9.1f} {full['p50_ms']:7.1f} "
              f"{full['p99_ms']:7.1f} {ratio:6.2f}"
              + (f"  FAILED: {'; '.join(problems)}" if problems else ""))
        print(f"{'':<16} {full['replays']} replays, {n_triggers} triggers for "
              f"{n_records} keys, 0 errors" if not problems else "")
        print(f"{'':<16} CPU (% of a core) during the triggers: {cpu_text(cpu)}")
        print(f"{'':<16} CPU per request (ms), trigger / floor GET: " + ", ".join(
            f"{label} {per_request(cpu, label, full):.2f} / "
            f"{per_request(floor_cpu, label, floor):.2f}" for label in (server, "PostgreSQL")))
        scale("trigger API", f"{processes} {server} process{'es' * (processes != '1')}",
              full["per_s"], "triggers/s", f"GET tenant {floor['per_s']:.1f}/s", ratio, cpu)
        result(f"trigger API, {server} x{processes}: triggers/s (p50 {full['p50_ms']:.0f} ms, "
               f"p99 {full['p99_ms']:.0f} ms)", full["per_s"],
               f"GET tenant {floor['per_s']:.1f}/s", ratio, goal=0.6)
        failures += problems
        OrmQ.objects.all().delete()
    shutil.rmtree(work, ignore_errors=True) if not failures else None
    if failures:
        sys.exit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
