"""The time a drain's first task began, for bench/pipeline.py: an app of bench/cluster_settings.py
(its clusters only) whose ready() connects django-q2's `pre_execute` signal, sent in the worker
just before a task runs, to a Redis `SET clarion-bench:first <time.time()> NX`. pipeline.py
deletes the key before each drain (its cluster stopped) and reads it (`first_began`) as the
drain's start, for the no-op drains and the pipeline's alike.

A worker process sets it only for a task that comes more than IDLE_SECONDS after its previous
one (or is its first): a drain's first task always does (the cluster was stopped, idle, for
longer), and the tasks of a drain under way cost no Redis command of their own (one per no-op
task would have added a round trip to every task the floor counts).
"""

import os
import time

from django.apps import AppConfig

KEY = "clarion-bench:first"
IDLE_SECONDS = 0.1  # Cluster.settle waits at least 0.2 s of idleness before each drain

_redis = None
_last = None  # time.monotonic() of this process's previous task


def note_start(sender, **kwargs) -> None:
    """pre_execute's receiver: SET KEY now NX, if this process was idle (see the module)."""
    global _redis, _last
    now, previous, _last = time.time(), _last, time.monotonic()
    if previous is not None and _last - previous < IDLE_SECONDS:
        return
    if _redis is None:
        import redis

        _redis = redis.Redis.from_url(os.environ["REDIS_URL"])
    _redis.set(KEY, now, nx=True)


def first_began(rds) -> float | None:
    """The time (time.time()) the drain's first task began, or None if none has yet."""
    return float(value) if (value := rds.get(KEY)) is not None else None


class FirstTaskConfig(AppConfig):
    name = "bench.first_task"
    label = "bench_first_task"

    def ready(self) -> None:
        from django_q.signals import pre_execute

        pre_execute.connect(note_start, dispatch_uid="clarion-bench-first-task")
