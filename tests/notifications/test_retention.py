"""Retention (a controlled clock; on PostgreSQL when DATABASE_URL names one) and erasure."""

import io
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.utils import timezone

from events.models import Event, EventDelivery
from events.services import endpoint_put
from inbox.models import InboxItem
from notifications import retention
from notifications.models import (
    DeliveryAttempt,
    IdempotencyRecord,
    Message,
    MessageEvent,
    RateLimitCounter,
    Recipient,
    Run,
    Schedule,
    StepLog,
    Trigger,
)
from notifications.services import TriggerRequest, recipient_erase, trigger_workflow

from ..conftest import delay_step, in_app_step

NOW = timezone.now()


def trigger(workflow, recipients, *, days_ago: float = 0, tenant=None, data=None,
            actor=None) -> Trigger:
    made, _ = trigger_workflow(TriggerRequest(workflow=workflow, recipients=recipients,
                                              tenant=tenant, data=data or {}, actor=actor))
    Trigger.objects.filter(pk=made.pk).update(created_at=NOW - timedelta(days=days_ago))
    return made


def ledger(trigger_id) -> dict:
    """The rows under a trigger, per table."""
    runs = Run.objects.filter(trigger_id=trigger_id)
    messages = Message.objects.filter(run__in=runs)
    return {"runs": runs.count(), "step logs": StepLog.objects.filter(run__in=runs).count(),
            "messages": messages.count(),
            "attempts": DeliveryAttempt.objects.filter(message__in=messages).count(),
            "events": MessageEvent.objects.filter(message__in=messages).count(),
            "inbox items": InboxItem.objects.filter(message__in=messages).count()}


def with_ledger(message: Message) -> None:
    """An attempt and a provider status event on `message`, as delivery would write them."""
    DeliveryAttempt.objects.create(message=message, provider="p", started_at=NOW,
                                   outcome="succeeded")
    MessageEvent.objects.create(message=message, provider_kind="p", kind="delivered",
                                event_id=f"e-{message.pk}", occurred_at=NOW)


@pytest.fixture
def welcome(make_workflow, run_tasks):
    return make_workflow("welcome", steps=[in_app_step()])


@pytest.mark.django_db
def test_what_is_older_than_the_period_is_deleted_with_everything_under_it(
        welcome, make_workflow, run_tasks, clarion_settings):
    clarion_settings(RETENTION_DAYS=30)
    old = trigger(welcome, ["ann", "bob"], days_ago=31)
    recent = trigger(welcome, ["ann"], days_ago=29)
    waiting_workflow = make_workflow("later", steps=[delay_step(hours=24 * 90),
                                                     in_app_step()])
    waiting = trigger(waiting_workflow, ["ann"], days_ago=60)
    run_tasks()
    for message in Message.objects.all():
        with_ledger(message)
    assert ledger(old.pk) == {"runs": 2, "step logs": ledger(old.pk)["step logs"],
                              "messages": 2, "attempts": 2, "events": 2, "inbox items": 2}
    assert ledger(old.pk)["step logs"] > 0
    kept_recent, kept_waiting = ledger(recent.pk), ledger(waiting.pk)

    report = retention.retention_apply(now=NOW, batch=1)

    assert report.finished
    assert not Trigger.objects.filter(pk=old.pk).exists()
    assert ledger(old.pk) == dict.fromkeys(kept_recent, 0)
    assert ledger(recent.pk) == kept_recent  # younger than the period
    assert ledger(waiting.pk) == kept_waiting  # its run has not ended
    assert report.deleted == {"delivery attempts": 2, "message events": 2, "inbox items": 2,
                              "step logs": report.deleted["step logs"], "messages": 2,
                              "runs": 2, "triggers": 1}
    assert set(Recipient.objects.values_list("external_id", flat=True)) == {"ann", "bob"}


@pytest.mark.django_db
def test_a_tenants_own_period_wins_over_the_global_one(welcome, run_tasks, acme, globex,
                                                       clarion_settings):
    clarion_settings(RETENTION_DAYS=30)
    acme.retention_days = 7
    acme.save()
    globex.retention_days = 0  # forever
    globex.save()
    acme_old = trigger(welcome, ["ann"], tenant=acme, days_ago=8)
    acme_new = trigger(welcome, ["ann"], tenant=acme, days_ago=6)
    globex_ancient = trigger(welcome, ["ann"], tenant=globex, days_ago=400)
    global_old = trigger(welcome, ["ann"], days_ago=31)
    global_new = trigger(welcome, ["ann"], days_ago=8)
    run_tasks()

    retention.retention_apply(now=NOW)

    kept = set(Trigger.objects.values_list("pk", flat=True))
    assert kept == {acme_new.pk, globex_ancient.pk, global_new.pk}
    assert acme_old.pk not in kept and global_old.pk not in kept


@pytest.mark.django_db
def test_a_period_of_zero_keeps_everything(welcome, run_tasks, clarion_settings):
    clarion_settings(RETENTION_DAYS=0)
    trigger(welcome, ["ann"], days_ago=5000)
    run_tasks()
    assert retention.retention_apply(now=NOW).deleted == {}
    assert Message.objects.count() == 1


