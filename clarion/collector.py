"""The cyclic garbage collector's policy in a web process: what lives long is frozen out of its
passes, and thawed and collected once in a while, when the process is quiet. (A qcluster worker
only freezes what is loaded as it starts: `freeze_loaded`.)

A full pass of Python's collector walks every tracked object and stops the event loop while it
does: ~1.2-1.4 s at 5,000 held inbox sockets (~130 tracked objects each, and Django's own
~200,000) on the 2-core bench machine, several times a minute while sockets connect or items are
pushed (bench/websockets.py), each pass a pause every socket's frames wait behind. Here:

- at startup, what Django and the apps loaded is frozen (`gc.freeze()`: out of the passes);
- every FREEZE_SECONDS (`CLARION_GC_FREEZE_SECONDS`, 30) whatever the process holds then is
  frozen too (an instant: the collector's lists are spliced): the held sockets' state, which
  the full passes would otherwise walk again and again;
- every THAW_SECONDS (`CLARION_GC_THAW_SECONDS`, 900), at the first second the process is quiet
  (no more young collections than its median second of the last minute: not during a burst),
  or unconditionally at twice that, everything is unfrozen, collected in one full pass, and
  frozen again. Freezing keeps the cyclic garbage of what was frozen (a closed socket leaves a
  few objects in reference cycles) until then; the thaw gives it back, so memory over socket
  churn stays bounded (tests/test_collector.py, bench/websockets.py --churn).

- while the channel layer hands a burst to the sockets (a read of many messages at once,
  `busy()`), the automatic full passes are held off (the third generation's threshold raised)
  until BUSY_GRACE seconds after the last such read, BUSY_LONGEST seconds at most in a row, and
  no thaw starts: the full pass the burst's objects would have set off (0.1-0.2 s at 5,000 held
  sockets, bench/websockets.py) comes after its frames, not among them. Nor does the periodic
  freeze, whose collection of the young generations (the burst's own objects in them) stopped
  the event loop for up to 0.5 s in a burst on the loaded bench machine; it comes once the hold
  ends.

Reference counting frees everything that is not in a cycle as before, frozen or not. 0 turns
the periodic freezing (or the thaw) off. Each thaw is logged (objects, garbage found, pause).
"""

import gc
import logging
import statistics
import threading
import time
from collections import deque

logger = logging.getLogger(__name__)


class Schedule:
    """When to freeze and when to thaw, as a function of the clock and the collector's young
    passes (pure: tests drive it with made-up seconds)."""

    def __init__(self, *, freeze_seconds: float, thaw_seconds: float, now: float):
        self.freeze_seconds = freeze_seconds
        self.thaw_seconds = thaw_seconds
        self.frozen_at = now
        self.thawed_at = now
        self.young = deque(maxlen=60)  # young collections in each of the last 60 checks

    def step(self, now: float, young_collections: int, busy: bool = False) -> str | None:
        """One check (about a second after the last): "thaw", "freeze" or None, given the
        young (generation 0) collections since the last check, and whether a burst is being
        delivered (`busy`: no thaw then but at twice thaw_seconds, and no freeze: its collection
        of the young generations, with the GIL held, would stop the burst's frames)."""
        quiet = not busy and (not self.young
                              or young_collections <= statistics.median(self.young))
        self.young.append(young_collections)
        since_thaw = now - self.thawed_at
        if self.thaw_seconds and (since_thaw >= 2 * self.thaw_seconds
                                  or since_thaw >= self.thaw_seconds and quiet):
            self.thawed_at = self.frozen_at = now
            return "thaw"
        if self.freeze_seconds and now - self.frozen_at >= self.freeze_seconds and not busy:
            self.frozen_at = now
            return "freeze"
        return None


