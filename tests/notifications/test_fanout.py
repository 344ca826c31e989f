"""Topic fan-out at scale: no per-subscriber work in the request, chunks in the workers, progress
on the trigger, the actor left out, and nothing lost or created twice when a worker dies."""

import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Count
from django.utils import timezone

from notifications import services
from notifications.models import Recipient, Run, StepLog, Subscription, Topic, Trigger
from notifications.services import triggers
from notifications.tasks import sweep
from tests.processes import Cluster

from ..conftest import delay_step, in_app_step

TRIGGER = "/api/v1/workflows/welcome/trigger"


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", steps=[in_app_step()])


def subscribe(topic: Topic, count: int, prefix: str = "s") -> list[Recipient]:
    """`count` new recipients subscribed to `topic`, in one INSERT each."""
    recipients = Recipient.objects.bulk_create(
        [Recipient(external_id=f"{prefix}{i:06d}") for i in range(count)])
    recipients = list(Recipient.objects.filter(external_id__startswith=prefix).order_by("pk"))
    Subscription.objects.bulk_create([Subscription(topic=topic, recipient=r) for r in recipients])
    return recipients


def test_topic_trigger_does_no_per_subscriber_work_in_the_request(
        api, welcome, django_assert_max_num_queries):
    topic = Topic.objects.create(key="big")
    subscribe(topic, 300)

    with django_assert_max_num_queries(20) as captured:
        response = api.post(TRIGGER, {"recipients": [{"topic": "big"}]})

    assert response.status_code == 202
    assert response.json()["runs"] == []
    assert Run.objects.count() == 0
    assert not any("subscription" in q["sql"].lower() and "insert" in q["sql"].lower()
                   for q in captured.captured_queries)
    detail = api.get(f"/api/v1/triggers/{response.json()['trigger_id']}").json()
    assert (detail["fanout"], detail["recipients_total"], detail["runs_created"]) == (
        "pending", None, 0)


def test_fanout_counts_recipients_and_runs_and_leaves_the_actor_out(api, welcome, run_tasks):
    team, watchers = Topic.objects.create(key="team"), Topic.objects.create(key="watchers")
    members = subscribe(team, 5, prefix="m")
    Subscription.objects.create(topic=watchers, recipient=members[0])  # on both topics
    services.recipient_upsert(external_id="w1")
    Subscription.objects.create(topic=watchers, recipient=Recipient.objects.get(external_id="w1"))

    body = {"recipients": ["direct", "m000002", {"topic": "team"}, {"topic": "watchers"}],
            "actor": "m000001"}
    trigger_id = api.post(TRIGGER, body).json()["trigger_id"]
    run_tasks()

    detail = api.get(f"/api/v1/triggers/{trigger_id}").json()
    reached = sorted(run["recipient"] for run in detail["runs"])
    assert reached == ["direct", "m000000", "m000002", "m000003", "m000004", "w1"]
    assert (detail["fanout"], detail["recipients_total"], detail["runs_created"]) == ("done", 6, 6)
    via = {log.run.recipient.external_id: log.detail["via"]
           for log in StepLog.objects.filter(event="triggered", detail__has_key="via")}
    assert via == {"m000000": "topic:team", "m000003": "topic:team", "m000004": "topic:team",
                   "w1": "topic:watchers"}


def test_direct_trigger_shows_its_totals_at_once(api, welcome):
    trigger_id = api.post(TRIGGER, {"recipients": ["a", "b"]}).json()["trigger_id"]

    detail = api.get(f"/api/v1/triggers/{trigger_id}").json()
    assert (detail["recipients_total"], detail["runs_created"]) == (2, 2)


