"""CPU per run of the advance: tasks._advance_batch over in-app + email runs, in-process.

N single-recipient triggers of pipeline.py's workflow (an in-app step, then an email step) are
made through the trigger service, their queued tasks dropped, then their runs are advanced by
`_advance_batch` in batches of CLARION_ADVANCE_BATCH_SIZE (the inbox items, both messages, the
timeline, the queued deliveries: the advance an advance_lane task does), and each batch's
time.process_time() of this process (Python's side: PostgreSQL's own CPU is not in it) and wall
time are summed. `--rounds` rounds of N runs; a first batch before them warms the caches up.
`--profile` adds cProfile of the last round (the top functions by own and by cumulative time).

PostgreSQL. Usage: .venv/bin/python bench/advance_cpu.py [--n 800] [--rounds 3] [--profile]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import gc
import os
import statistics
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
os.environ["QUEUE_BROKER"] = "orm"
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import pipeline_workflow  # noqa: E402
from trigger import ensure_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.utils import timezone
    from django_q.models import OrmQ

    from clarion.collector import freeze_loaded
    from notifications.models import Run
    from notifications.services import TriggerRequest, trigger_workflow
    from notifications.tasks import _advance_batch

    call_command("migrate", verbosity=0)
    freeze_loaded()  # as a qcluster worker does as it starts
    collector_ms = [0.0, 0]  # the cyclic collector's passes during the measured batches

    began = [0.0]

    def timed_pass(phase: str, info: dict) -> None:
        if phase == "start":
            began[0] = time.process_time()
        elif measuring:
            collector_ms[0] += (time.process_time() - began[0]) * 1000
            collector_ms[1] += info["generation"] == 2

    gc.callbacks.append(timed_pass)
    measuring = False
    workflow = pipeline_workflow()
    size = settings.CLARION["ADVANCE_BATCH_SIZE"]

    def runs_made(n: int) -> list[str]:
        tag = uuid.uuid4().hex[:8]
        for i in range(n):
            trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{
                "id": f"{tag}-{i}", "name": f"User {i}", "email": f"{tag}-{i}@example.com"}],
                data={"text": "Your invoice is ready"}))
        OrmQ.objects.all().delete()
        return [str(pk) for pk in Run.objects.filter(
            recipient__external_id__startswith=f"{tag}-").order_by("pk").values_list(
            "pk", flat=True)]

    def advanced(ids: list[str]) -> tuple[float, float]:
        nonlocal measuring
        cpu = wall = 0.0
        measuring = True
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            c, w = time.process_time(), time.perf_counter()
            claimed = _advance_batch(chunk, now=timezone.now())
            cpu += time.process_time() - c
            wall += time.perf_counter() - w
            assert claimed == len(chunk), f"{claimed} of {len(chunk)} claimed"
        measuring = False
        return cpu, wall

    advanced(runs_made(size))  # warm up
    cpus, walls = [], []
    for r in range(args.rounds):
        collector_ms[:] = [0.0, 0]
        ids = runs_made(args.n)
        if args.profile and r == args.rounds - 1:
            import cProfile
            import pstats

            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            cpu, wall = advanced(ids)
            profiler.disable()
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(45)
            stats.sort_stats("cumulative").print_stats(70)
        else:
            cpu, wall = advanced(ids)
        done = Run.objects.filter(pk__in=ids, status="completed").count()
        assert done == len(ids), f"{done} of {len(ids)} runs completed"
        cpus.append(cpu / len(ids) * 1000)
        walls.append(wall / len(ids) * 1000)
        print(f"round {r + 1}: {cpus[-1]:.3f} ms CPU, {walls[-1]:.3f} ms wall a run "
              f"({len(ids)} runs, batches of {size}; the collector "
              f"{collector_ms[0] / len(ids):.3f} ms a run, {collector_ms[1]} full passes)",
              flush=True)
    OrmQ.objects.all().delete()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"median: {statistics.median(cpus):.3f} ms CPU, {statistics.median(walls):.3f} ms wall "
          f"a run; load average {' '.join(load)}")


if __name__ == "__main__":
    main()