class FullPassHold:
    """The automatic full passes held off while a burst is delivered (see above): `busy()` from
    the event loop at each read of a burst, `tick()` from the collector's thread (every
    second), which lets them run again once the burst is over or has lasted `longest` seconds
    (then not held again for as long, so a full pass can come)."""

    def __init__(self, *, grace: float, longest: float):
        self.grace, self.longest = grace, longest
        self.lock = threading.Lock()
        self.since: float | None = None  # held since (time.monotonic()), or None
        self.busy_until = 0.0
        self.not_before = 0.0
        self.thresholds = gc.get_threshold()
        self.stopped = False  # no tick comes any more (stop)

    def busy(self, now: float) -> None:
        with self.lock:
            if self.stopped:
                return
            self.busy_until = now + self.grace
            if self.since is None and now >= self.not_before:
                self.since = now
                self.thresholds = gc.get_threshold()
                gc.set_threshold(*self.thresholds[:2], HELD_THRESHOLD)

    def tick(self, now: float) -> bool:
        """Let the full passes run again if the burst is over or too long; whether they are
        held still."""
        with self.lock:
            if self.since is None:
                return False
            if now < self.busy_until and now - self.since < self.longest:
                return True
            gc.set_threshold(*self.thresholds)
            if now - self.since >= self.longest:
                self.not_before = now + self.longest
            self.since = None
            return False

    def stop(self) -> None:
        """No tick comes any more (the collector's thread ends): let the full passes run, and
        hold them no more."""
        with self.lock:
            self.stopped = True
        self.tick(float("inf"))


# A third-generation threshold no process reaches: CPython runs a full pass when more
# young-generation passes than this have run since the last one.
HELD_THRESHOLD = 1 << 30
BUSY_GRACE = 1.0  # seconds after a burst's last read
BUSY_LONGEST = 10.0  # seconds held at most in a row
_hold: FullPassHold | None = None  # while the schedule runs (install)
_thread: threading.Thread | None = None  # the schedule's thread (install), whose tick lets go


def busy() -> None:
    """The channel layer is handing a burst of messages to this process's sockets: hold off
    the collector's full passes for a while. Nothing unless the schedule's thread runs in this
    process (`install` ran here: a web process), since only its tick lets them run again: not in
    a process forked from one that installed it (a server that imports the app, then forks its
    workers), whose copy of the thread does not run."""
    if _hold is not None and _thread is not None and _thread.is_alive():
        _hold.busy(time.monotonic())


def freeze() -> None:
    """Collect the young generations' garbage, then freeze every object tracked now."""
    gc.collect(1)
    gc.freeze()


def thaw() -> dict:
    """Unfreeze everything, collect it in one full pass, freeze what survived. Returns what it
    did: objects frozen before and after, garbage found, the pause in ms."""
    before = gc.get_freeze_count()
    started = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return {"frozen_before": before, "frozen": gc.get_freeze_count(), "garbage": found,
            "pause_ms": round((time.perf_counter() - started) * 1000, 1)}


def _young_collections() -> int:
    return gc.get_stats()[0]["collections"]


def _run(schedule: Schedule, hold: FullPassHold, interval: float) -> None:
    try:
        _schedule(schedule, hold, interval)
    finally:  # the thread ends (it should not): the full passes must not stay held
        hold.stop()


def _schedule(schedule: Schedule, hold: FullPassHold, interval: float) -> None:
    seen = _young_collections()
    while True:
        time.sleep(interval)
        young, now = _young_collections(), time.monotonic()
        action = schedule.step(now, young - seen, busy=hold.tick(now))
        seen = young
        try:
            if action == "freeze":
                freeze()
            elif action == "thaw":
                logger.info("collector: thawed and collected %s", thaw())
        except Exception:  # noqa: BLE001 - the policy must never take the process down
            logger.exception("collector: the %s failed", action)


def install(*, freeze_seconds: float, thaw_seconds: float, interval: float = 1.0) -> None:
    """In a web process, once, after the app is loaded: freeze what is loaded, and run the
    schedule above in a daemon thread, with the full passes' hold (both 0: only the startup
    freeze)."""
    global _hold, _thread
    gc.collect()
    gc.freeze()
    if not freeze_seconds and not thaw_seconds:
        return
    schedule = Schedule(freeze_seconds=freeze_seconds, thaw_seconds=thaw_seconds,
                        now=time.monotonic())
    _hold = FullPassHold(grace=BUSY_GRACE, longest=BUSY_LONGEST)
    _thread = threading.Thread(target=_run, args=(schedule, _hold, interval),
                               name="clarion-collector", daemon=True)
    _thread.start()


def freeze_loaded(**_signal) -> None:
    """In a qcluster worker process as it starts (django-q2's `post_spawn` signal), and in a
    benchmark standing in for one: collect, then freeze what is loaded (Django, the apps:
    ~180,000 objects), so the collector's full passes during a task walk only what the tasks
    made. A fan-out's chunk makes enough objects to trigger several full passes: with the loaded
    objects frozen, bench/fanout.py takes 20-30 % less CPU per subscriber. No periodic freezing
    here: a task's objects die with the task, by reference counting or in the next passes."""
    gc.collect()
    gc.freeze()

