"""Group commit and a trigger blocked on a lock (another transaction holds its recipient's row,
as a schedule's occurrence writing its triggers in one transaction would): the process's other
triggers do not wait for it. Queued behind its statement, they are written on their own after
group_commit.WAIT_SECONDS; batched with it, their statement gives the lock up after
LOCK_WAIT_SECONDS and each is written again on its own, the blocked one waiting for its lock."""

import threading
import time

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection, connections
from django.utils import timezone

from notifications.models import AdvanceLane, Trigger
from notifications.services.group_commit import group_commit

from ..conftest import in_app_step
from .test_trigger_group_commit import _send, _warm
from .test_trigger_group_commit import gathered as gathered  # a fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement trigger"),
]


@pytest.fixture
def locked(api_key, make_workflow):
    """The recipient "locked", written by a first trigger, then its row held FOR UPDATE by
    another session until `release()`; yields release. Every advance lane is held (as by a
    task), so that no trigger waits for another's new lane row rather than for the lock."""
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    assert _send(api_key[1], "first", "locked")[0] == 202
    for lane in range(django_settings.CLARION["ADVANCE_LANES"]):
        AdvanceLane.objects.update_or_create(lane=lane, defaults={"touched_at": timezone.now()})
    db = django_settings.DATABASES["default"]
    locker = psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, dbname=db["NAME"],
                             user=db["USER"], password=db["PASSWORD"])
    locker.execute("SELECT 1 FROM notifications_recipient WHERE external_id = 'locked' "
                   "FOR UPDATE")
    released = threading.Event()

    def release():
        if not released.is_set():
            released.set()
            locker.rollback()
    yield release
    release()
    locker.close()


def _timed(secret: str, key: str, recipient: str, done: dict) -> None:
    try:
        done[key] = (_send(secret, key, recipient)[0], time.monotonic())
    finally:
        connections.close_all()


def test_a_trigger_queued_behind_a_blocked_one_is_written_on_its_own(api_key, locked):
    group_commit.__init__()
    done: dict = {}
    blocked = threading.Thread(target=_timed, args=(api_key[1], "k-blocked", "locked", done))
    blocked.start()
    time.sleep(0.5)  # its statement, alone, waits on the row lock
    free = threading.Thread(target=_timed, args=(api_key[1], "k-free", "free", done))
    started = time.monotonic()
    free.start()
    free.join(5)
    free_done = dict(done)
    released_at = time.monotonic()
    locked()
    blocked.join(10)
    assert "k-free" in free_done, "an unrelated trigger waited for another's lock"
    assert free_done["k-free"][0] == 202 and free_done["k-free"][1] - started < 5
    assert "k-blocked" not in free_done  # it waited for its lock
    assert done["k-blocked"][0] == 202 and done["k-blocked"][1] >= released_at
    assert group_commit.statements == 0  # the free one was written alone
    assert Trigger.objects.filter(idempotency_key__in=["k-free", "k-blocked"]).count() == 2


def test_a_statement_of_several_gives_up_a_lock_and_writes_the_others_alone(api_key, locked,
                                                                            gathered):
    done: dict = {}
    recipients = ["u0", "locked", "u2", "u3"]  # u0 first, alone; the rest one statement
    release_after = threading.Timer(3, locked)
    release_after.start()
    try:
        gathered(4, lambda i: _timed(api_key[1], f"k{i}", recipients[i], done))
    finally:
        release_after.cancel()
        released_at = time.monotonic()
        locked()
    assert {key: status for key, (status, _) in done.items()} == {
        "k0": 202, "k1": 202, "k2": 202, "k3": 202}
    assert group_commit.failed == 1 and group_commit.statements == 0
    # The unrelated ones were written before the lock went; the blocked one after it.
    assert done["k2"][1] < done["k1"][1] and done["k3"][1] < done["k1"][1]
    assert done["k1"][1] > done["k2"][1] + 1, done
    assert released_at >= done["k1"][1]
    assert Trigger.objects.filter(idempotency_key__in=["k0", "k1", "k2", "k3"]).count() == 4


def test_a_statement_that_cannot_be_formed_leaves_nothing_waiting(api_key, make_workflow,
                                                                   gathered, monkeypatch):
    """A bug while the next statement is formed: its queued triggers are written on their own
    and the process is not left busy (its later triggers would all queue for nothing)."""
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")

    def broken(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(type(group_commit), "_next_batch", broken)
    answers = gathered(3, lambda i: _send(api_key[1], f"k{i}", f"u{i}"))
    assert [answer[0] for answer in answers] == [202] * 3, answers
    assert (group_commit.statements, group_commit._busy, group_commit._queued) == (0, False, [])
    assert Trigger.objects.filter(idempotency_key__in=["k0", "k1", "k2"]).count() == 3
