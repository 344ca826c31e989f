"""The ORM broker woken by a queued task's NOTIFY (clarion/queue_broker.py, migration
notifications 0043): a task committed while the broker waits is handed out at once, not at the
end of the poll interval; a task for later, or a broker that cannot listen, waits it out as
django-q2's broker does. PostgreSQL only (NOTIFY); on SQLite the broker only sleeps."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage

from clarion.queue_broker import WakingORM
from notifications.queue import enqueue, enqueue_at

pytestmark = pytest.mark.django_db(transaction=True)

LONG_POLL = 5.0


@pytest.fixture
def broker(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY: PostgreSQL only")
    monkeypatch.setattr(Conf, "POLL", 0.01)
    broker = get_broker()
    assert isinstance(broker, WakingORM)
    assert broker.dequeue() is None  # the first empty look sleeps, the next ones listen
    monkeypatch.setattr(Conf, "POLL", LONG_POLL)
    yield broker
    if broker.listener is not None:
        broker.listener.close()


def _later(seconds: float, action) -> threading.Thread:
    def run():
        time.sleep(seconds)
        try:
            action()
        finally:
            connection.close()  # this thread's connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_task_committed_while_the_broker_waits_is_handed_out_at_once(broker):
    thread = _later(0.3, lambda: enqueue("notifications.tasks.advance_run", "now"))
    started = time.monotonic()
    tasks = broker.dequeue()
    elapsed = time.monotonic() - started
    thread.join()
    assert [SignedPackage.loads(payload)["args"] for _, payload in tasks] == [("now",)]
    assert 0.25 < elapsed < LONG_POLL / 2


def test_a_task_for_later_does_not_wake_the_broker(broker, monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 1.0)
    thread = _later(0.2, lambda: enqueue_at("notifications.tasks.advance_run", "later",
                                            at=timezone.now() + timedelta(hours=1),
                                            name="run:later"))
    started = time.monotonic()
    assert broker.dequeue() is None
    elapsed = time.monotonic() - started
    thread.join()
    assert elapsed >= 0.95


def test_a_broker_that_cannot_listen_polls_and_still_hands_out_tasks(monkeypatch, caplog):
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY: PostgreSQL only")
    import psycopg

    def refused(params):
        raise psycopg.OperationalError("connection refused")

    monkeypatch.setattr("clarion.queue_broker._connect", refused)
    monkeypatch.setattr(Conf, "POLL", 0.2)
    broker = get_broker()
    for _ in range(2):
        started = time.monotonic()
        assert broker.dequeue() is None
        assert time.monotonic() - started >= 0.19  # slept the poll interval
    assert broker.listener is None
    assert "cannot listen for queued tasks" in caplog.text
    enqueue("notifications.tasks.advance_run", "polled")
    [(_, payload)] = broker.dequeue()
    assert SignedPackage.loads(payload)["args"] == ("polled",)


def test_behind_pgbouncer_in_transaction_mode_the_broker_does_not_listen(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY: PostgreSQL only")
    monkeypatch.setitem(connection.settings_dict, "DISABLE_SERVER_SIDE_CURSORS", True)
    monkeypatch.setattr(Conf, "POLL", 0.05)
    broker = get_broker()
    for _ in range(3):
        assert broker.dequeue() is None
    assert broker.listener is None


def test_the_listening_connection_keeps_alive_and_is_not_ended_as_idle(broker):
    """A connection that never sends: TCP keepalives find a peer gone without a reset, and the
    server's idle_session_timeout, if set, does not end it."""
    assert broker._listen()  # opened, as the next empty look would
    listener = broker.listener
    parameters = listener.info.get_parameters()
    assert (parameters["keepalives"], parameters["keepalives_idle"]) == ("1", "30")
    assert listener.execute("SHOW idle_session_timeout").fetchone() == ("0",)


def test_a_failed_listening_connection_is_closed_and_let_go(broker):
    import gc
    import weakref

    assert broker._listen()
    failed = weakref.ref(broker.listener)
    broker._listen_failed()
    assert broker.listener is None
    gc.collect()
    assert failed() is None  # not kept by its finalizer
