"""Shared by the benchmarks: a free port, the figure and scaling lines that bench/run_all.py
collects, the CPU each process used, rounds' ratios, and a lean loopback SMTP sink."""

import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (chosen by the OS)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def result(name: str, value: float, floor: str, ratio: float, goal: float | None = None, *,
           at_most: bool = False, spread: tuple[float, float, int] | None = None) -> None:
    """Print one figure as a `FIGURE {json}` line: what, its value, its floor, the ratio, the goal
    (a ratio to reach: at least `goal`, or with `at_most` at most `goal`, e.g. a time within 5×
    its floor's), and for a ratio that is the median of rounds (`Rounds`) its `spread`: the
    lowest and highest round's ratio and the number of rounds.

    `bench/run_all.py` gathers these lines into bench/RESULTS.md's table.
    """
    print("FIGURE " + json.dumps({"name": name, "value": round(value, 2), "floor": floor,
                                  "ratio": round(ratio, 4), "goal": goal,
                                  "goal_op": "≤" if at_most else "≥",
                                  "spread": _spread(spread)}), flush=True)


def _spread(spread: tuple[float, float, int] | None) -> list | None:
    return None if spread is None else [round(spread[0], 3), round(spread[1], 3), spread[2]]


class Rounds:
    """A figure and its floor measured in alternating windows, floor first and last (F T F T …
    F), so that each figure window has a floor window on either side of it: a round's ratio is
    the figure's rate over the mean of those two floors' rates, which follows the machine's
    drifting speed better than one floor measured apart. `add_floor(rate)`, `add_figure(rate)`
    in that order; then `ratios`, `ratio` (their median) and `spread`."""

    def __init__(self) -> None:
        self.floors: list[float] = []
        self.figures: list[float] = []

    def add_floor(self, rate: float) -> None:
        assert len(self.floors) == len(self.figures), "floor and figure windows alternate"
        self.floors.append(rate)

    def add_figure(self, rate: float) -> None:
        assert len(self.floors) == len(self.figures) + 1, "a floor window comes first"
        self.figures.append(rate)

    @property
    def ratios(self) -> list[float]:
        """Each figure window's rate over the mean of the floor windows either side of it
        (before the last floor window, the one before it alone)."""
        out = []
        for i, rate in enumerate(self.figures):
            around = self.floors[i:i + 2]
            out.append(rate / max(statistics.fmean(around), 1e-9))
        return out

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def spread(self) -> tuple[float, float, int]:
        return min(self.ratios), max(self.ratios), len(self.ratios)

    @property
    def floor(self) -> float:
        """The floor windows' median rate."""
        return statistics.median(self.floors)

    @property
    def figure(self) -> float:
        """The figure windows' median rate."""
        return statistics.median(self.figures)

    def text(self) -> str:
        """'0.66 (0.61–0.71 over 4 rounds: 0.61 0.66 0.68 0.71)'."""
        low, high, count = self.spread
        return (f"{self.ratio:.2f} ({low:.2f}–{high:.2f} over {count} rounds: "
                + " ".join(f"{r:.2f}" for r in self.ratios) + ")")


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