@pytest.mark.django_db
def test_outbound_events_past_the_period_go_too(welcome, clarion_settings):
    clarion_settings(RETENTION_DAYS=30, ALLOW_PRIVATE_URLS=True)
    endpoint_put(key="crm", url="http://127.0.0.1:9/hook", events=["run.completed"],
                 tenant=None)
    trigger(welcome, ["ann"], days_ago=0)
    trigger(welcome, ["bob"], days_ago=0)
    from notifications.tasks import advance_run

    for run in Run.objects.all():
        advance_run(str(run.pk))
    assert Event.objects.count() == 2
    Event.objects.filter(recipient="ann").update(created_at=NOW - timedelta(days=31))
    report = retention.retention_apply(now=NOW)
    assert list(Event.objects.values_list("recipient", flat=True)) == ["bob"]
    assert EventDelivery.objects.count() == 1
    assert report.deleted["outbound events"] == 2  # the event and its delivery


@pytest.mark.django_db
def test_a_pass_stops_at_its_time_budget_and_the_next_goes_on(welcome, run_tasks,
                                                              clarion_settings):
    clarion_settings(RETENTION_DAYS=1)
    for n in range(4):
        trigger(welcome, [f"r{n}"], days_ago=2)
    run_tasks()
    first = retention.retention_apply(now=NOW, batch=1, budget_seconds=0)
    assert not first.finished
    assert first.deleted["runs"] == 1
    assert Run.objects.count() == 3  # that batch is committed
    assert retention.retention_apply(now=NOW, batch=1).finished
    assert not Run.objects.exists() and not Trigger.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="table locks are PostgreSQL's")
def test_retention_never_blocks_writers_on_postgresql(make_workflow, clarion_settings):
    """While retention deletes batch after batch, another connection writes runs, messages and
    inbox items without waiting more than a lock_timeout of 200 ms."""
    clarion_settings(RETENTION_DAYS=1)
    workflow = make_workflow("welcome", steps=[in_app_step()])
    from notifications.tasks import advance_run

    for n in range(12):
        made = trigger(workflow, [f"old{n}"], days_ago=2)
        for run in made.runs.all():
            advance_run(str(run.pk))
    done = threading.Event()

    def apply():
        try:
            retention.retention_apply(now=timezone.now(), batch=1, pause_seconds=0.02)
        finally:
            connections.close_all()
            done.set()

    worker = threading.Thread(target=apply)
    worker.start()
    writes = 0
    while not done.is_set():
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            made = trigger(workflow, [f"new{writes}"])
            for run in made.runs.all():
                advance_run(str(run.pk))
        writes += 1
        time.sleep(0.01)
    worker.join()
    assert writes > 0
    assert not Trigger.objects.filter(created_at__lt=timezone.now() - timedelta(days=1)).exists()
    assert Run.objects.count() == writes


# --- Erasure --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_erasing_a_recipient_leaves_nothing_that_names_them_in_any_table(
        welcome, run_tasks, clarion_settings, api_key):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    endpoint_put(key="crm", url="http://127.0.0.1:9/hook", events=["message.sent"], tenant=None)
    ann = {"id": "ann-7f3a", "name": "Annabel Zyx", "email": "annabel@example.com",
           "phone": "+14155550123"}
    trigger(welcome, [ann, {"id": "bob", "email": "bob@example.com"}],
            data={"mentioned": {"by": "Annabel Zyx", "contact": "annabel@example.com"},
                  "note": "call +14155550123 back", "order": 42})
    trigger(welcome, ["bob"], actor=dict(ann))
    from notifications.tasks import advance_run

    for run in Run.objects.all():
        advance_run(str(run.pk))
    Schedule.objects.create(key="weekly", workflow=welcome, recipients=["ann-7f3a", "bob"],
                            repeat={"frequency": "daily", "at": "09:00"})
    IdempotencyRecord.objects.create(api_key=api_key[0], key="k", request_hash="h",
                                     response_status=202,
                                     response_body={"runs": [{"recipient": "ann-7f3a"}]})
    RateLimitCounter.objects.create(key="sms:+14155550123", window_start=NOW, count=1)
    assert Event.objects.filter(recipient="ann-7f3a").exists()

    recipient_erase(recipient=Recipient.objects.get(external_id="ann-7f3a"))

    dump = io.StringIO()
    call_command("dumpdata", "notifications", "inbox", "preferences", "events", stdout=dump)
    text = dump.getvalue()
    for value in ("ann-7f3a", "Annabel", "annabel@example.com", "14155550123"):
        assert value not in text, value
    assert "bob@example.com" in text  # the other recipient is untouched
    first = Trigger.objects.get(data__order=42)
    assert first.recipients == ["[erased]", {"id": "bob", "email": "bob@example.com"}]
    assert first.data == {"mentioned": {"by": "[erased]", "contact": "[erased]"},
                          "note": "[erased]", "order": 42}
    assert Trigger.objects.exclude(pk=first.pk).get().actor == "[erased]"
    assert Schedule.objects.get().recipients == ["bob"]
    assert Run.objects.filter(recipient__external_id="bob").count() == 2
