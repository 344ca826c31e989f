"""`make bench`: every benchmark, sized to finish in under 10 minutes on 2 cores, and
bench/RESULTS.md: the machine, the date, every figure with its floor and ratio.

Each benchmark runs as its own process with the environment given (DATABASE_URL, REDIS_URL: the
benchmarks' own defaults otherwise); its whole output goes into RESULTS.md, and the `FIGURE`
lines it prints (bench/common.py) into the summary table. A benchmark that fails is reported as
such and the others still run; the exit status is then 1.

Usage: .venv/bin/python bench/run_all.py [--only trigger_api,pipeline] [--out bench/RESULTS.md]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# (script, arguments): each sized for the 10-minute budget of `make bench` on 2 cores.
RUNS = [
    ("trigger.py", ["--n", "200"]),
    ("trigger_api.py", ["--seconds", "4", "--servers", "daphne:1,uvicorn:1,uvicorn:2,granian:2"]),
    ("pipeline.py", ["--n", "100"]),
    ("delivery.py", ["--n", "300", "--rounds", "1"]),
    ("wakeups.py", ["--n", "100", "--spread", "10"]),
    ("inbox_latency.py", ["--triggers", "100", "--rate", "10", "--modes", "redis"]),
    ("fanout.py", ["--subscribers", "1000", "--events", "1000", "--keys", "100"]),
    # Builds its 1,000,000-item data set once (kept between runs): the first run takes longer.
    ("inbox_feed.py", ["--requests", "200"]),
]


def machine() -> list[str]:
    """Cores, memory, Python, PostgreSQL and Redis versions of this machine."""
    import psycopg
    import redis
    from dj_database_url import parse

    lines = [f"- CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
             f"load average {os.getloadavg()[0]:.1f} at the start"]
    with open("/proc/meminfo") as meminfo:
        total_kb = int(meminfo.readline().split()[1])
    lines.append(f"- Memory: {total_kb / 1024 / 1024:.1f} GiB")
    lines.append(f"- Python {platform.python_version()}, {platform.platform()}")
    db = parse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    try:
        with psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"],
                             password=db["PASSWORD"] or None, dbname="postgres") as conn:
            lines.append(f"- {conn.execute('SELECT version()').fetchone()[0]}")
    except psycopg.Error as error:
        lines.append(f"- PostgreSQL: unreachable ({error})")
    try:
        info = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3")).info()
        lines.append(f"- Redis {info['redis_version']}")
    except redis.RedisError as error:
        lines.append(f"- Redis: unreachable ({error})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated script names, without .py")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    started = datetime.now(UTC)
    head = machine()
    figures, sections, failed = [], [], []
    for script, script_args in RUNS:
        if only and script.removesuffix(".py") not in only:
            continue
        print(f"== {script} {' '.join(script_args)}", flush=True)
        begin = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH / script), *script_args], cwd=ROOT,
                              capture_output=True, text=True)
        seconds = time.monotonic() - begin
        output = done.stdout + (f"\n{done.stderr[-3000:]}" if done.returncode else "")
        print(output, flush=True)
        for line in done.stdout.splitlines():
            if line.startswith("FIGURE "):
                figures.append(json.loads(line[len("FIGURE "):]))
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        if done.returncode:
            failed.append(script)
        shown = "\n".join(line for line in output.splitlines() if not line.startswith("FIGURE "))
        sections.append(f"### {script} {' '.join(script_args)}\n\n{status}, {seconds:.0f} s\n\n"
                        f"```\n{shown.strip()}\n```\n")
    total = (datetime.now(UTC) - started).total_seconds()
    table = ["| figure | value | floor | ratio | goal |", "|---|---|---|---|---|"]
    for f in figures:
        goal = f"≥ {f['goal']:.2f}" if f.get("goal") is not None else ""
        table.append(f"| {f['name']} | {f['value']:.1f} | {f['floor']} | {f['ratio']:.2f} | "
                     f"{goal} |")
    text = "\n".join([
        "# Benchmark results", "",
        f"Written by `make bench` (bench/run_all.py) on {started:%Y-%m-%d %H:%M} UTC, "
        f"in {total / 60:.1f} minutes. Each figure's floor is measured in the same run on the "
        "same machine; see bench/README.md for what each benchmark measures.", "",
        "## Machine", "", *head, "",
        "## Figures against their floors", "", *table, "",
        "Benchmarks without a row above print their floors and ratios in their own output:", "",
        "## Output", "", *sections])
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} ({total / 60:.1f} min)" + (f"; FAILED: {failed}" if failed else ""))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