def postgres_database(pid: int) -> str | None:
    """The database a PostgreSQL backend is connected to, from its process title ("postgres:
    15/main: <user> <database> <host>(<port>) <state>"); None for the server's own processes
    (the postmaster, the checkpointer, the WAL writer, …) or a process gone."""
    try:
        words = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").split()
    except OSError:
        return None
    # A backend's host is "[local]" or "address(port)"; the server's own processes have none.
    if len(words) >= 5 and (words[4] == b"[local]" or words[4].endswith(b")")):
        return words[3].decode(errors="replace")
    return None


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
    PostgreSQL and redis-server. PostgreSQL is every postgres process on this machine and the
    backends that ended during the window; with `database`, only the backends connected to that
    database (other sessions on the shared server, a test suite's, do not count), the server's
    own processes (checkpointer, WAL writer, …) and none that ended during the window.
    `start()`, then `stop()` returns {label: percent of one core}."""

    def __init__(self, roots: dict[str, int], alone: dict[str, int] | None = None, *,
                 database: str | None = None):
        self.roots, self.alone = roots, alone or {}  # alone: the process without its children
        self.database = database
        self.summed: dict[tuple[str, int], float] = {}  # every window's CPU seconds, added up
        self.seconds = 0.0  # every window's length, added up

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
            if self.database is not None and postgres_database(pid) not in (None,
                                                                             self.database):
                continue
            sample[("PostgreSQL", pid)] = cpu_seconds(
                pid, children=pid == postmaster and self.database is None)
        for pid in _named("redis-server"):
            sample[("Redis", pid)] = cpu_seconds(pid)
        return sample

    def start(self) -> None:
        self.began, self.first = time.monotonic(), self._sample()

    def stop(self) -> dict[str, list[float]]:
        """{label: [percent of one core of each of its processes that used any, largest
        first]}; PostgreSQL and Redis summed into one figure each."""
        seconds, last = time.monotonic() - self.began, self._sample()
        used: dict[tuple[str, int], float] = {}
        for key, value in last.items():
            # A process not seen at the start began during the window (or was missed then):
            # at most the window's length of it counts.
            before = self.first.get(key)
            used[key] = value - before if before is not None else min(value, seconds)
            self.summed[key] = self.summed.get(key, 0.0) + used[key]
        self.seconds += seconds
        return self._shares(used, seconds)

    def total(self) -> dict[str, list[float]]:
        """As stop() returns, over every window measured so far (start() … stop() pairs)."""
        return self._shares(self.summed, self.seconds)

    @staticmethod
    def _shares(by_process: dict[tuple[str, int], float], seconds: float,
                ) -> dict[str, list[float]]:
        used: dict[str, list[float]] = {}
        for (label, _), value in by_process.items():
            used.setdefault(label, []).append(value)
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
          cpu: dict[str, list[float]], *, spread: tuple[float, float, int] | None = None,
          ) -> None:
    """Print one row of the scaling table as a `SCALE {json}` line (bench/run_all.py gathers
    them): the figure, the processes it ran on, its value and unit, its floor and ratio (with
    its rounds' `spread`, as result()), and the CPU (percent of one core) of each process."""
    print("SCALE " + json.dumps({"what": what, "processes": processes, "value": round(value, 2),
                                 "unit": unit, "floor": floor, "ratio": round(ratio, 4),
                                 "spread": _spread(spread), "cpu": cpu_text(cpu)}), flush=True)


# --- A loopback SMTP server that accepts at once ------------------------------------------------

# What aiosmtpd (1.4, no TLS, no AUTH) answers to EHLO, so that a client says the same to either.
SIZE_LIMIT = 33554432
EHLO_LINES = (f"SIZE {SIZE_LIMIT}", "8BITMIME", "SMTPUTF8", "HELP")
END_OF_DATA = b"\r\n.\r\n"
# <local@domain>: what a forward-path must be, and a reverse-path unless it is the null one, <>.
MAILBOX = re.compile(r"<[^<>@\s]+@[^<>@\s]+>")


def smtp_sink_protocol(on_message=None, on_refusal=None, on_accepted=None):
    """An asyncio.Protocol class speaking as much SMTP as an SMTP client needs to hand over mail
    to a server that takes everything at once: the 220 greeting, EHLO (aiosmtpd's extensions,
    `EHLO_LINES`), HELO, MAIL, RCPT, DATA (354, then the data up to the lone "." line; 250),
    RSET, NOOP, QUIT (221, then closed). Commands may come pipelined. It refuses what a real
    server would (until 2026-12-03 it answered 250 or 354 to them), with aiosmtpd's codes: a
    command out of sequence (MAIL before HELO/EHLO or inside a transaction, RCPT before MAIL,
    DATA before RCPT: 503), a SIZE above SIZE_LIMIT (552), anything else (500); and, stricter
    than aiosmtpd 1.4, which takes any, a path that is not `<local@domain>` (501 without the
    brackets or with a space; 553 if malformed; the null path `<>` in MAIL only). With
    `on_message(mail_from, rcpt_tos, data)` each message is handed over, its data dot-unstuffed
    (RFC 5321 section 4.5.2) without the final "." line; without it the data is only scanned
    for its end. `on_refusal(reply)` is called with each reply that is not 2xx or 3xx, and
    `on_accepted()` with each message taken (its 250 to the end of the data)."""
    import asyncio

    class SmtpSink(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport, self.buffer, self.in_data = transport, b"", False
            self.greeted, self.mail_from, self.rcpt_tos, self.scanned = False, None, [], 0
            transport.write(b"220 127.0.0.1 ESMTP bench sink\r\n")

        def data_received(self, chunk: bytes) -> None:
            self.buffer += chunk
            replies = []
            while self.buffer:
                if self.in_data:
                    # The data ends at CRLF "." CRLF; a data that is empty is "." CRLF at once.
                    if self.buffer.startswith(b".\r\n") and self.scanned == 0:
                        end, data = 3, b""
                    else:
                        end = self.buffer.find(END_OF_DATA, max(0, self.scanned - 4))
                        if end < 0:
                            self.scanned = len(self.buffer)
                            break
                        data, end = self.buffer[:end + 2], end + len(END_OF_DATA)
                    self.buffer, self.in_data, self.scanned = self.buffer[end:], False, 0
                    if on_message is not None:  # a line's leading "." was doubled: undone
                        data = data.replace(b"\r\n.", b"\r\n")
                        on_message(self.mail_from, self.rcpt_tos,
                                   data[1:] if data.startswith(b".") else data)
                    self.mail_from, self.rcpt_tos = None, []
                    if on_accepted is not None:
                        on_accepted()
                    replies.append(b"250 OK\r\n")
                    continue
                line_end = self.buffer.find(b"\r\n")
                if line_end < 0:
                    break
                line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2:]
                verb = line[:4].upper()
                if verb == b"QUIT":
                    self.transport.write(b"".join(replies) + b"221 Bye\r\n")
                    self.transport.close()
                    return
                reply = self.command(verb, line.decode(errors="replace"))
                if on_refusal is not None and reply[:1] not in (b"2", b"3"):
                    on_refusal(reply)
                replies.append(reply)
            if replies:
                self.transport.write(b"".join(replies))

        def command(self, verb: bytes, line: str) -> bytes:
            """The reply to one command line (QUIT aside)."""
            if verb in (b"EHLO", b"HELO"):
                self.greeted, self.mail_from, self.rcpt_tos = True, None, []
                if verb == b"HELO":
                    return b"250 127.0.0.1\r\n"
                return (b"".join(b"250-%s\r\n" % text.encode()
                                 for text in ("127.0.0.1", *EHLO_LINES[:-1]))
                        + b"250 %s\r\n" % EHLO_LINES[-1].encode())
            if verb == b"MAIL":
                if not self.greeted:
                    return b"503 Error: send HELO first\r\n"
                if self.mail_from is not None:
                    return b"503 Error: nested MAIL command\r\n"
                path, params = self.path(line, "FROM:")
                if not path:
                    return b"501 Syntax: MAIL FROM: <address>\r\n"
                if path != "<>" and not MAILBOX.fullmatch(path):
                    return b"553 5.1.3 Error: malformed address\r\n"
                for param in params:
                    key, _, value = param.partition("=")
                    if key.upper() == "SIZE":
                        if not value.isdigit():
                            return b"501 Syntax: MAIL FROM: <address> [SP <mail-parameters>]\r\n"
                        if int(value) > SIZE_LIMIT:
                            return (b"552 Error: message size exceeds fixed maximum message "
                                    b"size\r\n")
                self.mail_from = " ".join((path, *params))
                return b"250 OK\r\n"
            if verb == b"RCPT":
                if self.mail_from is None:
                    return b"503 Error: need MAIL command\r\n"
                path, _ = self.path(line, "TO:")
                if not path or path == "<>":
                    return b"501 Syntax: RCPT TO: <address>\r\n"
                if not MAILBOX.fullmatch(path):
                    return b"553 5.1.3 Error: malformed address\r\n"
                self.rcpt_tos.append(path)
                return b"250 OK\r\n"
            if verb == b"DATA":
                if self.mail_from is None:
                    return b"503 Error: need MAIL command\r\n"
                if not self.rcpt_tos:
                    return b"503 Error: need RCPT command\r\n"
                self.in_data = True
                return b"354 End data with <CR><LF>.<CR><LF>\r\n"
            if verb == b"RSET":
                self.mail_from, self.rcpt_tos = None, []
                return b"250 OK\r\n"
            if verb == b"NOOP":
                return b"250 OK\r\n"
            return b"500 Error: command not recognized\r\n"

        @staticmethod
        def path(line: str, keyword: str) -> tuple[str, list[str]]:
            """("<path>", [parameters]) of "MAIL FROM:<path> params" (or RCPT TO:), the path
            "" if the keyword or a <…> path is missing."""
            argument = line[5:].lstrip()
            if not argument.upper().startswith(keyword):
                return "", []
            path, *params = argument[len(keyword):].strip().split() or [""]
            return (path if path.startswith("<") and path.endswith(">") else ""), params

    return SmtpSink


def smtp_sink_serve(port: int, kind: str = "lean", counter: str = "") -> None:
    """Serve on 127.0.0.1:`port` until killed (SmtpSinkProcess's child): smtp_sink_protocol(),
    or with `kind` "aiosmtpd" aiosmtpd's server with a handler that accepts every message. The
    lean one, on SIGTERM, prints "refused <count>" (its replies that were not 2xx or 3xx) and
    exits; given a `counter` file (8 bytes), it keeps there the number of messages it took
    (an unsigned 64-bit little-endian integer, written in place through mmap)."""
    import asyncio
    import signal

    if kind == "aiosmtpd":
        import logging

        from aiosmtpd.controller import Controller

        class Accept:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802 (its name)
                return "250 OK"

        logging.getLogger("mail.log").setLevel(logging.WARNING)
        Controller(Accept(), hostname="127.0.0.1", port=port).start()
        print("ready", flush=True)
        while True:
            time.sleep(3600)

    refused, on_accepted = [], None
    if counter:
        import mmap

        with open(counter, "r+b") as file:
            counted = mmap.mmap(file.fileno(), 8)
        taken = [0]

        def on_accepted() -> None:
            taken[0] += 1
            struct.pack_into("<Q", counted, 0, taken[0])

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            smtp_sink_protocol(on_refusal=refused.append, on_accepted=on_accepted),
            "127.0.0.1", port)
        stopped = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
        print("ready", flush=True)
        await stopped
        server.close()
        print(f"refused {len(refused)}", flush=True)

    asyncio.run(serve())


class SmtpSinkProcess:
    """A loopback SMTP server that accepts at once (smtp_sink_serve: `kind` "lean", the
    default, or "aiosmtpd") in a process of its own on a free port (`port`, `pid`), so that its
    CPU is measured apart from the benchmark's. `accepted()`: how many messages the lean sink
    has taken so far (read from a file it writes through mmap: no round trip, no query), None
    for aiosmtpd's. `stop()` ends it and returns how many replies the lean sink gave that were
    not 2xx or 3xx (None for aiosmtpd's, or if it did not say)."""

    def __init__(self, kind: str = "lean") -> None:
        import mmap

        self.port, self.kind = free_port(), kind
        with tempfile.NamedTemporaryFile(prefix="clarion-bench-sink-", delete=False) as counter:
            counter.write(bytes(8))
        self.counter_path = counter.name
        with open(self.counter_path, "r+b") as file:
            self._counted = mmap.mmap(file.fileno(), 8)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
             "from common import smtp_sink_serve; "
             "smtp_sink_serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])",
             str(Path(__file__).resolve().parent), str(self.port), kind, self.counter_path],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
        if self.process.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError("the SMTP sink did not start")
        self.pid = self.process.pid

    def accepted(self) -> int | None:
        """The messages the lean sink has taken since it started; None for aiosmtpd's."""
        return struct.unpack_from("<Q", self._counted)[0] if self.kind == "lean" else None

    def stop(self) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        Path(self.counter_path).unlink(missing_ok=True)
        said = self.process.stdout.read().split()
        self.process.stdout.close()
        return int(said[1]) if len(said) == 2 and said[0] == b"refused" else None


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
