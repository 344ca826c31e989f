"""Throttle step: at most `limit` runs per window per recipient (and key); the others end
`throttled`. Counted in the database under a row lock, so concurrent workers count together."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone
from django_q.models import OrmQ

from notifications import engine
from notifications.models import Message, RateLimitCounter, Run, StepLog, ThrottleCounter
from notifications.services import StepSpec, TriggerRequest, trigger_workflow
from notifications.tasks import sweep

from ..conftest import advance_at, in_app_step, invalid
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def throttle_step(**config) -> StepSpec:
    return StepSpec(ref="limit", type="throttle",
                    config={"limit": 2, "window": {"minutes": 10}, **config})


def _trigger(workflow, recipient="u1", **data) -> Run:
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[recipient],
                                              data=data))
    OrmQ.objects.all().delete()
    return runs[0]


@pytest.fixture
def reset(make_workflow):
    return make_workflow("reset", steps=[throttle_step(key="data.order_id"), in_app_step()])


def test_runs_beyond_the_limit_end_throttled_and_send_nothing(reset):
    runs = [advance_at(_trigger(reset, order_id=1), T0 + timedelta(minutes=i)) for i in range(3)]
    assert [run.status for run in runs] == [Run.Status.COMPLETED] * 3
    assert events(runs[0]) == [("", "triggered"), ("limit", "passed"), ("inbox", "sent"),
                               ("", "completed")]
    assert events(runs[2]) == [("", "triggered"), ("limit", "throttled")]
    assert runs[2].step_logs.last().detail == {
        "limit": 2, "window_seconds": 600.0, "count": 2,
        "key": {"path": "data.order_id", "value": 1}}
    assert Message.objects.count() == 2


def test_the_window_slides_a_run_passes_once_the_oldest_is_older_than_the_window(reset):
    for minute in (0, 5):
        advance_at(_trigger(reset, order_id=1), T0 + timedelta(minutes=minute))
    refused = advance_at(_trigger(reset, order_id=1), T0 + timedelta(minutes=9, seconds=59))
    passed = advance_at(_trigger(reset, order_id=1), T0 + timedelta(minutes=10, seconds=1))
    again = advance_at(_trigger(reset, order_id=1), T0 + timedelta(minutes=11))
    assert events(refused)[-1] == ("limit", "throttled")
    assert events(passed)[-1] == ("", "completed")
    assert events(again)[-1] == ("limit", "throttled")  # 5, 10:01 in the window ending 11:00


def test_other_keys_and_other_recipients_are_counted_apart(reset):
    for _ in range(2):
        advance_at(_trigger(reset, order_id=1), T0)
    other_order = advance_at(_trigger(reset, order_id=2), T0)
    other_person = advance_at(_trigger(reset, "u2", order_id=1), T0)
    assert events(other_order)[-1] == ("", "completed")
    assert events(other_person)[-1] == ("", "completed")
    assert ThrottleCounter.objects.count() == 3


def test_without_a_key_every_run_of_the_recipient_counts(make_workflow):
    workflow = make_workflow("w", steps=[throttle_step(limit=1), in_app_step()])
    first = advance_at(_trigger(workflow, order_id=1), T0)
    second = advance_at(_trigger(workflow, order_id=2), T0)
    assert events(first)[-1] == ("", "completed")
    assert events(second)[-1] == ("limit", "throttled")


def test_a_pass_that_rolls_back_takes_its_count_back(reset):
    run = _trigger(reset, order_id=1)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        engine.advance(Run.objects.select_related("workflow", "recipient", "trigger").get(
            pk=run.pk), now=T0)
        raise Boom
    assert not ThrottleCounter.objects.exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING


@pytest.mark.parametrize(("config", "fields"), [
    ({"limit": 0, "window": {"minutes": 1}}, {"steps[0].config.limit": [
        "Expected a whole number ≥ 1."]}),
    ({"limit": 2}, {"steps[0].config.window": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, longer than 0.']}),
    ({"limit": 2, "window": {"minutes": 0}}, {"steps[0].config.window": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, longer than 0.']}),
    ({"limit": 2, "window": {"minutes": 1}, "key": "order_id"}, {"steps[0].config.key": [
        "Expected a path starting with one of: data, recipient, tenant, actor, steps."]}),
    ({"limit": 2, "window": {"minutes": 1}, "per": "x"}, {"steps[0].config": [
        "Unknown keys: per."]}),
])
def test_put_refuses_a_bad_throttle_config_naming_the_field(api, db, config, fields):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "limit", "type": "throttle", "config": config}]}, format="json")
    assert response.status_code == 400
    assert response.json() == invalid(fields)


def test_put_and_get_round_trip_a_throttle_step(api, db):
    body = {"name": "W", "steps": [
        {"ref": "limit", "type": "throttle",
         "config": {"limit": 2, "window": {"minutes": 10}, "key": "data.order_id"}},
        {"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Hi"}}}]}
    assert api.put("/api/v1/workflows/w", body, format="json").status_code == 201
    got = api.get("/api/v1/workflows/w").json()
    assert got["steps"][0] == body["steps"][0]
    assert api.put("/api/v1/workflows/w", got, format="json").json() == got


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_in_threads_pass_exactly_the_limit_on_postgresql(make_workflow):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; set DATABASE_URL to a PostgreSQL database")
    workflow = make_workflow("reset", steps=[throttle_step(limit=3, key="data.order_id"),
                                             in_app_step()])
    runs = [_trigger(workflow, order_id=7) for _ in range(12)]
    start = threading.Barrier(len(runs))
    failures = []

    def advance(run_id):
        try:
            start.wait(20)
            with transaction.atomic():
                run = Run.objects.select_for_update(of=("self",)).select_related(
                    "workflow", "recipient", "tenant", "trigger").get(pk=run_id)
                engine.advance(run, now=T0)
        except Exception as exc:  # reported below: a thread's exception is otherwise lost
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=advance, args=(run.pk,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert failures == []
    outcomes = sorted(StepLog.objects.filter(step_ref="limit").values_list("event", flat=True))
    assert outcomes == ["passed"] * 3 + ["throttled"] * 9
    assert Message.objects.count() == 3
    assert len(ThrottleCounter.objects.get().passed) == 3


def test_the_sweeper_prunes_counters_no_limit_can_read_again(reset, make_workflow):
    now = timezone.now()
    for key, age in (("stale", timedelta(minutes=11)), ("live", timedelta(minutes=5))):
        ThrottleCounter.objects.create(key=key, passed=[(now - age).isoformat()])
        ThrottleCounter.objects.filter(key=key).update(updated_at=now - age)
    RateLimitCounter.objects.create(key="sms:+15550001111", count=3,
                                    window_start=now - timedelta(hours=2))
    RateLimitCounter.objects.create(key="sms:+15550001111", count=1,
                                    window_start=now - timedelta(minutes=1))

    counts = sweep(now=now)

    assert counts["counters"] == 2 and counts["failed_parts"] == []
    assert list(ThrottleCounter.objects.values_list("key", flat=True)) == ["live"]
    assert RateLimitCounter.objects.get().count == 1

    # A throttle step with a longer window keeps its buckets as long as that window.
    make_workflow("daily", steps=[throttle_step(window={"days": 1}), in_app_step()])
    ThrottleCounter.objects.create(key="hours-old", passed=[])
    ThrottleCounter.objects.filter(key="hours-old").update(updated_at=now - timedelta(hours=2))
    assert sweep(now=now)["counters"] == 0
    assert ThrottleCounter.objects.filter(key="hours-old").exists()
