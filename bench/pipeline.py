"""Notifications per second from trigger to done, against django-q2's own throughput.

For each broker (ORM, Redis) and each number of workers (1, 2, 4), one `qcluster` with that many
workers (bench/cluster_settings.py: Clarion's settings, workers not recycled) is started and
kept for the row, and drains of two kinds alternate on it:

- floor:    N no-op tasks (each one Redis RPUSH of the time it ran, over one Redis client per
            worker process);
- pipeline: N single-recipient triggers of an in-app + email workflow (made through the trigger
            service, each its own transaction; the API is bench/trigger_api.py's), run to the
            end: the triggers whose advance lane was free queued an `advance_lane` task
            (CLARION_ADVANCE_LANES of them, 4; the others queued none), which walks due runs
            CLARION_ADVANCE_BATCH_SIZE (100) at a time in one transaction each (the inbox items,
            the messages) until none is left, and each such batch's emails go in one
            `deliver_messages` task to a loopback SMTP server that accepts at once (bench/
            common.py's lean sink, in a process of its own; `--smtp-sink aiosmtpd` to compare).
            Done = the email message `sent`.

A drain's tasks (or triggers) are queued while the cluster is stopped (SIGSTOP to each of its
processes, once they are idle: Cluster.settle), then it goes on (SIGCONT): no task starts before
all are queued, and no drain overlaps another. A row is a warm-up drain of each kind (printed,
not counted: a worker's first tasks build its caches), then F P F P … F with `--rounds` pipeline
drains; each round's ratio is its pipeline rate over the mean of the no-op rates either side of
it, and the row reports their median and range (until 2026-12-03 each figure and its floor were
measured once, in separate clusters: the same code's ratio moved by 0.1 between runs).

Rates are taken from the first task's start (the time a `pre_execute` receiver,
bench/first_task.py, wrote to Redis as the drain's first task began: the no-op drains' and the
pipeline's alike; until 2026-12-03 the first no-op's time and the first batch's messages'
`created_at`, stamped when they were written, some 48 ms after their task began) to the last
notification done: the last no-op's time, and for the pipeline's end the poll (every 20 ms) that
saw the N-th email sent and the queue empty (every task handed out), so the wake-up is left out
and the polling adds at most one interval. N = 400 gives the 4 lanes a batch each. The floor is
the cluster's own rate for N tasks, what it would cost if each notification were one task (until
2026-12-02 each trigger queued one). Also printed: the CPU (percent of one core) over the
measured drains (from just before the cluster goes on: until 2026-12-03 from the first task
seen, which left out most of the first batch's work) of each process of the cluster, of the SMTP
sink, of this process (queuing and polling), of PostgreSQL (every backend on the machine) and of
Redis; and, per broker, PostgreSQL's commits and rows written per notification
(pg_stat_database, read once every other session of the database has ended, as a backend
publishes its counters when it exits: so over a drain of its own by a fresh cluster, its start
and schedules included).

PostgreSQL + Redis. Usage: .venv/bin/python bench/pipeline.py [--n 400] [--rounds 3]
    [--workers 1,2,4] [--brokers orm,redis] [--smtp-sink lean|aiosmtpd] [--noop-connect-each]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench, REDIS_URL to
redis://127.0.0.1:6379/3 (that Redis database is emptied).
"""

import argparse
import contextlib
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

from common import (  # noqa: E402
    CpuMeter,
    Rounds,
    SmtpSinkProcess,
    cpu_text,
    pipeline_workflow,
    process_tree,
    result,
    scale,
)
from first_task import KEY as FIRST_TASK  # noqa: E402
from first_task import first_began  # noqa: E402
from trigger import ensure_database  # noqa: E402

COUNTER = "clarion-bench:noop"


POLL_SECONDS = 0.02


