"""Group commit (notifications/services/group_commit.py): concurrent REST triggers of one process,
each on its own PostgreSQL connection, written by one statement while another is in flight,
each with its own answer: written once per key, a taken key replayed, a changed workflow
retried alone, a failing trigger failing only itself. The first trigger's statement is held
until the others are queued behind it (`gathered`), so the batch is certain."""

import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.models import OrmQ

from notifications.models import AdvanceLane, IdempotencyRecord, Run, Trigger, Workflow
from notifications.services import group_commit as group_commit_module
from notifications.services import trigger_batch
from notifications.services.group_commit import GroupCommit, group_commit

from ..conftest import at_once, client_for, in_app_step

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement trigger"),
]


@pytest.fixture
def gathered(monkeypatch):
    """gathered(count, call): call(0) … call(count − 1), each in a thread of its own, call(0)'s
    trigger first: its statement (written alone) waits until the others are queued behind it
    (at most 10 s), then goes. Returns the results by index (at_once's). The statement
    counters start at zero."""
    group_commit.__init__()
    real = group_commit_module._alone
    # The others stay queued however long the first is held (they would be written alone).
    monkeypatch.setattr(group_commit_module, "WAIT_SECONDS", 30)

    def gather(count: int, call) -> list:
        first = threading.Event()

        def alone(rows):
            if not first.is_set():
                first.set()
                deadline = time.monotonic() + 10
                while len(group_commit._queued) < count - 1 and time.monotonic() < deadline:
                    time.sleep(0.005)
            return real(rows)

        monkeypatch.setattr(group_commit_module, "_alone", alone)
        results = [None]
        leader = threading.Thread(target=lambda: results.__setitem__(0, _closing(call, 0)))
        leader.start()
        assert first.wait(10)
        results += at_once(count - 1, lambda i: call(i + 1))
        leader.join(30)
        return results

    yield gather
    group_commit.__init__()


def _closing(call, index: int):
    try:
        return call(index)
    finally:
        connections.close_all()


def _send(secret: str, key: str, recipient: str, workflow: str = "welcome") -> tuple:
    client = client_for(secret)
    # A view's error is answered 500 rather than raised: Django's test client stores the
    # error of any request in flight in every thread's client (one signal for all).
    client.raise_request_exception = False
    response = client.post(
        f"/api/v1/workflows/{workflow}/trigger",
        {"recipients": [{"id": recipient, "name": recipient.upper()}], "data": {"n": key}},
        HTTP_IDEMPOTENCY_KEY=key)
    body = response.json() if response.status_code < 500 else None
    return response.status_code, body, response.get("Idempotent-Replayed")


def _warm(secret: str, *workflows: str) -> None:
    """A first trigger of each workflow, alone: the process keeps its row (api.triggers)."""
    for workflow in workflows:
        assert _send(secret, f"warm-{workflow}", f"warm-{workflow}", workflow)[0] == 202


def test_concurrent_triggers_are_written_by_one_statement_each_once(api_key, make_workflow,
                                                                    gathered):
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    answers = gathered(6, lambda i: _send(api_key[1], f"k{i}", f"u{i}"))
    assert [answer[0] for answer in answers] == [202] * 6, answers
    assert (group_commit.statements, group_commit.written, group_commit.failed) == (1, 5, 0)
    for i, (_, body, replayed) in enumerate(answers):
        assert replayed is None
        trigger = Trigger.objects.get(id=body["trigger_id"])
        assert (trigger.idempotency_key, trigger.data) == (f"k{i}", {"n": f"k{i}"})
        [run] = Run.objects.filter(trigger=trigger).select_related("recipient")
        assert [{"id": str(run.id), "recipient": f"u{i}"}] == body["runs"]
        assert (run.recipient.external_id, run.recipient.name) == (f"u{i}", f"U{i}")
        record = IdempotencyRecord.objects.get(api_key=api_key[0], key=f"k{i}")
        assert record.response_body == body
    assert Trigger.objects.count() == 7
    # Every advance lane marked held has exactly one task (the first trigger of a free lane).
    assert OrmQ.objects.count() == AdvanceLane.objects.count()


