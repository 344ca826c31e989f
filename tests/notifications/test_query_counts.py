"""The hot paths cost a fixed number of queries, whatever the audience size."""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_q.models import OrmQ

from notifications.models import Run, Trigger
from notifications.tasks import advance_run

from ..conftest import email_step, in_app_step


def trigger_queries(api, recipients) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/v1/workflows/w/trigger", {"recipients": recipients})
    assert response.status_code == 202, response.content
    return len(queries)


@pytest.fixture
def workflow(make_workflow):
    return make_workflow("w", steps=[in_app_step(), email_step()])


def test_trigger_queries_do_not_grow_with_recipients(api, workflow, clarion_settings):
    clarion_settings(ADVANCE_LANES=1)  # the warm-up's task holds it: none queues a task
    def people(n, tag):
        return [{"id": f"{tag}{i}", "name": f"P{i}", "email": f"p{i}@example.com"}
                for i in range(n)]

    trigger_queries(api, ["warm-up"])  # the key's first use also records last_used_at
    one = trigger_queries(api, people(1, "a"))
    # Bulk inserts; SQLite's cap on parameters per statement may split one into a few.
    assert one <= trigger_queries(api, people(200, "b")) <= one + 4
    # Ids alone are looked up after their INSERT … DO NOTHING (profiles' keys come back from
    # their upsert), in a transaction of a few statements (on PostgreSQL a trigger with
    # profiles is one: services/trigger_statement.py): as many for fifty as for one.
    alone = trigger_queries(api, ["c-alone"])
    assert alone <= trigger_queries(api, [f"c{i}" for i in range(50)]) <= alone + 1


# The statements of one trigger request (one profile, an Idempotency-Key, the per-key rate limit
# on and counted in Redis, the API key kept by the process), pinned so that they cannot grow
# unnoticed: each costs the web process CPU and a round trip (bench/profiles.py --cpu,
# bench/README.md "Throughput"); a change that moves these should say why. The rate limit
# counted in the database adds its UPDATE. On PostgreSQL a trigger is one statement
# (services/trigger_statement.py: the kept workflow's check, the idempotency record, the advance
# lane's hold, the recipient's upsert, the Trigger, its Run, the Run's first timeline entry,
# its advance task's queue row unless the lane is held, the analytics delta), in a test in a
# savepoint (SAVEPOINT and RELEASE counted; production sends it alone, its own transaction); a
# replay the same, the statement finding the key taken, writing nothing and reading the key's
# record for the replay (read on its own only when the statement's snapshot does not show it).
# On SQLite a transaction of ten (its savepoint and release counted in a test) after the
# workflow's check, and a replay five.
def new_trigger_statements() -> int:
    return 3 if connection.vendor == "postgresql" else 10


def replayed_trigger_statements() -> int:
    return 3 if connection.vendor == "postgresql" else 5


@pytest.mark.parametrize("store", [
    pytest.param("redis", marks=pytest.mark.skipif(not settings.REDIS_URL,
                                                   reason="needs Redis (REDIS_URL)")),
    "database"])
def test_a_trigger_request_costs_a_pinned_number_of_statements(api, workflow, clarion_settings,
                                                               store):
    # Nothing time-bound may change between the requests on a slow machine: the limit's window
    # (a new one adds its INSERT and the old one's DELETE; a window of 10^9 s began in 2001 and
    # ends in 2033), the API key kept by the process, the lane the warm-up's task holds.
    clarion_settings(TRIGGER_RATE_LIMIT=1000, TRIGGER_RATE_LIMIT_STORE=store, ADVANCE_LANES=1,
                     TRIGGER_RATE_LIMIT_WINDOW_SECONDS=10**9, API_KEY_CACHE_SECONDS=3600,
                     ADVANCE_LANE_STALE_SECONDS=3600)
    limit = 1 if store == "database" else 0

    def statements(key: str, person: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            response = api.post("/api/v1/workflows/w/trigger", {
                "recipients": [{"id": person, "name": "P", "email": f"{person}@example.com"}],
                "data": {"order": 7}}, HTTP_IDEMPOTENCY_KEY=key)
        assert response.status_code == 202, response.content
        return [query["sql"] for query in queries]

    statements("warm-up", "w")  # the key's first use records last_used_at; the limit's row
    tasks = OrmQ.objects.count()
    new = statements("k1", "p1")
    assert len(new) == new_trigger_statements() + limit, "\n".join(new)
    if connection.vendor == "postgresql":
        [rows] = [sql for sql in new if "notifications_steplog" in sql]
        assert all(table in rows for table in (
            "notifications_workflow", "notifications_idempotencyrecord",
            "notifications_advance_lanes_hold",
            "notifications_recipient", "notifications_trigger", "notifications_run",
            "django_q_ormq", "analytics_rollupdelta"))
    assert OrmQ.objects.count() == tasks  # the warm-up's task holds the lane: none queued
    assert Trigger.objects.filter(idempotency_key="k1").count() == 1
    replayed = statements("k1", "p1")
    assert len(replayed) == replayed_trigger_statements() + limit, "\n".join(replayed)
    assert Trigger.objects.filter(idempotency_key="k1").count() == 1


def test_a_bulk_trigger_enqueues_tasks_the_cluster_runs(api, workflow, run_tasks,
                                                         clarion_settings):
    clarion_settings(ADVANCE_LANES=2, ADVANCE_BATCH_SIZE=25)
    api.post("/api/v1/workflows/w/trigger", {"recipients": [f"r{i}" for i in range(30)]})
    ran = run_tasks()
    # 25 runs a batch (CLARION["ADVANCE_BATCH_SIZE"]), a batch to each of the two free advance
    # lanes, a task each; no email address, so no delivery.
    assert ran == ["notifications.tasks.advance_lane"] * 2
    assert set(Run.objects.values_list("status", flat=True)) == {Run.Status.COMPLETED}


def test_advance_run_queries_are_fixed(api, workflow, django_assert_max_num_queries):
    api.post("/api/v1/workflows/w/trigger",
             {"recipients": [{"id": "u", "name": "U", "email": "u@example.com"}]})
    run = Run.objects.get()
    # 20: the outbound-event endpoints asked once per pass (events.outbox), the pass's
    # analytics deltas written in one INSERT (analytics.rollups), its Messages in one INSERT
    # read back (ON CONFLICT DO NOTHING: engine/writes.py), its InboxItems' ids taken in one
    # statement and the items copied in (COPY is not counted here);
    # on PostgreSQL the in_app step's item-order lock (inbox.services) and the run's guarded
    # UPDATE in one statement, on SQLite no lock and the guard read before the UPDATE.
    with django_assert_max_num_queries(20):
        advance_run(str(run.id))
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED
