"""Digest step: runs for the same key gather in one batch; when its window closes (or max_events
is reached) one run goes on carrying every event, the others end `digested`. A controlled clock
(engine.advance at a given `now`) drives every window."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections, transaction
from django.urls import reverse
from django_q.models import OrmQ

from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications import engine
from notifications.models import DigestBatch, DigestEvent, Message, Run, StepLog
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_cancel

from ..conftest import advance_at, in_app_step, invalid, queued_tasks
from ..conftest import timeline_events as events

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LIST = "{% for event in steps.batch.events %}[{{ event.data.n }}]{% endfor %}"


def digest_step(**config) -> StepSpec:
    return StepSpec(ref="batch", type="digest",
                    config={"window": {"minutes": 5}, "key": "data.thread", **config})


def summary_step() -> StepSpec:
    return in_app_step(ref="summary", body="{{ steps.batch.count }} new: " + LIST
                       + " by {% for a in steps.batch.actors %}{{ a.id }};{% endfor %}")


def trigger(workflow, recipient="u1", actor=None, cancellation_key="", **data) -> Run:
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[recipient],
                                              data=data, actor=actor,
                                              cancellation_key=cancellation_key))
    return runs[0]


def close_due(batch: DigestBatch, now: datetime) -> None:
    """The precise wake-up at the window's end, as tasks.flush_digest runs it, at `now`."""
    with transaction.atomic():
        engine.batch_close_due(batch_id=str(batch.pk), now=now)


def summaries() -> list[str]:
    return list(Message.objects.filter(step_ref="summary").order_by("created_at")
                .values_list("content__body", flat=True))


@pytest.fixture
def threads(make_workflow):
    return make_workflow("comments", steps=[digest_step(), summary_step()])


def test_runs_for_one_key_join_one_batch_and_one_run_carries_all_events(threads, run_tasks):
    runs = [advance_at(trigger(threads, actor=f"a{n % 2}", thread=1, n=n),
                       T0 + timedelta(seconds=n)) for n in range(3)]
    assert [run.status for run in runs] == [Run.Status.WAITING] * 3
    batch = DigestBatch.objects.get()
    assert batch.closes_at == T0 + timedelta(minutes=5) and batch.event_count == 3
    assert [run.wake_at for run in runs] == [batch.closes_at] * 3
    assert StepLog.objects.filter(event="batched").order_by("id").first().detail == {
        "batch": str(batch.pk), "opened": True, "events": 1,
        "closes_at": batch.closes_at.isoformat(), "key": {"path": "data.thread", "value": 1}}
    # The precise wake-up: one task, handed out from the window's end.
    assert [lock for _, lock in queued_tasks("notifications.tasks.flush_digest")] == [
        batch.closes_at]
    OrmQ.objects.all().delete()

    close_due(batch, T0 + timedelta(minutes=5, seconds=1))
    batch.refresh_from_db()
    assert batch.status == "closed" and batch.close_reason == "window"
    assert batch.carrier_id == runs[0].pk  # the oldest event's run
    for other in runs[1:]:
        assert events(Run.objects.get(pk=other.pk))[-1] == ("batch", "digested")
        assert Run.objects.get(pk=other.pk).status == Run.Status.COMPLETED
        assert other.step_logs.last().detail == {"batch": str(batch.pk),
                                                 "carrier": str(runs[0].pk)}
    assert [args for args, _ in queued_tasks("notifications.tasks.advance_run")] == [
        (str(runs[0].pk),)]
    run_tasks()
    carrier = Run.objects.get(pk=runs[0].pk)
    assert carrier.status == Run.Status.COMPLETED
    assert events(carrier) == [("", "triggered"), ("batch", "batched"), ("batch", "resumed"),
                               ("summary", "sent"), ("", "completed")]
    assert carrier.step_logs.get(event="resumed").detail == {
        "batch": str(batch.pk), "closed_by": "window", "count": 3}
    assert summaries() == ["3 new: [0][1][2] by a0;a1;"]
    assert carrier.state["steps"]["batch"]["events"][0] == {
        "data": {"thread": 1, "n": 0}, "actor": {"id": "a0"},
        "at": runs[0].trigger.created_at.isoformat()}


def test_different_keys_never_merge(threads):
    for n, thread in enumerate([1, 2, 1, 3, 2]):
        advance_at(trigger(threads, thread=thread, n=n), T0)
    advance_at(trigger(threads, "u2", thread=1, n=9), T0)  # another recipient
    batches = {tuple(b.events.values_list("data__n", flat=True).order_by("at"))
               for b in DigestBatch.objects.all()}
    assert batches == {(0, 2), (1, 4), (3,), (9,)}


def test_events_are_in_trigger_order_whatever_order_the_runs_advance_in(threads, run_tasks):
    runs = [trigger(threads, thread=1, n=n) for n in range(4)]
    OrmQ.objects.all().delete()
    for run in reversed(runs):
        advance_at(run, T0)
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=6))
    run_tasks()
    assert summaries() == ["4 new: [0][1][2][3] by "]


def test_max_events_closes_the_batch_early_and_the_run_that_filled_it_carries_it(make_workflow):
    workflow = make_workflow("w", steps=[digest_step(max_events=3), summary_step()])
    runs = [advance_at(trigger(workflow, thread=1, n=n), T0) for n in range(4)]
    first = DigestBatch.objects.get(status="closed")
    assert (first.close_reason, first.carrier_id) == ("max_events", runs[2].pk)
    assert [Run.objects.get(pk=run.pk).status for run in runs] == ["completed"] * 3 + ["waiting"]
    assert events(runs[2])[-3:] == [("batch", "resumed"), ("summary", "sent"), ("", "completed")]
    assert summaries() == ["3 new: [0][1][2] by "]
    assert DigestBatch.objects.filter(status="open").get().event_count == 1  # the fourth


def test_first_at_once_sends_the_first_event_straight_through_and_batches_the_rest(
        make_workflow, run_tasks):
    workflow = make_workflow("w", steps=[digest_step(first_at_once=True), summary_step()])
    runs = [advance_at(trigger(workflow, thread=1, n=n), T0) for n in range(3)]
    assert runs[0].status == Run.Status.COMPLETED
    assert events(runs[0])[1] == ("batch", "passed")
    assert summaries() == ["1 new: [0] by "]
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))
    run_tasks()
    assert summaries() == ["1 new: [0] by ", "2 new: [1][2] by "]


def test_first_at_once_alone_in_its_window_sends_nothing_more(make_workflow):
    workflow = make_workflow("w", steps=[digest_step(first_at_once=True), summary_step()])
    advance_at(trigger(workflow, thread=1, n=0), T0)
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))
    batch = DigestBatch.objects.get()
    assert (batch.status, batch.carrier_id) == ("closed", None)
    assert summaries() == ["1 new: [0] by "]


def test_a_late_run_closes_the_due_batch_and_opens_a_new_one(threads, run_tasks):
    first = advance_at(trigger(threads, thread=1, n=0), T0)
    late = advance_at(trigger(threads, thread=1, n=1), T0 + timedelta(minutes=7))
    old, new = DigestBatch.objects.order_by("opened_at")
    assert (old.status, old.carrier_id, new.status) == ("closed", first.pk, "open")
    assert late.status == Run.Status.WAITING and new.closes_at == T0 + timedelta(minutes=12)


def test_a_woken_member_closes_a_batch_whose_wake_up_was_lost(threads):
    runs = [advance_at(trigger(threads, thread=1, n=n), T0) for n in range(2)]
    OrmQ.objects.all().delete()  # the flush_digest wake-up is lost
    carrier = advance_at(runs[1], T0 + timedelta(minutes=5))  # the sweeper woke it
    assert events(carrier)[-2:] == [("summary", "sent"), ("", "completed")]
    assert Run.objects.get(pk=runs[0].pk).status == Run.Status.COMPLETED
    assert summaries() == ["2 new: [0][1] by "]


def test_a_second_wake_up_of_a_closed_batch_changes_nothing(threads, run_tasks):
    advance_at(trigger(threads, thread=1, n=0), T0)
    batch = DigestBatch.objects.get()
    close_due(batch, T0 + timedelta(minutes=5))
    close_due(batch, T0 + timedelta(minutes=6))
    run_tasks()
    run_tasks()
    assert summaries() == ["1 new: [0] by "]


def close_and_carry(now: datetime) -> None:
    """Close the one open batch at `now` and advance its carrier at `now`."""
    batch = DigestBatch.objects.get(status="open")
    close_due(batch, now)
    batch.refresh_from_db()
    OrmQ.objects.all().delete()
    if batch.carrier_id:
        advance_at(batch.carrier, now)


def test_skip_read_leaves_out_events_read_in_app_before_the_window_closed(make_workflow):
    workflow = make_workflow("w", steps=[in_app_step(), digest_step(skip_read=True),
                                         summary_step()])
    now = datetime.now(UTC)
    runs = [advance_at(trigger(workflow, thread=1, n=n), now) for n in range(3)]
    inbox_item_mark(item=InboxItem.objects.get(message__run=runs[1]), action="read")
    close_and_carry(now + timedelta(minutes=5))
    assert summaries() == ["2 new: [0][2] by "]
    assert dict(DigestEvent.objects.values_list("data__n", "outcome")) == {
        0: "included", 1: "read", 2: "included"}
    assert Run.objects.get(pk=runs[0].pk).step_logs.get(event="resumed").detail["left_out"] == {
        "read": 1}


def test_a_digest_whose_events_were_all_read_sends_nothing_and_says_why(make_workflow):
    workflow = make_workflow("w", steps=[in_app_step(), digest_step(skip_read=True),
                                         summary_step()])
    now = datetime.now(UTC)
    runs = [advance_at(trigger(workflow, thread=1, n=n), now) for n in range(2)]
    for run in runs:
        inbox_item_mark(item=InboxItem.objects.get(message__run=run), action="read")
    close_and_carry(now + timedelta(minutes=5))
    assert summaries() == []
    carrier = Run.objects.get(pk=runs[0].pk)
    assert events(carrier)[-1] == ("batch", "skipped")
    assert carrier.step_logs.last().detail["reason"] == (
        "every event of the digest was read in-app before its window closed")
    assert carrier.status == Run.Status.COMPLETED


def test_reads_after_the_window_closed_do_not_count(make_workflow, run_tasks):
    workflow = make_workflow("w", steps=[in_app_step(), digest_step(skip_read=True),
                                         summary_step()])
    runs = [advance_at(trigger(workflow, thread=1, n=n), T0) for n in range(2)]
    inbox_item_mark(item=InboxItem.objects.get(message__run=runs[1]), action="read")  # today
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))  # closed at T0 + 5 min
    run_tasks()
    assert summaries() == ["2 new: [0][1] by "]


def test_a_cancelled_run_is_left_out_of_its_batch(threads, run_tasks):
    runs = [advance_at(trigger(threads, thread=1, n=n, cancellation_key=f"c{n}"), T0)
            for n in range(3)]
    workflow_cancel(workflow=threads, cancellation_key="c0")
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))
    run_tasks()
    assert summaries() == ["2 new: [1][2] by "]
    assert DigestBatch.objects.get().carrier_id == runs[1].pk
    assert Run.objects.get(pk=runs[0].pk).status == Run.Status.CANCELLED


def test_a_digest_whose_runs_are_all_cancelled_sends_nothing(threads, run_tasks):
    for n in range(2):
        advance_at(trigger(threads, thread=1, n=n, cancellation_key="gone"), T0)
    workflow_cancel(workflow=threads, cancellation_key="gone")
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))
    run_tasks()
    batch = DigestBatch.objects.get()
    assert (batch.status, batch.close_reason, batch.carrier_id) == ("closed", "cancelled", None)
    assert set(DigestEvent.objects.values_list("outcome", flat=True)) == {"cancelled"}
    assert summaries() == [] and Message.objects.count() == 0


def test_daily_window_closes_at_the_next_local_time_of_the_recipient(make_workflow):
    workflow = make_workflow("w", steps=[digest_step(window={"daily": "09:00"}),
                                         summary_step()])
    run = trigger(workflow, {"id": "ny", "timezone": "America/New_York"}, thread=1)
    advance_at(run, datetime(2026, 3, 7, 15, 0, tzinfo=UTC))  # Sat 10:00 EST
    # Sunday 8 March 2026 is the spring-forward day: 09:00 EDT is 13:00 UTC.
    assert DigestBatch.objects.get().closes_at == datetime(2026, 3, 8, 13, 0, tzinfo=UTC)


def test_weekly_window_closes_on_the_day_and_time(make_workflow):
    workflow = make_workflow("w", steps=[digest_step(window={"weekly": {"day": "mon",
                                                                       "time": "08:30"}}),
                                         summary_step()])
    run = trigger(workflow, {"id": "berlin", "timezone": "Europe/Berlin"}, thread=1)
    advance_at(run, datetime(2026, 3, 4, 12, 0, tzinfo=UTC))  # a Wednesday
    assert DigestBatch.objects.get().closes_at == datetime(2026, 3, 9, 7, 30, tzinfo=UTC)


