"""Enqueueing django-q2 tasks so that they commit with the data they act on.

With the ORM broker on the project's database (the default), a task enqueued inside a
transaction is a row in that transaction: it commits or rolls back with it, an outbox for free.
With another broker the task is enqueued after commit, and the sweeper catches any that a crash
between commit and enqueue loses.
"""

from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.humanhash import uuid
from django_q.models import OrmQ, Schedule
from django_q.signals import pre_enqueue
from django_q.signing import SignedPackage
from django_q.tasks import async_task


def _broker_is_this_database() -> bool:
    return settings.Q_CLUSTER.get("orm") == DEFAULT_DB_ALIAS


def enqueue(func: str, *args) -> None:
    """Run `func(*args)` on a worker once the current transaction (if any) commits."""
    if _broker_is_this_database() or transaction.get_autocommit():
        async_task(func, *args)
    else:
        transaction.on_commit(lambda: async_task(func, *args))


def enqueue_many(func: str, args_list: Sequence[tuple]) -> None:
    """enqueue() for many tasks of one function. With the ORM broker: one INSERT for all, in
    the current transaction, each row the package async_task would have written."""
    if not args_list:
        return
    if not _broker_is_this_database():
        for args in args_list:
            enqueue(func, *args)
        return
    key, now = get_broker().list_key, timezone.now()
    rows = []
    for args in args_list:
        name, task_id = uuid()
        task = {"id": task_id, "name": name, "func": func, "args": tuple(args), "kwargs": {},
                "started": now}
        if Conf.ACK_FAILURES:
            task["ack_failure"] = True
        if Conf.CACHED:
            task["cached"] = Conf.CACHED
        pre_enqueue.send(sender="django_q", task=task)
        rows.append(OrmQ(key=key, payload=SignedPackage.dumps(task), lock=now))
    OrmQ.objects.using(Conf.ORM).bulk_create(rows)


def enqueue_at(func: str, *args, at: datetime, name: str) -> None:
    """Run `func(*args)` once at `at`. `name` makes scheduling the same wake-up twice a no-op.

    django-q2's scheduler looks at due schedules about every 30 seconds, so a wake-up may come
    up to that late; the sweeper (every minute) is the safety net for any that is lost.
    """
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
