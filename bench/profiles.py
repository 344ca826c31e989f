"""Where the time goes: pyinstrument profiles of the trigger request and of one advance + delivery.

0. CPU per request, insensitive to other load on the machine: `--cpu` trigger requests in-process
   (one in ten repeating the previous Idempotency-Key and body, as trigger_api.py's clients do)
   and as many GET /api/v1/tenants/… (trigger_api.py's floor), each as time.process_time() of this
   process per request (Python's side: what a web process spends; PostgreSQL's own CPU is not in
   it), with the SQL statements per request; `--cpu-only` stops there;
1. `--n` POST /api/v1/workflows/bench-profile/trigger through the whole stack in-process (Django's
   test client: middleware, API key, validation, recipient upsert, trigger + run + timeline rows,
   the queued task);
2. for each of those runs, `advance_run` (in-app + email: the inbox item, two messages, the
   timeline) then `deliver_message` of its email, to a loopback SMTP server (aiosmtpd) that
   accepts at once.

Prints each profile's call tree (frames under 2 % of the time hidden) and writes the HTML pages
next to it with `--html DIR`. PostgreSQL only. Usage:
.venv/bin/python bench/profiles.py [--n 200] [--cpu 300] [--cpu-only] [--html DIR]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ.setdefault("CLARION_TRIGGER_RATE_LIMIT", "100000000")
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import free_port  # noqa: E402
from trigger import ensure_database  # noqa: E402


def cpu_per_request(trigger, floor, n: int, tag: str, rounds: int = 5) -> None:
    """Print the CPU (ms of time.process_time()) and SQL statements per trigger request, one in
    ten a replay of the previous key, and per floor GET: the median of `rounds` rounds of n /
    rounds requests each, trigger and floor rounds alternating so that both see the same
    machine (process time still grows a little when other processes share the cores)."""
    import statistics

    from django.db import connection

    def triggers(start: int, count: int) -> None:
        for i in range(start, start + count):
            if i % 10 == 9:  # the previous request again: answered from its idempotency record
                trigger(i - 1, key=f"{tag}-c{i - 1}")
            else:
                trigger(i, key=f"{tag}-c{i}")

    def gets(start: int, count: int) -> None:
        for i in range(start, start + count):
            floor(i)

    def counted(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    kinds = {"trigger": triggers, "floor GET": gets}
    statements, queries = [], {}
    for name, run in kinds.items():
        run(1_000_000, 20)  # warm up
        statements = []
        with connection.execute_wrapper(counted):  # its own pass: counting costs CPU too
            run(2_000_000, 20)
        queries[name] = len(statements) / 20
    per_round = max(10, n // rounds)
    cpu = {name: [] for name in kinds}
    wall = {name: [] for name in kinds}
    for r in range(rounds):
        for name, run in kinds.items():
            started, clock = time.process_time(), time.perf_counter()
            run(r * per_round, per_round)
            cpu[name].append((time.process_time() - started) / per_round * 1000)
            wall[name].append((time.perf_counter() - clock) / per_round * 1000)
    for name in kinds:
        print(f"{name:<10} {rounds} × {per_round} requests: "
              f"{statistics.median(cpu[name]):6.2f} ms CPU each (rounds "
              f"{min(cpu[name]):.2f}–{max(cpu[name]):.2f}; {statistics.median(wall[name]):6.2f} "
              f"ms wall), {queries[name]:5.2f} SQL statements each")
    ratio = statistics.median(cpu["floor GET"]) / statistics.median(cpu["trigger"])
    print(f"CPU ratio floor/trigger: {ratio:.2f} (trigger_api.py's ratio when the web process is "
          "the bottleneck, less the server's own cost per request)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--html", type=Path)
    parser.add_argument("--cpu", type=int, default=300)
    parser.add_argument("--cpu-only", action="store_true")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            return "250 OK"

    smtp = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    os.environ.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port))

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django_q.models import OrmQ
    from pyinstrument import Profiler

    from notifications.models import Message, Run, Tenant
    from notifications.services import StepSpec, api_key_create, workflow_put
    from notifications.tasks import advance_run, deliver_message

    call_command("migrate", verbosity=0)
    workflow_put(key="bench-profile", name="Bench", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ recipient.name }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Welcome {{ recipient.name }}", "html": "<p>{{ data.text }}</p>"}}),
    ])
    Tenant.objects.get_or_create(key="bench-profile", defaults={"name": "Bench"})
    _, secret = api_key_create(name="bench-profile")
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    tag = uuid.uuid4().hex[:6]

    def trigger(i: int, key: str = "") -> None:
        response = client.post(
            "/api/v1/workflows/bench-profile/trigger", json.dumps({
                "recipients": [{"id": f"{tag}-{i}", "name": f"User {i}",
                                "email": f"u{i}@example.com"}],
                "data": {"text": "Your invoice is ready"}}),
            content_type="application/json", HTTP_IDEMPOTENCY_KEY=key or f"{tag}-{i}")
        assert response.status_code == 202, response.content

    def floor(_: int) -> None:
        response = client.get("/api/v1/tenants/bench-profile")
        assert response.status_code == 200, response.content

    if args.cpu:
        cpu_per_request(trigger, floor, args.cpu, tag)
        if args.cpu_only:
            smtp.stop()
            return
    from django.utils import timezone

    started = timezone.now()  # the runs below are these triggers' only, not the --cpu rounds'
    for i in range(10):  # warm up: imports, caches
        trigger(-1 - i)
    profiler = Profiler(interval=0.0005)
    with profiler:
        for i in range(args.n):
            trigger(i)
    print(f"== trigger request ({args.n} POST /trigger, in-process) ==")
    print(profiler.output_text(unicode=True, show_all=False, time="percent_of_total"))
    if args.html:
        args.html.mkdir(parents=True, exist_ok=True)
        (args.html / "trigger.html").write_text(profiler.output_html())

    OrmQ.objects.all().delete()
    runs = list(Run.objects.filter(recipient__external_id__startswith=f"{tag}-",
                                   created_at__gte=started)
                .order_by("created_at").values_list("id", flat=True))
    for run_id in runs[:10]:
        advance_run(str(run_id))
    profiler = Profiler(interval=0.0005)
    with profiler:
        for run_id in runs[10:]:
            advance_run(str(run_id))
            message = Message.objects.filter(run_id=run_id, channel="email").values_list(
                "id", flat=True).first()
            deliver_message(str(message))
    print(f"== advance + delivery ({len(runs) - 10} runs: advance_run, then deliver_message of "
          "the email) ==")
    print(profiler.output_text(unicode=True, show_all=False, time="percent_of_total"))
    if args.html:
        (args.html / "advance_delivery.html").write_text(profiler.output_html())
    sent = Message.objects.filter(run_id__in=runs[10:], channel="email", status="sent").count()
    assert sent == len(runs) - 10, f"{sent} of {len(runs) - 10} emails sent"
    OrmQ.objects.all().delete()
    smtp.stop()


if __name__ == "__main__":
    main()