@pytest.mark.parametrize(("config", "fields"), [
    ({}, {"steps[0].config.window": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, {"daily": "HH:MM"} or '
        '{"weekly": {"day": "mon", "time": "HH:MM"}}.']}),
    ({"window": {"minutes": 0}}, {"steps[0].config.window": [
        'Expected {"seconds"|"minutes"|"hours"|"days": number}, longer than 0.']}),
    ({"window": {"daily": "9am"}}, {"steps[0].config.window.daily": [
        'Expected a local time "HH:MM", e.g. "09:00".']}),
    ({"window": {"weekly": {"day": "monday", "time": "09:00"}}},
     {"steps[0].config.window.weekly.day": [
         "Expected one of: mon, tue, wed, thu, fri, sat, sun."]}),
    ({"window": {"weekly": {"day": "mon", "time": "25:00"}}},
     {"steps[0].config.window.weekly.time": ['Expected a local time "HH:MM", e.g. "09:00".']}),
    ({"window": {"minutes": 5}, "key": "thread_id"}, {"steps[0].config.key": [
        "Expected a path starting with one of: data, recipient, tenant, actor, steps."]}),
    ({"window": {"minutes": 5}, "max_events": 0}, {"steps[0].config.max_events": [
        "Expected a whole number ≥ 1."]}),
    ({"window": {"minutes": 5}, "skip_read": "yes"}, {"steps[0].config.skip_read": [
        "Expected true or false."]}),
    ({"window": {"minutes": 5}, "max_event": 5}, {"steps[0].config": [
        "Unknown keys: max_event."]}),
])
def test_put_refuses_a_bad_digest_config_naming_the_field(api, db, config, fields):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "batch", "type": "digest", "config": config}]}, format="json")
    assert response.status_code == 400
    assert response.json() == invalid(fields)


def test_put_and_get_round_trip_a_digest_step(api, db):
    body = {"name": "W", "steps": [
        {"ref": "batch", "type": "digest",
         "config": {"window": {"weekly": {"day": "mon", "time": "09:00"}},
                    "key": "data.thread_id", "max_events": 50, "first_at_once": False,
                    "skip_read": True}},
        {"ref": "mail", "type": "email", "templates": {"en": {
            "subject": "{{ steps.batch.count }} new comments", "html": LIST}}}]}
    assert api.put("/api/v1/workflows/w", body, format="json").status_code == 201
    got = api.get("/api/v1/workflows/w").json()
    assert got["steps"][0] == body["steps"][0]
    assert api.put("/api/v1/workflows/w", got, format="json").json() == got


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_for_one_key_open_exactly_one_batch_on_postgresql(make_workflow):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time; set DATABASE_URL to a PostgreSQL database")
    workflow = make_workflow("w", steps=[digest_step(), summary_step()])
    runs = [trigger(workflow, thread=1, n=n) for n in range(16)]
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

    workers = [threading.Thread(target=advance, args=(run.pk,)) for run in runs]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert failures == []
    batch = DigestBatch.objects.get()
    assert batch.event_count == 16 == batch.events.count()


def test_the_run_page_shows_who_joined_the_batch_and_why_it_closed(threads, admin_client,
                                                                   run_tasks):
    runs = [advance_at(trigger(threads, thread=1, n=n, cancellation_key=f"c{n}"), T0)
            for n in range(3)]
    page = admin_client.get(reverse("admin:notifications_run_change", args=[runs[0].pk]))
    assert "open, closes" in page.content.decode()
    workflow_cancel(workflow=threads, cancellation_key="c2")
    close_due(DigestBatch.objects.get(), T0 + timedelta(minutes=5))
    run_tasks()
    html = admin_client.get(reverse("admin:notifications_run_change",
                                    args=[runs[1].pk])).content.decode()
    assert "Its window ended" in html
    digest = html[html.index('class="clarion-digest"'):]
    assert digest.count("In the digest") == 2
    assert "Left out: its run was cancelled" in digest
    assert digest.index(f'/run/{runs[0].pk}/') < digest.index(f'/run/{runs[2].pk}/')
    assert "Carried by: <a" in digest
