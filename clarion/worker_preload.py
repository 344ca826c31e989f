"""What a qcluster's workers would each load on their first task, loaded once before they fork.

django-q2 forks its sentinel from the `qcluster` process and the workers from the sentinel
(`fork` start method). `manage.py qcluster`'s system checks import the URLconf there, but do not
build the URL resolver's reverse tables: every worker built them on its first `reverse()` (the
preferences and unsubscribe links of its first email runs: ~50-70 ms of CPU on the 2-core
development machine, compiling each pattern's regular expressions), and imported the task
modules on its first task, again for each worker django-q2 starts in place of a dead or recycled
one. Built in the `qcluster` process before the sentinel forks, they are built once, their pages
shared by the workers, and frozen out of the workers' collector passes with the rest of what is
loaded (clarion/collector.py's `freeze_loaded`, at django-q2's `post_spawn`). Measured in
bench/README.md ("Workers forked with the URL resolver built").

`install()` (ClarionConfig.ready, every process) wraps django-q2's `Cluster.start`; it only
matters in `qcluster`. Nothing here may open what a fork cannot share: the database connections
it opened are closed before the fork, and a failure to load is logged and left to the workers,
which load lazily as before.
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal

import django_q.cluster

logger = logging.getLogger(__name__)

# The modules of the tasks Clarion queues (notifications.queue's names), imported with their
# own imports: the engine, delivery, providers.
TASK_MODULES = ("notifications.tasks", "notifications.delivery.batch")


def preload() -> None:
    """Import the task modules and the URLconf and build the URL resolver's reverse tables (as
    the first `reverse()` would), then close any database connection opened. Raises
    nothing: a module that fails to load is logged (the workers will fail on it, or not, as
    before)."""
    from django.db import connections
    from django.urls import get_resolver

    try:
        for name in TASK_MODULES:
            importlib.import_module(name)
        get_resolver().reverse_dict  # noqa: B018 (a cached property: imports and compiles)
    except Exception:
        logger.exception("preloading the workers' modules failed; each worker loads them "
                         "on its first task")
    finally:
        connections.close_all()


def preload_holding_stop_signals() -> None:
    """`preload()` with SIGTERM and SIGINT held back until it is done, then delivered: django-q2
    installs the cluster's stop handlers before `Cluster.start`, and one run inside `preload()`
    would fail there (no sentinel yet) and be logged as a failed preload, the stop lost, where
    without the preload it stops `qcluster` at once. Held, the signal acts after it as before.
    Signals are held for the calling thread: call it from the main thread (as `qcluster` calls
    `Cluster.start`)."""
    stops = {signal.SIGTERM, signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    try:
        preload()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def install() -> None:
    """Make django-q2's `Cluster.start` preload before it forks the sentinel. Idempotent."""
    start = django_q.cluster.Cluster.start
    if getattr(start, "preloads", False):
        return

    @functools.wraps(start)
    def start_preloaded(self, *args, **kwargs):
        preload_holding_stop_signals()
        return start(self, *args, **kwargs)

    start_preloaded.preloads = True
    django_q.cluster.Cluster.start = start_preloaded
