"""Shared by the benchmarks: a free port, and the figure lines that bench/run_all.py collects."""

import json
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (chosen by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def result(name: str, value: float, floor: str, ratio: float, goal: float | None = None) -> None:
    """Print one figure as a `FIGURE {json}` line: what, its value, its floor, the ratio, the goal.

    `bench/run_all.py` gathers these lines into bench/RESULTS.md's table.
    """
    print("FIGURE " + json.dumps({"name": name, "value": round(value, 2), "floor": floor,
                                  "ratio": round(ratio, 3), "goal": goal}), flush=True)