def test_a_large_triggers_runs_are_read_a_page_at_a_time(api, welcome, run_tasks,
                                                          django_assert_max_num_queries):
    topic = Topic.objects.create(key="many")
    subscribe(topic, 250)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "many"}]}).json()["trigger_id"]
    run_tasks()
    all_runs = list(Run.objects.filter(trigger_id=trigger_id).order_by("created_at", "id")
                    .values_list("id", flat=True))

    seen, after, pages = [], None, 0
    while True:
        query = f"?limit=100&after={after}" if after else ""
        with django_assert_max_num_queries(8):  # not one per run: a page is a few queries
            detail = api.get(f"/api/v1/triggers/{trigger_id}{query}").json()
        pages += 1
        seen += [run["id"] for run in detail["runs"]]
        after = detail["page_info"]["after"]
        if after is None:
            break
    assert pages == 3 and len(detail["runs"]) == 50
    assert seen == [str(run_id) for run_id in all_runs]  # each once, oldest first
    assert detail["runs_created"] == 250
    assert len(api.get(f"/api/v1/triggers/{trigger_id}").json()["runs"]) == 100  # the default


@pytest.mark.parametrize(("query", "field"), [
    ("?limit=0", "limit"), ("?limit=1001", "limit"), ("?after=not-a-cursor", "after")])
def test_a_bad_page_of_runs_is_a_400_naming_the_parameter(api, welcome, query, field):
    trigger_id = api.post(TRIGGER, {"recipients": ["a"]}).json()["trigger_id"]
    response = api.get(f"/api/v1/triggers/{trigger_id}{query}")
    assert response.status_code == 400
    assert list(response.json()["fields"]) == [field]


def test_fanout_works_in_chunks_and_hands_the_rest_to_a_new_task(api, welcome, run_tasks,
                                                                 settings):
    settings.CLARION = {**settings.CLARION, "FANOUT_BATCH_SIZE": 4}
    topic = Topic.objects.create(key="t")
    recipients = subscribe(topic, 10)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "t"}]}).json()["trigger_id"]

    assert services.trigger_fanout(trigger_id=trigger_id, budget_seconds=0) == 4
    trigger = Trigger.objects.get(pk=trigger_id)
    assert (trigger.runs_created, trigger.recipients_total, trigger.fanout_after) == (
        4, 10, recipients[3].pk)
    assert trigger.fanout == Trigger.Fanout.PENDING

    ran = run_tasks()  # the first task (queued by the trigger), its successors, the advances

    assert ran.count("notifications.tasks.fanout_trigger") >= 1
    trigger.refresh_from_db()
    assert (trigger.fanout, trigger.runs_created) == (Trigger.Fanout.DONE, 10)
    assert sorted(Run.objects.values_list("recipient_id", flat=True)) == [r.pk for r in recipients]


def test_a_chunk_that_fails_commits_nothing_and_the_next_fanout_resumes_after_the_last_chunk(
        api, welcome, settings, monkeypatch):
    settings.CLARION = {**settings.CLARION, "FANOUT_BATCH_SIZE": 3}
    topic = Topic.objects.create(key="t")
    subscribe(topic, 8)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "t"}]}).json()["trigger_id"]
    services.trigger_fanout(trigger_id=trigger_id, budget_seconds=0)  # one chunk: 3 runs

    real_walk = triggers._fanout_runs_walk

    def dies_after_the_runs_insert(runs):  # the runs and their timeline are written
        raise RuntimeError("worker died")

    monkeypatch.setattr(triggers, "_fanout_runs_walk", dies_after_the_runs_insert)
    with pytest.raises(RuntimeError):
        services.trigger_fanout(trigger_id=trigger_id, budget_seconds=0)
    assert Run.objects.count() == 3
    assert Trigger.objects.get(pk=trigger_id).runs_created == 3

    monkeypatch.setattr(triggers, "_fanout_runs_walk", real_walk)
    services.trigger_fanout(trigger_id=trigger_id)

    assert Run.objects.count() == 8
    assert Trigger.objects.get(pk=trigger_id).runs_created == 8
    assert StepLog.objects.filter(event="triggered").count() == 8