def test_a_taken_key_in_a_batch_replays_and_the_others_are_written(api_key, make_workflow,
                                                                  gathered):
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    status, first, _ = _send(api_key[1], "k3", "u3")
    assert status == 202
    answers = gathered(5, lambda i: _send(api_key[1], f"k{i}", f"u{i}"))
    assert (group_commit.statements, group_commit.written) == (1, 4)
    assert answers[3] == (202, first, "true")
    assert all(status == 202 and replayed is None
               for i, (status, _, replayed) in enumerate(answers) if i != 3)
    assert Trigger.objects.filter(idempotency_key__in=[f"k{i}" for i in range(5)]).count() == 5


def test_one_key_sent_twice_at_once_never_shares_a_statement(api_key, make_workflow, gathered):
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    answers = gathered(5, lambda i: _send(api_key[1], "same" if i in (1, 2) else f"k{i}",
                                          f"u{i}" if i not in (1, 2) else "u1"))
    assert [answer[0] for answer in answers] == [202] * 5, answers
    assert answers[1][1] == answers[2][1]
    assert sorted([answers[1][2], answers[2][2]], key=str) == [None, "true"]
    assert Trigger.objects.filter(idempotency_key="same").count() == 1
    assert group_commit.statements >= 1


def test_a_workflow_changed_while_its_trigger_waits_fails_only_that_trigger(
        api_key, make_workflow, gathered, monkeypatch):
    make_workflow("welcome", steps=[in_app_step()])
    make_workflow("other", steps=[in_app_step()])
    _warm(api_key[1], "welcome", "other")
    # The kept copy of `other` is now stale: its row changed in another process.
    Workflow.objects.filter(key="other").update(updated_at=timezone.now())
    seen = []
    real = trigger_batch.triggers_rows_write

    def spy(batch, **options):
        answers = real(batch, **options)
        seen.append([(rows.workflow.key, written, unchanged)
                     for rows, (written, unchanged, _) in zip(batch, answers, strict=True)])
        return answers

    monkeypatch.setattr(group_commit_module, "triggers_rows_write", spy)
    answers = gathered(5, lambda i: _send(api_key[1], f"k{i}", f"u{i}",
                                          "other" if i == 3 else "welcome"))
    assert [answer[0] for answer in answers] == [202] * 5, answers
    [batch] = seen
    assert ("other", False, False) in batch  # its statement wrote nothing for it …
    assert all(written and unchanged for key, written, unchanged in batch if key == "welcome")
    # … and the request was done again with the workflow read again.
    trigger = Trigger.objects.get(id=answers[3][1]["trigger_id"])
    assert trigger.workflow.key == "other"
    assert Trigger.objects.filter(idempotency_key__in=[f"k{i}" for i in range(5)]).count() == 5


def test_a_trigger_that_fails_the_batch_fails_alone_and_the_others_are_written(
        api_key, make_workflow, gathered, monkeypatch):
    """One trigger's record names an API key that does not exist: the foreign key fails at the
    batch's commit, nothing of the batch is written, each trigger is written again on its own
    and only that one fails."""
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    real = trigger_batch.triggers_rows_write

    def spoiled(batch, **options):
        for rows in batch:
            if rows.record.key == "bad":
                rows.record.api_key_id = 10 ** 9
        return real(batch, **options)

    monkeypatch.setattr(group_commit_module, "triggers_rows_write", spoiled)
    answers = gathered(5, lambda i: _send(api_key[1], "bad" if i == 2 else f"k{i}", f"u{i}"))
    assert (group_commit.statements, group_commit.failed) == (0, 1)
    assert [answer[0] for answer in answers] == [202, 202, 500, 202, 202], answers
    assert not IdempotencyRecord.objects.filter(key="bad").exists()
    assert not Trigger.objects.filter(idempotency_key="bad").exists()
    assert Trigger.objects.filter(idempotency_key__in=["k0", "k1", "k3", "k4"]).count() == 4


def test_group_commit_off_writes_each_trigger_alone(api_key, make_workflow, gathered, settings):
    settings.CLARION = {**settings.CLARION, "TRIGGER_GROUP_COMMIT": 1}
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    answers = at_once(4, lambda i: _send(api_key[1], f"k{i}", f"u{i}"))
    assert [answer[0] for answer in answers] == [202] * 4, answers
    assert group_commit.statements == 0


