"""django-q2's ORM broker, woken by PostgreSQL when a task is queued instead of only polling.

django-q2's cluster has one pusher process that asks the broker for tasks and, when the ORM
broker finds none, sleeps `Q_CLUSTER["poll"]` (0.1 s) before asking again: a task queued just
after a look waited up to the whole interval, half of it on average, before any worker saw it
(bench/inbox_latency.py: trigger → item.created frame through `manage.py serve`, where the
pick-up was the largest part of the worker's share). On PostgreSQL, every INSERT into the
queue's table of a task due now notifies `QUEUE_CHANNEL` when its transaction commits (a
statement trigger, migration notifications 0043), and this broker, listening on a connection of
its own, waits for that notification instead of sleeping: it looks again as soon as a task is
committed, and still every poll interval without one (a task due later, one presented again
after Q_CLUSTER["retry"], a notification lost with a broken connection). Elsewhere (SQLite, the
embedded mode), behind PgBouncer in transaction mode (DISABLE_SERVER_SIDE_CURSORS) and while the
listening connection cannot be opened, it sleeps as django-q2's does.
The connection is opened at the broker's second empty look (a broker asked once, by a test or a
script, opens none) and closed with the broker.
"""

import contextlib
import logging
import time
import weakref

from django.db import connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf

logger = logging.getLogger(__name__)

# The channel the queue table's trigger notifies (the migration's NOTIFY names it too).
QUEUE_CHANNEL = "clarion_queue"
# After the listening connection failed, how long the broker polls before opening it again.
RECONNECT_SECONDS = 5.0


# The listening connection never sends: TCP keepalives (libpq's, unless the database's
# OPTIONS set their own) find a peer gone without a reset (a NAT or load balancer dropping an
# idle connection) within about a minute, and the broker then opens it again.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}


def _connect(params: dict):
    """A psycopg connection of its own (in autocommit: notifications arrive between
    transactions), with the parameters Django's connection is made with, TCP keepalives
    (KEEPALIVES) and no `idle_session_timeout` (a server setting that would end this always
    idle session again and again)."""
    import psycopg

    options = " ".join(filter(None, [params.get("options", ""), "-c idle_session_timeout=0"]))
    return psycopg.connect(**{**KEEPALIVES, **params, "options": options}, autocommit=True)


class WakingORM(ORM):
    """The ORM broker (`Q_CLUSTER["broker_class"]`) whose empty look waits for a queued task's
    notification, at most the poll interval, instead of sleeping through it."""

    def __init__(self, list_key: str | None = None):
        super().__init__(list_key=list_key)
        self.listener = None  # psycopg connection LISTENing on QUEUE_CHANNEL, when open
        self.retry_at = 0.0  # time.monotonic() from which opening it is tried again
        self.looked_empty = False  # a look found nothing due: the next empty one listens

    def dequeue(self):
        """django-q2's ORM dequeue: the due tasks, each locked for Q_CLUSTER["retry"] (by an
        UPDATE that another cluster's pusher can lose to). Listening starts before the look, so
        a task committed after it ends the wait that follows, and is looked for at once."""
        listening = self._listen()
        tasks = self._take()
        if tasks:
            return tasks
        woken = self._wait(Conf.POLL if listening else None)
        self.looked_empty = True
        return self._take() if woken else None

    def _take(self) -> list[tuple]:
        tasks = self.get_connection().filter(
            key=self.list_key, lock__lt=timezone.now())[0:Conf.BULK]
        return [(task.pk, task.payload) for task in tasks
                if self.get_connection().filter(id=task.id, lock=task.lock)
                .update(lock=self.timeout(task))]

    def _listen(self) -> bool:
        """Whether the listening connection is open (opened here if it is not, unless it failed
        less than RECONNECT_SECONDS ago); notifications already received are dropped, the look
        that follows covers them."""
        if self.listener is None and (not self.looked_empty or time.monotonic() < self.retry_at
                                      or not self._listen_open()):
            return False
        try:
            for _ in self.listener.notifies(timeout=0):
                pass
        except Exception:  # noqa: BLE001 - poll instead, and open it again later
            self._listen_failed()
            return False
        return True

    def _listen_open(self) -> bool:
        connection = connections[Conf.ORM]
        if (connection.vendor != "postgresql"
                or connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS")):
            # Nothing to listen to, or (DISABLE_SERVER_SIDE_CURSORS: behind PgBouncer in
            # transaction mode) a LISTEN left on a pooled server connection, whose notifications
            # its next clients would collect: sleep, as django-q2 does.
            self.retry_at = float("inf")
            return False
        try:
            self.listener = _connect(connection.get_connection_params())
            self._closer = weakref.finalize(self, self.listener.close)
            self.listener.execute(f"LISTEN {QUEUE_CHANNEL}")
        except Exception:  # noqa: BLE001 - the broker polls; tasks are picked up all the same
            self._listen_failed()
            return False
        return True

    def _listen_failed(self) -> None:
        logger.warning("queue: cannot listen for queued tasks; polling every %s s, trying "
                       "again in %s s", Conf.POLL, RECONNECT_SECONDS, exc_info=True)
        if self.listener is not None:
            with contextlib.suppress(Exception):  # it is gone either way
                self.listener.close()
            self._closer.detach()  # else each one failed stays referenced by its finalizer
        self.listener = None
        self.retry_at = time.monotonic() + RECONNECT_SECONDS

    def _wait(self, listening_timeout: float | None) -> bool:
        """Until a task is queued (the first notification), at most `listening_timeout`
        seconds; without a listening connection (None), Q_CLUSTER["poll"] seconds. Whether a
        notification came."""
        if listening_timeout is None:
            time.sleep(Conf.POLL)
            return False
        try:
            return any(True for _ in self.listener.notifies(timeout=listening_timeout,
                                                            stop_after=1))
        except Exception:  # noqa: BLE001 - poll instead, and open it again later
            self._listen_failed()
            return False