class Cluster:
    """One `qcluster` with `workers` workers, kept for every drain of a (broker, workers) row.
    Between drains it is stopped (SIGSTOP to each of its processes, once it is idle) while the
    next drain's tasks are queued, so that no task starts before all are queued and no drain
    overlaps the one before it; `drain` lets it go on (SIGCONT)."""

    def __init__(self, label: str, workers: int, log_dir: Path):
        env = dict(os.environ, QUEUE_WORKERS=str(workers),
                   DJANGO_SETTINGS_MODULE="bench.cluster_settings")
        self.log = open(log_dir / f"{label}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"],
                                        cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        self.label, self.paused = label, False

    def settle(self, idle_percent: float = 5.0, timeout: float = 5.0) -> None:
        """Wait until the cluster's processes use under `idle_percent` of a core over two 100 ms
        samples in a row (what a drain left, e.g. an advance task that found nothing, is done),
        at most `timeout` seconds."""
        deadline, quiet = time.monotonic() + timeout, 0
        while quiet < 2 and time.monotonic() < deadline:
            meter = CpuMeter({"qcluster": self.process.pid})
            meter.start()
            time.sleep(0.1)
            quiet = quiet + 1 if sum(meter.stop().get("qcluster", [])) < idle_percent else 0

    def pause(self) -> None:
        """Settle, then stop every process of the cluster (queue the next drain's tasks)."""
        self.settle()
        self._signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self.paused = False

    def _signal(self, signum: int) -> None:
        for pid in process_tree(self.process.pid):
            with contextlib.suppress(ProcessLookupError):  # ended since the tree was read
                os.kill(pid, signum)

    def stop(self) -> None:
        """Kill the cluster's processes (its process group), once its drains are measured:
        django-q2's own stop took 2-3 s a cluster of the time `make bench` has. Their database
        sessions end as they see their connections close (and publish their counters)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.paused = False
        self.log.close()


def drain(cluster: Cluster, n: int, begun, done, meter: CpuMeter | None,
          ) -> tuple[float, float, int]:
    """Let `cluster` go on (if paused) and wait until `done()` reaches `n`. Returns the time
    (time.time()) the first task began, as `begun()` reads it (bench/first_task.py's key; None
    until then), the time this process saw `done()` reach `n` (polled every POLL_SECONDS), and
    how many times it called `done` (each one query: see database_counters). `meter` (if
    given) measures the CPU from just before the cluster goes on (stopped, it uses none) to
    the end."""
    if meter is not None:
        meter.start()
    if cluster.paused:
        cluster.resume()
    start, polls = None, 0
    deadline = time.monotonic() + 600
    while True:
        if start is None:
            start = begun()
        if start is not None:
            polls += 1
            if done() >= n:
                end = time.time()
                break
        if cluster.process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{cluster.label}: {done()} of {n} done; see {cluster.log.name}")
        time.sleep(POLL_SECONDS)
    if meter is not None:
        meter.stop()
    return start, end, polls


_redis = None  # noop's client: one per worker process, as a real task's would be


def noop(counter: str) -> None:
    """The floor's task: note when it ran (one RPUSH of time.time()) and nothing else, over one
    Redis client per process (made on the first call)."""
    global _redis
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    _redis.rpush(counter, time.time())


def noop_connecting(counter: str) -> None:
    """noop as it was until 2026-12-03: a new Redis client, and connection, for every task
    (`--noop-connect-each`, to compare)."""
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


class Bench:
    """What every drain of one broker's rows shares: the workflow, the Redis client, the SMTP
    sink, the log directory; and the two kinds of drain, each queued while the cluster is
    stopped."""

    def __init__(self, broker: str, n: int, sink: SmtpSinkProcess, noop_task: str):
        import redis
        from django_q.brokers import get_broker

        self.broker, self.n, self.sink, self.noop_task = broker, n, sink, noop_task
        self.rds = redis.Redis.from_url(os.environ["REDIS_URL"])
        self.queue = get_broker()
        self.workflow = pipeline_workflow()
        self.log_dir = Path(tempfile.mkdtemp(prefix="clarion-bench-pipeline-"))

    def begun(self) -> float | None:
        """The time the drain's first task began (bench/first_task.py's key), None until then."""
        return first_began(self.rds)

    def meter(self, cluster: Cluster) -> CpuMeter:
        from django.db import connection

        return CpuMeter({"qcluster": cluster.process.pid}, alone={
            "SMTP sink": self.sink.pid, "bench (queues, polls)": os.getpid()},
            database=connection.settings_dict["NAME"])

    def floor(self, cluster: Cluster, meter: CpuMeter | None) -> float:
        """One floor drain: n no-op tasks queued while `cluster` is stopped, then run; their
        rate from the first task's start to the last's."""
        from django_q.tasks import async_task

        cluster.pause()
        self.rds.delete(COUNTER, FIRST_TASK)
        for _ in range(self.n):
            async_task(self.noop_task, COUNTER)
        rds = self.rds
        start, _, _ = drain(cluster, self.n, self.begun, lambda: rds.llen(COUNTER), meter)
        return self.n / max(float(rds.lindex(COUNTER, -1)) - start, 1e-6)

    def triggers(self) -> tuple[str, object]:
        """n single-recipient triggers, each its own transaction, as the service makes them (the
        API's is bench/trigger_api.py's); returns their recipients' tag and the time before."""
        from django.utils import timezone

        from notifications.services import TriggerRequest, trigger_workflow

        tag, mark = uuid.uuid4().hex[:8], timezone.now()
        for i in range(self.n):
            trigger_workflow(TriggerRequest(workflow=self.workflow, recipients=[{
                "id": f"{tag}-{i}", "name": f"User {i}", "email": f"{tag}-{i}@example.com"}],
                data={"text": "Your invoice is ready"}))
        return tag, mark

    def pipeline(self, cluster: Cluster, meter: CpuMeter | None, made=None,
                 ) -> tuple[float, int]:
        """One pipeline drain: n triggers made while `cluster` is stopped (or `made`: the tag
        and time of those made before it started, with bench/first_task.py's key deleted
        before that), then run to the end; their rate from the first task's start to the
        n-th email sent with the queue empty, and the polls this process made meanwhile
        (queries: see database_counters)."""
        from notifications.models import Message, Run

        if made is None:
            cluster.pause()
            self.rds.delete(FIRST_TASK)
            made = self.triggers()
        tag, mark = made
        # Polled once the sink has taken n emails (nothing else writes to this database).
        sent = Message.objects.filter(created_at__gte=mark, channel="email", status="sent")
        asked, n, queue, orm = [], self.n, self.queue, self.broker == "orm"  # asked: queries
        sink, taken_before = self.sink, self.sink.accepted()

        def finished() -> int:
            """Emails sent; n only once the queue has handed out every task (an advance
            lane's task that found nothing left to claim too). While the sink has taken
            fewer than n, that count, read without a query: polling the messages (a few ms of
            PostgreSQL's CPU each, 50 times a second) took a share of the cores the drain
            runs on that the no-op drains' polls (a Redis LLEN) do not."""
            if taken_before is not None and (taken := sink.accepted() - taken_before) < n:
                return taken
            asked.append("count")
            if (count := sent.count()) < n:
                return count
            if orm:
                asked.append("queue_size")  # the ORM broker's queue_size() is a query
            return n if not queue.queue_size() else n - 1

        start, end, _ = drain(cluster, n, self.begun, finished, meter)
        runs = Run.objects.filter(workflow=self.workflow, created_at__gte=mark)
        completed = runs.filter(status="completed").count()
        in_app = Message.objects.filter(run__in=runs, channel="in_app").count()
        assert completed == n and in_app == n, f"{completed} runs completed, {in_app} in-app"
        return n / max(end - start, 1e-6), len(asked)


