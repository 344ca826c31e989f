"""Notifications per second from trigger to done, against django-q2's own throughput.

For each broker (ORM, Redis) and each number of workers (1, 2, 4):

- floor:    N no-op tasks (each one Redis RPUSH of the time it ran) enqueued while no worker
            runs, then one `qcluster` with that many workers drains them;
- pipeline: N single-recipient triggers of an in-app + email workflow (made through the trigger
            service while no worker runs; the API is bench/trigger_api.py's), then one
            `qcluster` runs them to the end: the triggers whose advance lane was free queued
            an `advance_lane` task (CLARION_ADVANCE_LANES of them, 4; the others queued none),
            which walks due runs CLARION_ADVANCE_BATCH_SIZE (100) at a time in one transaction
            each (the inbox items, the messages) until none is left, and each such batch's
            emails go in one
            `deliver_messages` task to a loopback SMTP server (aiosmtpd, in this process) that
            accepts at once. Done = the email message `sent`.

Rates are taken from the first task's start to the last notification done, from what the tasks
wrote (the no-ops' times; the first batch's messages' `created_at`, the time its task began),
and for the pipeline's end the poll (every 20 ms) that saw the N-th email sent and the queue
empty (every task handed out), so the cluster's start-up is left out and the polling adds at
most one interval. Size N so that a row lasts seconds (make bench: 400), or the start-up and
the last batch weigh in. The floor is the cluster's own rate for N tasks, what it would cost if
each notification were one task (until 2026-12-02 each trigger queued one). Also printed:
the CPU (percent of one core) of each process of the cluster, of this process (the SMTP sink),
of PostgreSQL (every backend on the machine) and of Redis, and PostgreSQL's commits and rows
written per notification (pg_stat_database, read once every other session of the database has
ended: a backend publishes its counters when it exits).

PostgreSQL + Redis. Usage: .venv/bin/python bench/pipeline.py [--n 600] [--workers 1,2,4]
                                                             [--brokers orm,redis]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench, REDIS_URL to
redis://127.0.0.1:6379/3 (that Redis database is emptied).
"""

import argparse
import logging
import os
import signal
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
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/3")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import CpuMeter, cpu_text, free_port, pipeline_workflow, result, scale  # noqa: E402
from trigger import ensure_database  # noqa: E402

COUNTER = "clarion-bench:noop"


POLL_SECONDS = 0.02


def drain(label: str, workers: int, n: int, begun, done, log_dir: Path,
          ) -> tuple[float, float, dict[str, list[float]], int]:
    """Start a qcluster with `workers` workers and wait until `done()` reaches `n`. Returns the
    time (time.time()) the first task began, as `begun()` reads it from what the tasks wrote
    (None until then: the cluster is starting), the time this process saw `done()` reach `n`
    (polled every POLL_SECONDS), the CPU each process used in between (CpuMeter: the
    cluster's, this one's — the SMTP sink —, PostgreSQL's, Redis'), and how many times it
    called `begun` and `done` (each one query: see database_counters)."""
    env = dict(os.environ, QUEUE_WORKERS=str(workers))
    with open(log_dir / f"{label}.log", "wb") as log:
        process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"],
                                   cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            start, polls = None, 0
            deadline = time.monotonic() + 600
            while True:
                if start is None:
                    polls += 1
                    if (start := begun()) is not None:
                        meter = CpuMeter({"qcluster": process.pid},
                                         alone={"SMTP sink": os.getpid()})
                        meter.start()
                if start is not None:
                    polls += 1
                    if done() >= n:
                        end = time.time()
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{label}: {done()} of {n} done; see {log.name}")
                time.sleep(POLL_SECONDS)
            return start, end, meter.stop(), polls
        finally:
            # SIGTERM to the cluster alone: it stops its workers (a signal to the whole group
            # kills them under it, and the cluster then waits for them forever).
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def noop(counter: str) -> None:
    """The floor's task: note when it ran (one RPUSH of time.time()) and nothing else."""
    import redis

    redis.Redis.from_url(os.environ["REDIS_URL"]).rpush(counter, time.time())


def database_counters() -> dict[str, int]:
    """This database's transactions and rows so far (pg_stat_database: every session's), once
    every other session has ended (a backend publishes its counters when it exits, otherwise
    at most once a second) and this one has published its own. `own`: the commits (one per
    statement) this session made since the previous call's read, read included."""
    from django.db import connection

    own = 2  # the previous call's read; the flush request below
    with connection.cursor() as cursor:
        deadline = time.monotonic() + 30
        while True:
            own += 1
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                           "current_database() AND pid <> pg_backend_pid()")
            if not (others := cursor.fetchone()[0]):
                break
            if time.monotonic() > deadline:
                print(f"{others} other sessions still open: their counters are missing",
                      file=sys.stderr, flush=True)
                break
            time.sleep(0.05)
        cursor.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15
        cursor.execute("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted "
                       "FROM pg_stat_database WHERE datname = current_database()")
        commits, written = cursor.fetchone()
    return {"commits": commits, "written": written, "own": own}


