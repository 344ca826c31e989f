"""How late waits wake up: delay steps of real runs, resumed by a real qcluster.

N runs (default 500) of a workflow whose only step is a delay `until` a time in `data.at`, spread
evenly over the next `--spread` seconds (after a lead in which the bench parks every run, as a
worker's first `advance_run` would). A real `manage.py qcluster` (ORM broker, the default
embedded setup) advances them. A run's lateness is its `resumed` timeline entry's time minus
the time it waited until (`waited_until`): what a user sees between "send at 09:00" and the
send starting.

Prints p50, p90, p99 and max lateness in seconds. Goal: p99 within 2 s.

PostgreSQL only. Usage: .venv/bin/python bench/wakeups.py [--n 500] [--spread 30] [--workers 2]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_wakeups (created if
missing; its tables are emptied first).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench_wakeups")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from trigger import ensure_database  # noqa: E402


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--spread", type=float, default=30, help="seconds the wake-ups span")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--step", choices=("delay", "digest"), default="delay",
                        help="what the runs wait in: a delay, or each its own digest batch "
                             "(lateness: the carrier's `resumed` time - the window's end)")
    parser.add_argument("--lead", type=float,
                        help="seconds to park the runs in (default: 20 + 0.25 per run)")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.utils import timezone
    from django_q.models import OrmQ

    from notifications import engine
    from notifications.models import Run, StepLog
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
    from notifications.tasks import advance_run

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_trigger, notifications_recipient, django_q_ormq, "
                       "django_q_schedule CASCADE")
    window = 600  # a digest's window, seconds: each batch is opened `window` before its end
    workflow, _ = workflow_put(key="bench-wakeups", name="Bench wake-ups", steps=[
        StepSpec(ref="wait", type="delay", config={"until": "data.at"})
        if args.step == "delay" else
        StepSpec(ref="wait", type="digest", config={"window": {"seconds": window},
                                                     "key": "data.at"})])

    # Park every run before its time, in this process, as a worker would (advance_run): the
    # figures are about waking up, not about a backlog of first steps.
    lead = args.lead if args.lead is not None else 20 + args.n * 0.25
    start = timezone.now() + timedelta(seconds=lead)
    step = args.spread / args.n
    for i in range(args.n):
        at = start + timedelta(seconds=i * step)
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[f"w{i}"],
                                                  data={"at": at.isoformat()}))
        if args.step == "delay":
            advance_run(str(runs[0].id))
        else:  # open its batch as if `window` seconds before its end (a controlled clock)
            with transaction.atomic():
                run = Run.objects.select_for_update(of=("self",)).select_related(
                    "workflow", "recipient", "tenant", "trigger").get(pk=runs[0].id)
                engine.advance(run, now=at - timedelta(seconds=window))
    OrmQ.objects.filter(lock__lte=timezone.now()).delete()  # the first steps' tasks, done
    if timezone.now() > start:
        sys.exit("parking took longer than the lead; use a smaller --n")

    env = {**os.environ, "QUEUE_WORKERS": str(args.workers)}
    env.pop("QUEUE_BROKER", None)
    env.pop("REDIS_URL", None)
    log = open(Path(os.environ["CLARION_VAR_DIR"]) / "qcluster.log", "wb")  # noqa: SIM115
    cluster = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], cwd=ROOT,
                               env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + lead + args.spread + 120
        while Run.objects.filter(workflow=workflow).exclude(status="completed").exists():
            if time.monotonic() > deadline:
                sys.exit("not every run completed within the spread + 120 s")
            time.sleep(0.5)
    finally:
        cluster.terminate()
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            cluster.kill()
        log.close()

    from django.utils.dateparse import parse_datetime

    if args.step == "delay":
        late = sorted(
            (log.created_at - parse_datetime(log.detail["waited_until"])).total_seconds()
            for log in StepLog.objects.filter(run__workflow=workflow, event="resumed"))
        parked = StepLog.objects.filter(run__workflow=workflow, event="delayed").count()
    else:
        from notifications.models import DigestBatch

        ends = dict(DigestBatch.objects.filter(workflow=workflow)
                    .values_list("carrier_id", "closes_at"))
        late = sorted((log.created_at - ends[log.run_id]).total_seconds()
                      for log in StepLog.objects.filter(run__workflow=workflow,
                                                        event="resumed"))
        parked = StepLog.objects.filter(run__workflow=workflow, event="batched").count()
    print(f"{args.step} wake-ups: {len(late)} of {args.n} runs "
          f"(all parked first: {parked == args.n}), "
          f"{args.workers} workers, spread over {args.spread:.0f} s")
    print(f"  lateness  p50 {statistics.median(late):6.3f} s  p90 {percentile(late, 0.9):6.3f} s"
          f"  p99 {percentile(late, 0.99):6.3f} s  max {late[-1]:6.3f} s  min {late[0]:6.3f} s")


if __name__ == "__main__":
    main()