def accounting(bench: Bench, workers: int) -> None:
    """PostgreSQL's commits and rows written per notification (pg_stat_database), for the
    triggers and for a fresh cluster's drain of them, its start and schedules included: read
    with no other session open (database_counters), which a kept cluster never allows."""
    n = bench.n
    before = database_counters()
    made = bench.triggers()
    triggered, before = before, database_counters()
    triggered = {k: (before[k] - triggered[k] - before["own"] * (k == "commits")) / n
                 for k in ("commits", "written")}
    bench.rds.delete(FIRST_TASK)
    cluster = Cluster(f"{bench.broker}-accounting-{workers}", workers, bench.log_dir)
    try:
        rate, polls = bench.pipeline(cluster, None, made)
    finally:
        cluster.stop()
    after = database_counters()
    # Every poll and every statement of this process's is one commit of its own.
    commits = (after["commits"] - before["commits"] - polls - after["own"]) / n
    written = (after["written"] - before["written"]) / n
    print(f"{bench.broker:<6} PostgreSQL per notification (n={n}, one fresh {workers}-worker "
          f"cluster, its start and schedules included; that drain {rate:.1f}/s): the trigger "
          f"{triggered['commits']:.1f} commits, {triggered['written']:.1f} rows written; then "
          f"{commits:.1f} commits, {written:.1f} rows written", flush=True)