def run_broker(broker: str, n: int, workers: list[int]) -> None:
    os.environ["QUEUE_BROKER"] = broker
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            return "250 OK"

    smtp = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    os.environ.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port))

    import django

    django.setup()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("django-q").setLevel(logging.WARNING)
    import redis
    from django.core.management import call_command
    from django.utils import timezone
    from django_q.brokers import get_broker
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    from notifications.models import AdvanceLane, Message, Run
    from notifications.services import TriggerRequest, trigger_workflow

    call_command("migrate", verbosity=0)
    rds = redis.Redis.from_url(os.environ["REDIS_URL"])
    rds.flushdb()
    OrmQ.objects.all().delete()
    # The advance lanes those queued tasks held (bench/trigger_api.py's triggers, run just
    # before in `make bench`, use this database): held, with their tasks gone, they kept this
    # run's triggers from queuing any until they went stale (and this database has no sweeper
    # schedule to take the runs instead), so the first row waited or hung.
    AdvanceLane.objects.all().delete()
    workflow = pipeline_workflow()
    log_dir = Path(tempfile.mkdtemp(prefix="clarion-bench-pipeline-"))
    for w in workers:
        rds.delete(COUNTER)
        for _ in range(n):
            async_task("bench.pipeline.noop", COUNTER)
        noop_begun = lambda: (float(t) if (t := rds.lindex(COUNTER, 0)) else None)  # noqa: E731
        start, _, floor_cpu, _ = drain(f"{broker}-noop-{w}", w, n, noop_begun,
                                       lambda: rds.llen(COUNTER), log_dir)
        floor = n / max(float(rds.lindex(COUNTER, -1)) - start, 1e-6)
        floor_cpu.pop("SMTP sink", None)

        tag, mark = uuid.uuid4().hex[:8], timezone.now()
        before = database_counters()
        for i in range(n):
            trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{
                "id": f"{tag}-{i}", "name": f"User {i}", "email": f"{tag}-{i}@example.com"}],
                data={"text": "Your invoice is ready"}))
        runs = Run.objects.filter(workflow=workflow, recipient__external_id__startswith=f"{tag}-")
        # Polled while the cluster runs: cheap queries (nothing else writes to this database).
        sent = Message.objects.filter(created_at__gte=mark, channel="email", status="sent")
        # The first advance task's start: its batch's messages are created at that time.
        first = Message.objects.filter(created_at__gte=mark).order_by("created_at").values_list(
            "created_at", flat=True).first

        def begun(first=first) -> float | None:
            return at.timestamp() if (at := first()) else None

        triggered, before = before, database_counters()
        triggered = {k: (before[k] - triggered[k] - before["own"] * (k == "commits")) / n
                     for k in ("commits", "written")}
        queue, asked = get_broker(), []

        def finished(queue=queue, asked=asked, sent=sent) -> int:
            """Emails sent; n only once the queue has handed out every task (an advance
            lane's task that found nothing left to claim too)."""
            if (count := sent.count()) < n:
                return count
            asked.append(broker == "orm")  # the ORM broker's queue_size() is a query
            return n if not queue.queue_size() else n - 1

        start, end, cpu, polls = drain(f"{broker}-pipeline-{w}", w, n, begun, finished, log_dir)
        polls += sum(asked)
        rate = n / max(end - start, 1e-6)
        after = database_counters()
        # Every poll and every statement of this process's is one commit of its own.
        commits = (after["commits"] - before["commits"] - polls - after["own"]) / n
        written = (after["written"] - before["written"]) / n
        completed = runs.filter(status="completed").count()
        in_app = Message.objects.filter(run__in=runs, channel="in_app").count()
        assert completed == n and in_app == n, f"{completed} runs completed, {in_app} in-app"
        print(f"{broker:<6} {w:>7} {floor:13.1f} {rate:15.1f} {rate / floor:9.2f}", flush=True)
        print(f"{'':15} PostgreSQL per notification: the trigger {triggered['commits']:.1f} "
              f"commits, {triggered['written']:.1f} rows written; then {commits:.1f} commits, "
              f"{written:.1f} rows written (the cluster's own start and schedules included)",
              flush=True)
        cluster_ms = 10 * sum(cpu.get("qcluster", [])) / rate
        print(f"{'':15} the cluster's CPU: {cluster_ms:.1f} ms per notification", flush=True)
        print(f"{'':15} CPU (% of a core) no-op: {cpu_text(floor_cpu)}\n"
              f"{'':15} CPU (% of a core) pipeline: {cpu_text(cpu)}", flush=True)
        scale(f"pipeline, {broker} broker", f"{w} worker{'s' * (w > 1)}", rate,
              "notifications/s", f"no-op tasks {floor:.1f}/s", rate / floor, cpu)

        result(f"pipeline, {broker} broker, {w} worker(s): notifications/s (in-app + email)",
               rate, f"no-op tasks {floor:.1f}/s", rate / floor, goal=0.5)
    smtp.stop()
    OrmQ.objects.all().delete()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--broker", help=argparse.SUPPRESS)  # one broker, in a child process
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    if args.broker:
        return run_broker(args.broker, args.n, workers)
    ensure_database(os.environ["DATABASE_URL"])
    print(f"Pipeline benchmark: {args.n} notifications (in-app + email to loopback SMTP) and "
          f"{args.n} no-op tasks per row")
    print(f"{'broker':<6} {'workers':>7} {'no-op tasks/s':>13} {'notifications/s':>15} "
          f"{'ratio':>9}", flush=True)
    for broker in args.brokers.split(","):
        subprocess.run([sys.executable, __file__, "--broker", broker, "--n", str(args.n),
                        "--workers", args.workers], check=True)


if __name__ == "__main__":
    main()
