"""Enqueueing django-q2 tasks so that they commit with the data they act on.

With the ORM broker on the project's database (the default), a task enqueued inside a
transaction is a row in that transaction: it commits or rolls back with it, an outbox for free.
With another broker the task is enqueued after commit, and the sweeper catches any that a crash
between commit and enqueue loses.

A task for later (`enqueue_at`) is, with the ORM broker, the same row with its `lock` (the time
from which the broker may hand it out) set to that later time: it fires within the cluster's
poll interval of its time, and is as crash-safe as any queued task.
"""

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_q.conf import Conf
from django_q.humanhash import uuid
from django_q.models import OrmQ, Schedule
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.tasks import async_task

from clarion.db import instance_maker


def _broker_is_this_database() -> bool:
    return settings.Q_CLUSTER.get("orm") == DEFAULT_DB_ALIAS


def enqueue(func: str, *args) -> None:
    """Run `func(*args)` on a worker once the current transaction (if any) commits."""
    enqueue_many(func, [args])


def enqueue_many(func: str, args_list: Sequence[tuple]) -> None:
    """Run `func(*args)` on a worker for each `args` of `args_list`, once the current
    transaction (if any) commits. With the ORM broker on this database the tasks are rows of
    the current transaction (one INSERT for all); with another broker they are pushed after
    commit.

    Never closes a database connection, so it is safe while a queryset is being iterated:
    django-q2's own `async_task` (through the ORM broker's `get_connection`) calls
    `close_old_connections()` outside a transaction, which with CONN_MAX_AGE=0 closes the
    connection under an open cursor (on PostgreSQL, "the connection is closed").
    """
    args_list = [tuple(args) for args in args_list]
    if not args_list:
        return
    held = getattr(_grouping, "held", None)
    if held is not None and func in held:
        held[func][1].extend(args[0] for args in args_list)
        return
    if _broker_is_this_database() or transaction.get_autocommit():
        _push(func, args_list)
    else:
        transaction.on_commit(lambda: _push(func, args_list))


_grouping = threading.local()


@contextmanager
def enqueue_grouped(func: str, *, into: str, size: int) -> Iterator[None]:
    """Inside the block, `enqueue(func, id)` calls (one argument each) are held, and at its end
    enqueued as `into(*ids)` tasks of up to `size` ids each, in order: e.g. the deliveries of a
    batch of runs as a few `deliver_messages` tasks rather than one task per message. Use it
    inside the transaction the enqueues belong to (the held tasks join it when the block ends);
    if the block raises, they are dropped with it."""
    previous = getattr(_grouping, "held", None)
    _grouping.held = {**(previous or {}), func: (into, [])}
    try:
        yield
        into_func, ids = _grouping.held[func]
    finally:
        _grouping.held = previous
    enqueue_many(into_func, [tuple(ids[i:i + size]) for i in range(0, len(ids), size)])


def task_rows(func: str, args_list: Sequence[tuple]) -> list[OrmQ] | None:
    """The ORM broker's rows that `enqueue_many(func, args_list)` would insert at once in the
    current transaction, for the caller to insert with others (clarion.db.rows_insert: e.g. a
    trigger's rows in one statement); None when it would do anything else (another broker or
    database, sync mode, tasks held by enqueue_grouped): then call enqueue_many."""
    args_list = [tuple(args) for args in args_list]
    if not args_list or not task_rows_apply(func):
        return None
    return _task_rows([(func, args, None) for args in args_list])


def task_rows_apply(func: str) -> bool:
    """Whether task_rows gives rows for `func`'s tasks (rather than None) just now."""
    held = getattr(_grouping, "held", None)
    return not ((held is not None and func in held) or not _broker_is_this_database()
                or not settings.Q_CLUSTER.get("orm") or Conf.SYNC)


def _push(func: str, args_list: list[tuple], *, visible_at: datetime | None = None) -> None:
    """Hand the tasks to the broker: for the ORM broker, the rows `async_task` would have
    written (without its connection clean-up), handed out from `visible_at` (default: now; a
    past time: at once);
    otherwise through `async_task`."""
    if not settings.Q_CLUSTER.get("orm") or Conf.SYNC:
        for args in args_list:
            async_task(func, *args)
        return
    _push_rows([(func, args, visible_at) for args in args_list])


def _push_rows(tasks: Sequence[tuple[str, tuple, datetime | None]]) -> None:
    """The ORM broker's rows of `tasks` (func, args, visible from: None for now), one INSERT."""
    OrmQ.objects.using(Conf.ORM).bulk_create(_task_rows(tasks))


def _task_rows(tasks: Sequence[tuple[str, tuple, datetime | None]]) -> list[OrmQ]:
    """The ORM broker's rows of `tasks` (func, args, visible from: None for now), unsaved."""
    now, make = timezone.now(), instance_maker(OrmQ)
    rows = []
    for func, args, visible_at in tasks:
        name, task_id = uuid()
        task = {"id": task_id, "name": name, "func": func, "args": args, "kwargs": {},
                "started": now}
        if Conf.ACK_FAILURES:
            task["ack_failure"] = True
        if Conf.CACHED:
            task["cached"] = Conf.CACHED
        pre_enqueue.send(sender="django_q", task=task)
        # The key the cluster's broker reads (django_q.brokers.get_broker's default list_key).
        rows.append(make(key=Conf.CLUSTER_NAME, payload=SignedPackage.dumps(task),
                         lock=visible_at or now))
    return rows


def enqueue_at(func: str, *args, at: datetime, name: str) -> None:
    """Run `func(*args)` once at `at` (an aware datetime; a past one runs at once).

    With the ORM broker on this database (the default): a queue row, in the current transaction,
    whose `lock` is `at`. django-q2's ORM broker hands out only rows whose lock has passed
    (django_q.brokers.orm.ORM.dequeue: `lock < now`, polled every Q_CLUSTER["poll"] seconds),
    so the task starts within that poll interval of `at` when a worker is free (bench/wakeups.py
    measures it). It commits or rolls back with the caller, like any task; a worker killed while
    running it gets it again after Q_CLUSTER["retry"]; the sweeper re-enqueues what is due.
    The index notifications_ormq_due keeps the broker's query cheap with many waiting rows.

    With another broker: a django-q2 ONCE schedule named `name` (scheduling the same wake-up
    twice is a no-op), which the cluster's scheduler looks at about every 30 seconds.
    """
    if _broker_is_this_database() and not Conf.SYNC:
        _push(func, [tuple(args)], visible_at=at)
        return
    Schedule.objects.update_or_create(
        name=name[:100],
        defaults={
            "func": func,
            "args": repr(tuple(args)),
            "schedule_type": Schedule.ONCE,
            "repeats": -1,
            "next_run": at,
        },
    )


def enqueue_at_many(wakes: Sequence[tuple[str, tuple, datetime, str]]) -> None:
    """`enqueue_at(func, *args, at=at, name=name)` for each (func, args, at, name) of `wakes`:
    with the ORM broker on this database, one INSERT for all of them."""
    if _broker_is_this_database() and not Conf.SYNC:
        _push_rows([(func, tuple(args), at) for func, args, at, _ in wakes])
        return
    for func, args, at, name in wakes:
        enqueue_at(func, *args, at=at, name=name)
