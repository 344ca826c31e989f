"""The cyclic garbage collector's passes in a benchmarked server process, and what it tracks.

`serve_recorded(app, port, report)` runs uvicorn on `app` in this process with every collector
pass recorded (gc.callbacks: its generation, wall time and duration); each SIGUSR1 writes what
was recorded so far to `report` (JSON, replaced atomically), with the number of objects the
collector tracks (and those frozen out of its sight), and, on SIGUSR2, also the tracked objects
counted by type. `read(pid, report)` asks for and returns that report from another process.
"""

import asyncio
import gc
import json
import os
import signal
import time
import types
from collections import Counter
from pathlib import Path


class PauseLog:
    """Every collector pass of this process, as [end (time.time()), generation, ms, collected]."""

    def __init__(self):
        self.passes: list[list] = []
        self._start = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.passes.append([time.time(), info["generation"],
                                (time.perf_counter() - self._start) * 1000, info["collected"]])


def _kind(thing) -> str:
    """A tracked object's type; a coroutine's, a task's and a function's own name with it."""
    # type(), never isinstance(): that reads __class__, which a lazy object evaluates.
    kind = f"{type(thing).__module__}.{type(thing).__qualname__}"
    if issubclass(type(thing), asyncio.Task):
        thing = thing.get_coro()
    if type(thing) in (types.CoroutineType, types.GeneratorType):
        kind += f" {thing.__qualname__}"
    elif type(thing) is types.FunctionType:
        kind += f" {thing.__module__}.{thing.__qualname__}"
    return kind


def _census() -> dict[str, int]:
    counts = Counter(_kind(thing) for thing in gc.get_objects())
    return dict(counts.most_common())


def serve_recorded(app: str, port: int, report: Path, **options) -> None:
    """uvicorn serving `app` ("module:attribute") on 127.0.0.1:`port`, its passes recorded;
    `options`: more of uvicorn.run's keyword arguments (ws_ping_interval…)."""
    import uvicorn

    log = PauseLog()
    gc.callbacks.append(log)

    def write(signum, frame) -> None:
        data = {"passes": log.passes, "tracked": len(gc.get_objects()),
                "frozen": gc.get_freeze_count(), "counts": gc.get_count(),
                "thresholds": gc.get_threshold()}
        if signum == signal.SIGUSR2:
            data["census"] = _census()
        partial = report.with_suffix(".partial")
        partial.write_text(json.dumps(data))
        partial.replace(report)

    signal.signal(signal.SIGUSR1, write)
    signal.signal(signal.SIGUSR2, write)
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning",
                **options)


async def read(pid: int, report: Path, *, census: bool = False, timeout: float = 30) -> dict:
    """The report of server `pid` (serve_recorded), asked for now (with `census`: by type)."""
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2 if census else signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while not report.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no GC report from {pid}")
        await asyncio.sleep(0.05)
    return json.loads(report.read_text())


def summary(passes: list[list], start: float = 0.0, end: float = float("inf")) -> dict:
    """Count, max and total ms of the passes that ended within [start, end] (time.time()), and
    of the full (generation 2) ones among them."""
    chosen = [p for p in passes if start <= p[0] <= end]
    full = [p for p in chosen if p[1] == 2]
    return {"count": len(chosen), "max_ms": max((p[2] for p in chosen), default=0.0),
            "total_ms": sum(p[2] for p in chosen), "full": len(full),
            "full_max_ms": max((p[2] for p in full), default=0.0)}
