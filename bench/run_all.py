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

# (script, arguments): each sized so that the whole runs in under 10 minutes on 2 cores (the
# full-size runs are each script's defaults; bench/README.md).
RUNS = [
    ("trigger.py", ["--n", "100"]),
    # Floor and figure in alternating windows or drains: the ratio the median of the rounds'.
    # Five trigger rounds: with three, one process's rounds ranged over 0.17 (0.44-0.61) on a
    # quiet machine, and the median of three moves with a single round.
    ("trigger_api.py", ["--seconds", "2", "--rounds", "5", "--servers",
                        "uvicorn:1,uvicorn:2,uvicorn:4"]),
    ("pipeline.py", ["--n", "400", "--rounds", "3"]),  # 4 advance batches a drain
    ("delivery.py", ["--n", "300", "--rounds", "1"]),
    ("wakeups.py", ["--n", "100", "--spread", "10"]),
    ("inbox_latency.py", ["--triggers", "100", "--rate", "10", "--modes", "redis"]),
    ("websockets.py", ["--sockets", "5000", "--burst", "1000"]),
    ("fanout.py", ["--subscribers", "500", "--events", "500", "--keys", "50"]),
    # Their data sets are kept between runs in their own databases: the first run builds them.
    ("inbox_feed.py", ["--items", "200000", "--requests", "200"]),
    ("analytics.py", ["--messages", "200000", "--loads", "5"]),
    ("profiles.py", ["--n", "50"]),
]
# Benchmarks that keep a data set, each in its own database (DATABASE_URL's name + suffix).
OWN_DATABASE = {"inbox_feed.py": "_inbox", "analytics.py": "_analytics", "fanout.py": "_fanout"}


def script_env(script: str) -> dict[str, str]:
    """The environment of one benchmark: this one's, with its own database where it keeps a
    data set (a DATABASE_URL given to `make bench` is the others' database)."""
    env = dict(os.environ)
    url = env.get("DATABASE_URL")
    if url and script in OWN_DATABASE:
        base, _, query = url.partition("?")
        env["DATABASE_URL"] = base + OWN_DATABASE[script] + (f"?{query}" if query else "")
    elif script in OWN_DATABASE:
        env.pop("DATABASE_URL", None)  # the script's own default database
    return env


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


def ratio_text(figure: dict) -> str:
    """A figure's ratio; for the median of rounds, with the lowest and highest round's:
    '0.61 (0.59–0.62, 4 rounds)'."""
    if not figure.get("spread"):
        return f"{figure['ratio']:.2f}"
    low, high, rounds = figure["spread"]
    return f"{figure['ratio']:.2f} ({low:.2f}–{high:.2f}, {rounds} rounds)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated script names, without .py")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    started = datetime.now(UTC)
    head = machine()
    figures, scaling, sections, failed = [], [], [], []
    for script, script_args in RUNS:
        if only and script.removesuffix(".py") not in only:
            continue
        print(f"== {script} {' '.join(script_args)}", flush=True)
        begin = time.monotonic()
        done = subprocess.run([sys.executable, str(BENCH / script), *script_args], cwd=ROOT,
                              capture_output=True, text=True, env=script_env(script))
        seconds = time.monotonic() - begin
        output = done.stdout + (f"\n{done.stderr[-3000:]}" if done.returncode else "")
        print(output, flush=True)
        for line in done.stdout.splitlines():
            if line.startswith("FIGURE "):
                figures.append(json.loads(line[len("FIGURE "):]))
            elif line.startswith("SCALE "):
                scaling.append(json.loads(line[len("SCALE "):]))
        status = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
        if done.returncode:
            failed.append(script)
        shown = "\n".join(line for line in output.splitlines()
                          if not line.startswith(("FIGURE ", "SCALE ")))
        sections.append(f"### {script} {' '.join(script_args)}\n\n{status}, {seconds:.0f} s\n\n"
                        f"```\n{shown.strip()}\n```\n")
    total = (datetime.now(UTC) - started).total_seconds()
    table = ["| figure | value | floor | ratio | goal |", "|---|---|---|---|---|"]
    for f in figures:
        goal = (f"{f.get('goal_op', '≥')} {f['goal']:.2f}" if f.get("goal") is not None
                else "")
        table.append(f"| {f['name']} | {f['value']:.1f} | {f['floor']} | {ratio_text(f)} | "
                     f"{goal} |")
    rows = ["| figure | processes | value | floor | ratio | CPU of each process (% of one core) |",
            "|---|---|---|---|---|---|"]
    for r in scaling:
        rows.append(f"| {r['what']} | {r['processes']} | {r['value']:.1f} {r['unit']} | "
                    f"{r['floor']} | {ratio_text(r)} | {r['cpu']} |")
    print("\nfigure | value | floor | ratio | goal")
    for f in figures:
        print(f"{f['name']} | {f['value']:.1f} | {f['floor']} | {ratio_text(f)} | "
              + (f"{f.get('goal_op', '≥')} {f['goal']}" if f.get("goal") is not None else ""))
    text = "\n".join([
        "# Benchmark results", "",
        f"Written by `make bench` (bench/run_all.py) on {started:%Y-%m-%d %H:%M} UTC, "
        f"in {total / 60:.1f} minutes. Each figure's floor is measured in the same run on the "
        "same machine; see bench/README.md for what each benchmark measures. Where a ratio "
        "has a range, its figure and floor were measured in alternating windows (trigger API) "
        "or drains (pipeline): the ratio is the median of the rounds' (each figure window's "
        "rate over the mean of the floor windows either side), the range the lowest and "
        "highest round's, the value and floor the medians of their windows.", "",
        "## Machine", "", *head, "",
        "## Figures against their floors", "", *table, "",
        "## Scaling with processes", "",
        "The same figures against the number of web processes (uvicorn `--workers`) and of "
        "`qcluster` workers, with the CPU each process used while measured (PostgreSQL: every "
        "backend on the machine, shared with whatever else ran). docs/deploy.md#capacity-model "
        "reads them.", "", *rows, "",
        "Benchmarks without a row above print their floors and ratios in their own output:", "",
        "## Output", "", *sections])
    args.out.write_text(text + "\n")
    print(f"wrote {args.out} ({total / 60:.1f} min)" + (f"; FAILED: {failed}" if failed else ""))
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