def test_one_key_sent_twice_with_other_recipients_is_written_once(api_key, make_workflow,
                                                                  gathered):
    """The same key with different bodies (recipients) queued together: nothing but the key
    keeps them out of one statement, whose ON CONFLICT DO NOTHING would write one record while
    `ok` (a join on the key) wrote both triggers' rows. One is written, the other answered 422
    (the key reused with another body)."""
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    answers = gathered(4, lambda i: _send(api_key[1], "same" if i in (1, 2) else f"k{i}",
                                          f"u{i}"))
    assert [answers[0][0], answers[3][0]] == [202, 202], answers
    assert sorted([answers[1][0], answers[2][0]]) == [202, 422], answers
    assert (group_commit.statements, group_commit.failed) == (1, 0)  # the later alone, next
    assert Trigger.objects.filter(idempotency_key="same").count() == 1
    assert Run.objects.filter(trigger__idempotency_key="same").count() == 1


def test_two_processes_batches_with_keys_in_common_do_not_deadlock(api_key, make_workflow,
                                                                    monkeypatch):
    """Two web processes (a GroupCommit each) whose batches have two keys in common (a client
    retrying two requests on another process while they are in flight), queued in opposite
    orders: each batch inserts its records in the order of their keys, so one waits for the
    other and replays; in arrival order, each held a key the other waited for (PostgreSQL's
    deadlock after deadlock_timeout, 1 s, and the victim's triggers written again alone)."""
    make_workflow("welcome", steps=[in_app_step()])
    _warm(api_key[1], "welcome")
    # Waits as long as the slow insert takes: the one batch waits for the other's key (with
    # group commit's short lock_timeout it would give up instead, and so hide a deadlock).
    monkeypatch.setattr(group_commit_module, "WAIT_SECONDS", 30)
    monkeypatch.setattr(group_commit_module, "LOCK_WAIT_SECONDS", 30)
    processes = {"A": GroupCommit(), "B": GroupCommit()}

    class Route:
        def write(self, rows):
            return processes[threading.current_thread().name[0]].write(rows)

    monkeypatch.setattr(group_commit_module, "group_commit", Route())
    real_alone, real_batch = group_commit_module._alone, trigger_batch.triggers_rows_write

    def alone(rows):
        name = threading.current_thread().name
        if name.endswith("lead"):
            deadline = time.monotonic() + 10
            while len(processes[name[0]]._queued) < 2 and time.monotonic() < deadline:
                time.sleep(0.005)
        return real_alone(rows)

    together = threading.Barrier(2)

    def batch(rows, **options):
        together.wait(10)
        return real_batch(rows, **options)

    monkeypatch.setattr(group_commit_module, "_alone", alone)
    monkeypatch.setattr(group_commit_module, "triggers_rows_write", batch)
    results = {}

    def send(name, key, recipient):
        try:
            results[name] = _send(api_key[1], key, recipient)
        finally:
            connections.close_all()

    threads = []

    def start(name, key, recipient, queued=None):
        thread = threading.Thread(target=send, args=(name, key, recipient), name=name)
        thread.start()
        threads.append(thread)
        if queued is not None:
            deadline = time.monotonic() + 10
            while len(processes[name[0]]._queued) < queued and time.monotonic() < deadline:
                time.sleep(0.005)

    # Each record's insert takes 0.2 s, so two statements inserting two keys overlap for certain.
    with connection.cursor() as cursor:
        cursor.execute("""
            CREATE FUNCTION slow_record_insert() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$;
            CREATE TRIGGER slow_record_insert BEFORE INSERT ON notifications_idempotencyrecord
            FOR EACH ROW WHEN (NEW.key LIKE 'k%') EXECUTE FUNCTION slow_record_insert();""")
    try:
        _opposite_batches(start, threads)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER slow_record_insert ON notifications_idempotencyrecord; "
                           "DROP FUNCTION slow_record_insert();")
    assert {name: status for name, (status, _, _) in results.items()} == dict.fromkeys(
        ("A-lead", "B-lead", "A-1", "A-2", "B-1", "B-2"), 202)
    assert results["A-1"][1] == results["B-2"][1] and results["A-2"][1] == results["B-1"][1]
    assert [(process.statements, process.written, process.failed)
            for process in processes.values()] == [(1, 2, 0), (1, 2, 0)]


def _opposite_batches(start, threads) -> None:
    """A leader in each process, held until two triggers queue behind it: k1 then k2 in A,
    k2 then k1 in B (same bodies); waits for all six."""
    start("A-lead", "a", "ua")
    start("B-lead", "b", "ub")
    time.sleep(0.3)
    start("A-1", "k1", "u1", queued=1)
    start("B-1", "k2", "u2", queued=1)
    start("A-2", "k2", "u2", queued=2)
    start("B-2", "k1", "u1", queued=2)
    for thread in threads:
        thread.join(30)
