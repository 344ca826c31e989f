"""The trigger's two write paths take their locks in one order (services.triggers._trigger_write's
LOCK_ORDER): a trigger written as one statement (services/trigger_statement.py) and one written
by a transaction of several statements (an actor's profile, or profiles of several shapes) that
name the same people are both accepted. The transaction upserted its recipients and then held
the lanes, the statement the other way round; and it upserted its actor before its recipients,
and its profiles one set of given fields at a time, not in external id order across them. Each
waited for what the other held, and PostgreSQL's deadlock detector aborted one after
deadlock_timeout (a 500; since then written again once, which the log says).

The interleaving is made certain, not hoped for: another session holds a person's row while
the transaction's trigger and then the statement's queue behind it (each seen waiting in
pg_stat_activity), then lets go."""

import threading
import time

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from notifications.models import AdvanceLane, Recipient, Run, Trigger

from ..conftest import client_for, in_app_step

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="row locks and advisory locks are PostgreSQL's"),
]


def _connect() -> psycopg.Connection:
    db = django_settings.DATABASES["default"]
    return psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"],
                           user=db["USER"], password=db["PASSWORD"])


def _waiting(monitor: psycopg.Connection, count: int, timeout: float = 10) -> bool:
    """Whether `count` sessions of this database wait on a lock within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (waiting,) = monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").fetchone()
        if waiting >= count:
            return True
        time.sleep(0.01)
    return False


def _post(secret: str, body: dict, answers: dict, name: str, **headers) -> None:
    client = client_for(secret)
    client.raise_request_exception = False  # a view's error answered 500, as a server does
    try:
        answers[name] = client.post("/api/v1/workflows/welcome/trigger", body,
                                    **headers).status_code
    finally:
        connections.close_all()


def _race(secret: str, transactional: dict, statement: dict, held: str, **headers) -> dict:
    """{"tx": status, "stmt": status}: another session holds the row of recipient `held`
    while the transactional trigger (`transactional`) and then the statement's (`statement`,
    with `headers`) are posted and each is seen waiting on a lock; then it lets go, the
    transaction's trigger first."""
    locker, monitor = _connect(), _connect()
    monitor.autocommit = True
    answers: dict = {}
    threads = [threading.Thread(target=_post, args=(secret, transactional, answers, "tx")),
               threading.Thread(target=_post, args=(secret, statement, answers, "stmt"),
                                kwargs=headers)]
    try:
        locker.execute("SELECT 1 FROM notifications_recipient WHERE external_id = %s "
                       "FOR UPDATE", [held])
        threads[0].start()
        assert _waiting(monitor, 1), f"the transaction's trigger never waited for {held}"
        threads[1].start()
        assert _waiting(monitor, 2), "the statement's trigger never waited"
        locker.rollback()
        for thread in threads:
            thread.join(30)
    finally:
        locker.close()
        monitor.close()
    return answers


@pytest.mark.parametrize("idempotency_key", [None, "k-statement"], ids=["no key", "a key"])
def test_a_statement_trigger_and_a_transaction_trigger_sharing_a_person_are_both_accepted(
        api_key, make_workflow, clarion_settings, caplog, idempotency_key):
    clarion_settings(ADVANCE_LANES=1)  # both triggers' runs fall in lane 0
    make_workflow("welcome", steps=[in_app_step()])
    Recipient.objects.create(external_id="shared", name="SHARED")
    assert not AdvanceLane.objects.exists()  # lane 0 free: each trigger would mark it held
    shared = {"id": "shared", "name": "SHARED"}
    # An actor's profile: a transaction of several statements (services.triggers._trigger_write).
    transactional = {"recipients": [shared], "actor": {"id": "boss", "name": "Boss"}}
    statement = {"recipients": [shared]}  # profiles alike, no actor: one statement
    headers = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}
    # the transaction's trigger goes first, then the statement's
    answers = _race(api_key[1], transactional, statement, "shared", **headers)
    assert answers == {"tx": 202, "stmt": 202}
    # Neither was a deadlock's victim written again (services.trigger_workflow_idempotent).
    assert "deadlock" not in caplog.text
    assert Trigger.objects.count() == 2
    assert sorted(Run.objects.values_list("recipient__external_id", flat=True)) == \
        ["shared", "shared"]
    # Lane 0 marked held, and each trigger's run in an advance lane task of lane 0 (the one
    # that waited for the other's lane row queues a task too: its read preceded that wait).
    assert list(AdvanceLane.objects.values_list("lane", flat=True)) == [0]
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.all()]
    assert {task["func"] for task in tasks} == {"notifications.tasks.advance_lane"}
    assert {task["args"][0] for task in tasks} == {0}
    assert sorted(run_id for task in tasks for run_id in task["args"][1:]) == \
        sorted(str(run_id) for run_id in Run.objects.values_list("id", flat=True))


# (the transaction's body, what it locked before, what the statement names): each waited for
# what the other held, both having queued behind another session's lock of "d".
CROSSINGS = {
    # Its actor's profile first, then its recipients: "d" before "c"; now "c", then "d".
    "an actor": ({"recipients": [{"id": "c", "name": "C"}], "actor": {"id": "d", "name": "Dee"}},
                 ["c", "d"]),
    # Its profiles upserted per set of given fields (names, then emails): "b", "d", then "c";
    # now in external id order across those statements too.
    "two profile shapes": ({"recipients": [{"id": "b", "name": "B"}, {"id": "c", "email": "c@x.io"},
                                           {"id": "d", "name": "Dee"}]}, ["c", "d"]),
}


@pytest.mark.parametrize("crossing", list(CROSSINGS))
def test_a_transaction_and_a_statement_trigger_naming_people_in_other_orders_are_both_accepted(
        api_key, make_workflow, clarion_settings, caplog, crossing):
    transactional, people = CROSSINGS[crossing]
    clarion_settings(ADVANCE_LANES=1)
    make_workflow("welcome", steps=[in_app_step()])
    # Lane 0 held by a task: neither trigger writes its row, so the lanes order neither.
    AdvanceLane.objects.create(lane=0, touched_at=timezone.now())
    for external_id in "bcd":
        Recipient.objects.create(external_id=external_id, name=external_id.upper())
    statement = {"recipients": [{"id": p, "name": p.upper()} for p in people]}
    answers = _race(api_key[1], transactional, statement, "d")
    assert answers == {"tx": 202, "stmt": 202}
    assert "deadlock" not in caplog.text
    assert Trigger.objects.count() == 2
    # The statement's trigger waited for the transaction's and wrote "d" after it.
    assert Recipient.objects.get(external_id="d").name == "D"
