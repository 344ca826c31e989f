"""Shared by the benchmarks: a free port, the figure and scaling lines that bench/run_all.py
collects, and the CPU each process used."""

import json
import os
import socket
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (chosen by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def result(name: str, value: float, floor: str, ratio: float, goal: float | None = None, *,
           at_most: bool = False) -> None:
    """Print one figure as a `FIGURE {json}` line: what, its value, its floor, the ratio, the goal
    (a ratio to reach: at least `goal`, or with `at_most` at most `goal`, e.g. a time within 5×
    its floor's).

    `bench/run_all.py` gathers these lines into bench/RESULTS.md's table.
    """
    print("FIGURE " + json.dumps({"name": name, "value": round(value, 2), "floor": floor,
                                  "ratio": round(ratio, 3), "goal": goal,
                                  "goal_op": "≤" if at_most else "≥"}), flush=True)


# --- CPU of processes, for the scaling table ----------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 on), or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def process_tree(pid: int) -> list[int]:
    """`pid` and every process under it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def _named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) process `pid` has used; with `children`, also those of its
    children that ended and it waited for (a postmaster's finished backends). 0 if gone."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK_TICKS


class CpuMeter:
    """The CPU each process used over a window, as a share of one core: the process trees of
    `roots` (label → pid), the processes of `alone` (label → pid) without their children,
    PostgreSQL (every postgres process on this machine, and the backends that ended during the
    window: the server is shared with whatever else runs) and redis-server. `start()`, then
    `stop()` returns {label: percent of one core}."""

    def __init__(self, roots: dict[str, int], alone: dict[str, int] | None = None):
        self.roots, self.alone = roots, alone or {}  # alone: the process without its children

    def _sample(self) -> dict[tuple[str, int], float]:
        sample = {}
        for label, root in self.roots.items():
            for pid in process_tree(root):
                sample[(label, pid)] = cpu_seconds(pid)
        for label, pid in self.alone.items():
            sample[(label, pid)] = cpu_seconds(pid)
        postgres = _named("postgres")
        postmaster = min(postgres, default=None)  # started first: the lowest pid
        for pid in postgres:
            sample[("PostgreSQL", pid)] = cpu_seconds(pid, children=pid == postmaster)
        for pid in _named("redis-server"):
            sample[("Redis", pid)] = cpu_seconds(pid)
        return sample

    def start(self) -> None:
        self.began, self.first = time.monotonic(), self._sample()

    def stop(self) -> dict[str, list[float]]:
        """{label: [percent of one core of each of its processes that used any, largest
        first]}; PostgreSQL and Redis summed into one figure each."""
        seconds, last = time.monotonic() - self.began, self._sample()
        used: dict[str, list[float]] = {}
        for key, value in last.items():
            # A process not seen at the start began during the window (or was missed then):
            # at most the window's length of it counts.
            before = self.first.get(key)
            used.setdefault(key[0], []).append(value - before if before is not None
                                               else min(value, seconds))
        shares = {}
        for label, values in used.items():
            percents = sorted((100 * v / max(seconds, 1e-6) for v in values if v > 0),
                              reverse=True)
            shares[label] = [sum(percents)] if label in ("PostgreSQL", "Redis") else percents
        return shares


def cpu_text(shares: dict[str, list[float]]) -> str:
    """'workers 85+80 %, PostgreSQL 60 %, …' from CpuMeter.stop()."""
    parts = []
    for label, percents in shares.items():
        if percents:
            parts.append(f"{label} " + "+".join(f"{p:.0f}" for p in percents) + " %")
    return ", ".join(parts)


def scale(what: str, processes: str, value: float, unit: str, floor: str, ratio: float,
          cpu: dict[str, list[float]]) -> None:
    """Print one row of the scaling table as a `SCALE {json}` line (bench/run_all.py gathers
    them): the figure, the processes it ran on, its value and unit, its floor and ratio, and
    the CPU (percent of one core) of each process."""
    print("SCALE " + json.dumps({"what": what, "processes": processes, "value": round(value, 2),
                                 "unit": unit, "floor": floor, "ratio": round(ratio, 3),
                                 "cpu": cpu_text(cpu)}), flush=True)


def pipeline_workflow():
    """The in-app + email workflow of pipeline.py, advance_cpu.py and delivery_cpu.py (key
    "bench-pipeline"), put (created or updated) after cancelling what an earlier, interrupted
    run left unfinished (running or waiting runs, queued or sending messages), which would join
    this run's batches. Needs Django set up and migrated; returns the Workflow."""
    from notifications.models import Message, Run
    from notifications.services import StepSpec, workflow_put

    Run.objects.filter(status__in=("running", "waiting")).update(status="cancelled")
    Message.objects.filter(status__in=("queued", "sending")).update(status="cancelled")
    workflow, _ = workflow_put(key="bench-pipeline", name="Bench pipeline", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ recipient.name }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Welcome {{ recipient.name }}", "html": "<p>{{ data.text }}</p>"}}),
    ])
    return workflow
