"""The ORM broker woken by a queued task's NOTIFY (clarion/queue_broker.py, migrations
notifications 0043 and 0045): a task committed while the broker waits is handed out at once,
not at the end of the poll interval; a task for later, or a broker that cannot listen, waits it
out as django-q2's broker does. PostgreSQL only (NOTIFY); on SQLite the broker only sleeps."""

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


def test_the_queue_table_notifies_for_a_row_due_now_whatever_writes_it():
    """What migration 0045's row trigger notifies, as 0043's statement trigger did (the same
    assertions pass with it; checked by hand, 2026-12-03): a statement (multi-row INSERT,
    COPY) with one row due now among rows for later notifies once its transaction commits;
    rows only for later, a rolled back savepoint's row, or a rolled back transaction's, notify
    nothing."""
    if connection.vendor != "postgresql":
        pytest.skip("NOTIFY: PostgreSQL only")
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    dsn = (f"host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']} "
           f"user={db['USER']} password={db['PASSWORD']}")
    later = "now() + interval '1 hour'"
    with psycopg.connect(dsn, autocommit=True) as listener, psycopg.connect(dsn) as writer:
        listener.execute("LISTEN clarion_queue")

        def notified(*statements: str, commit: bool = True) -> int:
            with writer.cursor() as cursor:
                for statement in statements:
                    if statement.startswith("COPY"):
                        with cursor.copy(statement.split(";")[0]) as copy:
                            for row in statement.split(";")[1:]:
                                copy.write_row(row.split(","))
                    else:
                        cursor.execute(statement)
            writer.commit() if commit else writer.rollback()
            return len(list(listener.notifies(timeout=0.3)))

        insert = "INSERT INTO django_q_ormq (key, payload, lock) VALUES "
        assert notified(insert + f"('t', 'p', {later}), ('t', 'p', now()), "
                        f"('t', 'p', {later})") == 1
        assert notified(insert + f"('t', 'p', {later}), ('t', 'p', {later})") == 0
        assert notified(insert + "('t', 'p', now())", commit=False) == 0
        assert notified("SAVEPOINT s", insert + "('t', 'p', now())", "ROLLBACK TO SAVEPOINT s",
                        insert + f"('t', 'p', {later})") == 0
        assert notified(insert + "('t', 'p', now())", insert + "('t', 'p', now())") == 1
        due, future = timezone.now().isoformat(), (timezone.now() + timedelta(hours=1)).isoformat()
        assert notified(f"COPY django_q_ormq (key, payload, lock) FROM STDIN;t,p,{future};"
                        f"t,p,{due}") == 1
        assert notified(f"COPY django_q_ormq (key, payload, lock) FROM STDIN;t,p,{future}") == 0
