"""A trigger whose transaction PostgreSQL undoes for another's sake (a deadlock, 40P01) is written
again once (services.trigger_workflow_idempotent); undone twice, it is answered 503
`transaction_conflict` with Retry-After, nothing written, never a 500. The deadlocks are made by
another session that holds the trigger's recipient's row and then waits for a lock the trigger
holds (its advance lane, as a lane's release does; then its idempotency key): the trigger's
deadlock check runs first (the locker's deadlock_timeout is longer), so it is the one undone."""

import threading
import time

import pytest
from django.db import connection, connections

from notifications.engine.claim import ADVANCE_LANE_LOCK
from notifications.models import IdempotencyRecord, Recipient, Run, Trigger

from ..conftest import client_for, in_app_step
from .test_trigger_paths_lock_order import _connect, _waiting

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's deadlocks"),
]

SHARED = {"id": "shared", "name": "SHARED"}
CONFLICT = {"error": "transaction_conflict",
            "detail": "The request's writes conflicted with another's and were undone; "
                      "send it again."}


@pytest.fixture
def held(api_key, make_workflow, clarion_settings):
    """(the locker, a monitor): the locker session holds the row of the recipient "shared"
    (FOR UPDATE); lane 0, the only one, is free."""
    clarion_settings(ADVANCE_LANES=1)
    make_workflow("welcome", steps=[in_app_step()])
    Recipient.objects.create(external_id="shared", name="SHARED")
    locker, monitor = _connect(), _connect()
    monitor.autocommit = True
    # The locker's own deadlock checks come long after the trigger's (deadlock_timeout, 1 s):
    # the trigger is the one undone, however late the locker starts to wait (within 1 s).
    locker.execute("SET deadlock_timeout = '10s'")
    locker.commit()
    locker.execute("SELECT 1 FROM notifications_recipient WHERE external_id = 'shared' "
                   "FOR UPDATE")
    yield locker, monitor
    locker.close()
    monitor.close()


def _deadlock(locker, monitor, sql: str, params: tuple = ()) -> None:
    """Once the trigger waits (for the locker), the locker waits for `sql`'s lock, which the
    trigger holds; returns when PostgreSQL undid the trigger's transaction (the lock free)."""
    assert _waiting(monitor, 1), "the trigger never waited"
    started = time.monotonic()
    locker.execute(sql, params)
    assert time.monotonic() - started < 5


# A lane's release (engine.lane_release) waiting for the triggers holding the lane: granted the
# moment the trigger is undone, before its second write asks for the lane again (which then
# waits for the locker).
LANE_RELEASE = ("SELECT pg_advisory_xact_lock(%s, 0)", (ADVANCE_LANE_LOCK,))


def _post(path: str, body: dict, answer: list, **headers) -> None:
    client = client_for(answer[0])
    client.raise_request_exception = False  # a view's error answered 500, as a server does
    try:
        answer.append(client.post(path, body, **headers))
    finally:
        connections.close_all()


def test_a_trigger_undone_by_a_deadlock_is_written_again(api_key, held, caplog):
    locker, monitor = held
    answer = [api_key[1]]
    thread = threading.Thread(target=_post, args=(
        "/api/v1/workflows/welcome/trigger", {"recipients": [SHARED]}, answer),
        kwargs={"HTTP_IDEMPOTENCY_KEY": "k1"})
    thread.start()
    _deadlock(locker, monitor, *LANE_RELEASE)  # the trigger's record and lane undone
    assert _waiting(monitor, 1), "no second write (waiting for the lane)"
    locker.rollback()
    thread.join(30)
    response = answer[1]
    assert response.status_code == 202, response.content
    assert "is written again" in caplog.text
    trigger = Trigger.objects.get()
    assert response.json()["trigger_id"] == str(trigger.id)
    assert [str(run.id) for run in Run.objects.all()] == [response.json()["runs"][0]["id"]]
    assert IdempotencyRecord.objects.get().response_body == response.json()


@pytest.mark.parametrize("bulk", [False, True], ids=["trigger", "bulk trigger"])
def test_a_trigger_undone_twice_is_a_503_with_retry_after_and_nothing_written(
        api_key, held, bulk):
    locker, monitor = held
    answer = [api_key[1]]
    if bulk:
        args = ("/api/v1/workflows/welcome/trigger/bulk",
                {"triggers": [{"recipients": [SHARED], "idempotency_key": "k1"}]}, answer)
        kwargs = {}
    else:
        args = ("/api/v1/workflows/welcome/trigger", {"recipients": [SHARED]}, answer)
        kwargs = {"HTTP_IDEMPOTENCY_KEY": "k1"}
    thread = threading.Thread(target=_post, args=args, kwargs=kwargs)
    thread.start()
    _deadlock(locker, monitor, *LANE_RELEASE)
    # Written again: its record, then it waits for the lane the locker holds; the locker then
    # waits for its record's key.
    _deadlock(locker, monitor,
              "INSERT INTO notifications_idempotencyrecord (api_key_id, key, request_hash, "
              "created_at) VALUES (%s, 'k1', '', now()) ON CONFLICT DO NOTHING",
              (api_key[0].pk,))
    locker.rollback()
    thread.join(30)
    response = answer[1]
    assert response["Retry-After"] == "1"
    if bulk:
        assert response.status_code == 207
        assert response.json() == {"results": [{"status": 503, **CONFLICT, "retry_after": 1}]}
    else:
        assert response.status_code == 503
        assert response.json() == CONFLICT
    assert not Trigger.objects.exists() and not Run.objects.exists()
    assert not IdempotencyRecord.objects.exists()
    # Sent again, it is written.
    response = client_for(api_key[1]).post("/api/v1/workflows/welcome/trigger",
                                           {"recipients": [SHARED]}, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 202
    assert Trigger.objects.count() == 1