def series(bench: Bench, workers: int, rounds: int) -> None:
    """One row: a cluster of `workers` workers started once, warmed up by one drain of each
    kind, then floor and pipeline drains alternating (F P F … P F, `rounds` pipelines)."""
    cluster = Cluster(f"{bench.broker}-{workers}", workers, bench.log_dir)
    floor_meter, meter = bench.meter(cluster), bench.meter(cluster)
    measured = Rounds()
    try:
        warm_floor = bench.floor(cluster, None)
        warm, _ = bench.pipeline(cluster, None)
        for _ in range(rounds):
            measured.add_floor(bench.floor(cluster, floor_meter))
            measured.add_figure(bench.pipeline(cluster, meter)[0])
        measured.add_floor(bench.floor(cluster, floor_meter))
    finally:
        cluster.stop()
    cpu, floor_cpu = meter.total(), floor_meter.total()
    n = bench.n
    print(f"{bench.broker:<6} {workers:>7} {measured.floor:13.1f} {measured.figure:15.1f} "
          f"{measured.ratio:9.2f}  {measured.spread[0]:.2f}–{measured.spread[1]:.2f}", flush=True)
    print(f"{'':15} rounds (notifications/s ÷ the mean of the no-op drains either side): "
          + "  ".join(f"{f:.1f}/{(a + b) / 2:.1f} = {r:.2f}" for f, a, b, r in zip(
              measured.figures, measured.floors[:-1], measured.floors[1:], measured.ratios,
              strict=True)) + f"; warm-up (not counted) {warm:.1f}/{warm_floor:.1f}", flush=True)
    cluster_ms = 1000 * sum(cpu.get("qcluster", [])) / 100 * meter.seconds / (rounds * n)
    floor_ms = (1000 * sum(floor_cpu.get("qcluster", [])) / 100 * floor_meter.seconds
                / ((rounds + 1) * n))
    sink_ms = 1000 * sum(cpu.get("SMTP sink", [])) / 100 * meter.seconds / (rounds * n)
    print(f"{'':15} the cluster's CPU: {cluster_ms:.2f} ms per notification, {floor_ms:.2f} ms "
          f"per no-op task; the SMTP sink's {sink_ms:.2f} ms per email", flush=True)
    floor_cpu.pop("SMTP sink", None)
    print(f"{'':15} CPU (% of a core) no-op: {cpu_text(floor_cpu)}\n"
          f"{'':15} CPU (% of a core) pipeline: {cpu_text(cpu)}", flush=True)
    scale(f"pipeline, {bench.broker} broker", f"{workers} worker{'s' * (workers > 1)}",
          measured.figure, "notifications/s", f"no-op tasks {measured.floor:.1f}/s",
          measured.ratio, cpu, spread=measured.spread)
    result(f"pipeline, {bench.broker} broker, {workers} worker(s): notifications/s "
           "(in-app + email)", measured.figure, f"no-op tasks {measured.floor:.1f}/s",
           measured.ratio, goal=0.5, spread=measured.spread)