def test_sweeper_resumes_a_fanout_only_when_it_stopped_making_progress(api, welcome):
    topic = Topic.objects.create(key="t")
    subscribe(topic, 2)
    trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "t"}]}).json()["trigger_id"]
    later = timezone.now() + timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"] + 1)
    Trigger.objects.filter(pk=trigger_id).update(fanout_at=later)  # progress "just now"

    assert sweep(now=later)["fanouts"] == 0
    assert sweep(now=later + timedelta(seconds=settings.CLARION["STUCK_AFTER_SECONDS"] + 1)
                 )["fanouts"] == 1


# --- A real qcluster killed mid-fan-out, on PostgreSQL ----------------------------------------

SUBSCRIBERS = 5000


def _start_cluster(tmp_path, name: str) -> Cluster:
    return Cluster(tmp_path / f"{name}.log", workers=2,
                   extra_env={"CLARION_FANOUT_BATCH_SIZE": "250"})


def _wait(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


def _blocked_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND datname = current_database()")
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_qcluster_killed_mid_fanout_neither_loses_nor_duplicates_a_run(api, make_workflow,
                                                                       tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs row locks another process waits on: set DATABASE_URL to PostgreSQL")
    make_workflow("welcome", steps=[delay_step(days=1), in_app_step()])
    topic = Topic.objects.create(key="everyone")
    recipients = subscribe(topic, SUBSCRIBERS)
    # Hold the row of a subscriber in the middle: the worker's INSERT of that chunk's runs (its
    # foreign key check) waits on it, inside the chunk's transaction; there it is killed.
    middle = recipients[SUBSCRIBERS // 2 + 10]
    wrapper = connections["default"]
    holder = type(wrapper)(wrapper.settings_dict, alias="holder")  # a second connection
    holder.connect()
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT 1 FROM notifications_recipient WHERE id = %s FOR UPDATE",
                       [middle.pk])
    cluster = _start_cluster(tmp_path, "first")
    try:
        trigger_id = api.post(TRIGGER, {"recipients": [{"topic": "everyone"}]}).json()[
            "trigger_id"]
        _wait(_blocked_on_a_lock, "the fan-out reaches the held subscriber")
        cluster.stop()  # SIGKILL: the whole cluster, its workers mid-chunk
    finally:
        holder.rollback()
        holder.close()
        cluster.stop()

    # One snapshot for the trigger and its runs: a killed worker's server-side session may still
    # be finishing, and two reads could straddle its end.
    with transaction.atomic():
        with connections["default"].cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        trigger = Trigger.objects.get(pk=trigger_id)
        created = Run.objects.filter(trigger=trigger).count()
    assert trigger.fanout == Trigger.Fanout.PENDING
    assert 0 < trigger.runs_created < SUBSCRIBERS
    assert created == trigger.runs_created  # chunks whole
    assert trigger.recipients_total == SUBSCRIBERS

    resumed = _start_cluster(tmp_path, "second")
    try:
        # Its progress is older than STUCK_AFTER_SECONDS: the sweeper resumes it (and only it:
        # the runs already created were touched just now).
        Trigger.objects.filter(pk=trigger_id).update(fanout_at=timezone.now() - timedelta(
            seconds=settings.CLARION["STUCK_AFTER_SECONDS"] + 1))
        assert sweep()["fanouts"] == 1
        _wait(lambda: Trigger.objects.get(pk=trigger_id).fanout == Trigger.Fanout.DONE,
              "the resumed fan-out finishes", timeout=300)
    finally:
        resumed.stop()

    trigger.refresh_from_db()
    runs = Run.objects.filter(trigger=trigger)
    assert runs.count() == SUBSCRIBERS == trigger.runs_created
    assert set(runs.values_list("recipient_id", flat=True)) == {r.pk for r in recipients}
    assert StepLog.objects.filter(run__trigger=trigger, event="triggered").count() == SUBSCRIBERS
    assert not (StepLog.objects.filter(run__trigger=trigger, event="triggered")
                .values("run").annotate(n=Count("id")).filter(n__gt=1).exists())
