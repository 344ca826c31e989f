"""CPU per email of the delivery loop, in-process: what a worker spends delivering a batch.

N single-recipient triggers of an in-app + email workflow (pipeline.py's), advanced in batches
(tasks.advance_runs), then their emails delivered as a worker does it, `deliver_batch(ids)` of
each `--batch` of them (pipeline.py's `deliver_messages` tasks), to a loopback SMTP server in
another process (aiosmtpd's Sink: "250 OK" at once), the SMTP keeper on. Printed per round: the
process time per email (the loop's thread and the sending threads), the loop thread's own
(`time.thread_time()`), the wall time, and the SQL statements per batch. `--profile FILE`: a
cProfile of the delivery by the loop thread's CPU time (`python -m pstats FILE`), one round;
`--show-sql`: the statements of one batch.

PostgreSQL only. Usage: .venv/bin/python bench/delivery_cpu.py [--n 400] [--rounds 3]
[--batch 100] [--profile FILE]. DATABASE_URL defaults to
postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import os
import statistics
import subprocess
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
os.environ.setdefault("QUEUE_BROKER", "orm")
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import free_port, pipeline_workflow  # noqa: E402
from trigger import ensure_database  # noqa: E402


def start_sink() -> tuple[subprocess.Popen, int]:
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                             "-c", "aiosmtpd.handlers.Sink"])
    import socket

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return sink, port
        except OSError:
            time.sleep(0.05)
    sink.kill()
    sys.exit("the SMTP sink did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--show-sql", action="store_true", help="print a batch's statements")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    sink, port = start_sink()
    os.environ.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(port))
    try:
        run(args)
    finally:
        sink.kill()
        sink.wait()


def run(args) -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django_q.models import OrmQ

    from notifications.delivery import deliver_batch
    from notifications.models import Message, Run
    from notifications.services import TriggerRequest, trigger_workflow
    from notifications.tasks import advance_runs

    call_command("migrate", verbosity=0)
    workflow = pipeline_workflow()

    def queued(n: int) -> list[str]:
        tag = uuid.uuid4().hex[:8]
        for i in range(n):
            trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{
                "id": f"{tag}-{i}", "name": f"User {i}", "email": f"{tag}-{i}@example.com"}],
                data={"text": "Your invoice is ready"}))
        runs = [str(pk) for pk in Run.objects.filter(
            recipient__external_id__startswith=f"{tag}-").values_list("id", flat=True)]
        for start in range(0, len(runs), 100):
            advance_runs(*runs[start:start + 100])
        OrmQ.objects.all().delete()
        ids = [str(pk) for pk in Message.objects.filter(
            run_id__in=runs, channel="email", status="queued").values_list("id", flat=True)]
        assert len(ids) == n, f"{len(ids)} of {n} emails queued"
        return ids

    statements = []

    def counted(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    def deliver(ids: list[str]) -> tuple[float, float, float, float]:
        cpu, own, wall = time.process_time(), time.thread_time(), time.perf_counter()
        statements.clear()
        with connection.execute_wrapper(counted):
            for start in range(0, len(ids), args.batch):
                deliver_batch(ids[start:start + args.batch], size=args.batch)
        n = len(ids)
        sent = Message.objects.filter(pk__in=ids, status="sent").count()
        assert sent == n, f"{sent} of {n} sent"
        batches = -(-n // args.batch)
        return ((time.process_time() - cpu) / n * 1000, (time.thread_time() - own) / n * 1000,
                (time.perf_counter() - wall) / n * 1000, len(statements) / batches)

    deliver(queued(min(args.n, 100)))  # warm up: imports, connections, the keeper
    if args.show_sql:
        deliver(queued(args.batch))
        for sql in statements:
            print(" ", sql[:160])
        return
    if args.profile:
        import cProfile

        ids = queued(args.n)
        profiler = cProfile.Profile(time.thread_time)
        profiler.enable()
        deliver(ids)
        profiler.disable()
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}")
        return
    figures = []
    for r in range(args.rounds):
        figures.append(deliver(queued(args.n)))
        cpu, own, wall, sql = figures[-1]
        print(f"round {r + 1}: {cpu:.2f} ms CPU per email (loop thread {own:.2f}), "
              f"{wall:.2f} ms wall, {sql:.1f} statements per batch of {args.batch}", flush=True)
    cpu, own, wall, _ = (statistics.median(column) for column in zip(*figures, strict=True))
    print(f"median: {cpu:.2f} ms CPU per email (loop thread {own:.2f}), {wall:.2f} ms wall; "
          f"load {Path('/proc/loadavg').read_text().split()[0]}")


if __name__ == "__main__":
    main()