def run_broker(broker: str, n: int, workers: list[int], rounds: int, sink_kind: str,
               noop_task: str) -> None:
    os.environ["QUEUE_BROKER"] = broker
    sink = SmtpSinkProcess(sink_kind)
    os.environ.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(sink.port))
    try:
        import django

        django.setup()
        logging.getLogger("django-q").setLevel(logging.WARNING)
        import redis
        from django.core.management import call_command
        from django_q.models import OrmQ

        from notifications.models import AdvanceLane

        call_command("migrate", verbosity=0)
        redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
        OrmQ.objects.all().delete()
        # The advance lanes those queued tasks held (bench/trigger_api.py's triggers, run just
        # before in `make bench`, use this database): held, with their tasks gone, they kept
        # this run's triggers from queuing any until they went stale (and this database has no
        # sweeper schedule to take the runs instead), so the first row waited or hung.
        AdvanceLane.objects.all().delete()
        bench = Bench(broker, n, sink, noop_task)
        accounting(bench, 2 if 2 in workers else workers[0])
        for w in workers:
            series(bench, w, rounds)
        OrmQ.objects.all().delete()
    finally:
        refused = sink.stop()
    if refused is not None:
        # A refusal (bench/common.py's sink answers as aiosmtpd does) is an email not sent as
        # measured: the run fails.
        print(f"{broker:<6} SMTP sink: {refused} replies not 2xx/3xx", flush=True)
        if refused:
            raise SystemExit(f"{broker}: the SMTP sink refused {refused} commands")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400, help="notifications (and no-op tasks) "
                        "per drain")
    parser.add_argument("--rounds", type=int, default=3, help="pipeline drains per row, each "
                        "between two no-op drains")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--brokers", default="orm,redis")
    parser.add_argument("--smtp-sink", choices=("lean", "aiosmtpd"), default="lean",
                        help="the loopback SMTP server (bench/common.py); aiosmtpd to compare")
    parser.add_argument("--noop-connect-each", action="store_true",
                        help="the no-op task opens a Redis connection each time (as until "
                             "2026-12-03), to compare")
    parser.add_argument("--broker", help=argparse.SUPPRESS)  # one broker, in a child process
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    noop_task = "bench.pipeline." + ("noop_connecting" if args.noop_connect_each else "noop")
    if args.broker:
        return run_broker(args.broker, args.n, workers, args.rounds, args.smtp_sink, noop_task)
    ensure_database(os.environ["DATABASE_URL"])
    print(f"Pipeline benchmark: drains of {args.n} notifications (in-app + email to a loopback "
          f"SMTP server, {args.smtp_sink}) and of {args.n} no-op tasks"
          + (" (a Redis connection each)" if args.noop_connect_each else "") + f" alternating, "
          f"{args.rounds} of the first between {args.rounds + 1} of the second per row, one "
          "cluster per row")
    print(f"{'broker':<6} {'workers':>7} {'no-op tasks/s':>13} {'notifications/s':>15} "
          f"{'ratio':>9}  range", flush=True)
    for broker in args.brokers.split(","):
        command = [sys.executable, __file__, "--broker", broker, "--n", str(args.n),
                   "--rounds", str(args.rounds), "--workers", args.workers,
                   "--smtp-sink", args.smtp_sink]
        subprocess.run(command + ["--noop-connect-each"] * args.noop_connect_each, check=True)


if __name__ == "__main__":
    main()
