"""Cancellation and a delivery's finish, interleaved on PostgreSQL (two connections): each
status write moves only from the status it names, so neither overwrites the other. A message
the provider accepted is never shown cancelled; a cancelled one is never sent afterwards.

PostgreSQL only (row locks and READ COMMITTED are the point): the suite runs these when
DATABASE_URL names a PostgreSQL database."""

import threading
import time

import pytest
from django.db import connection, transaction

from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.services import TriggerRequest, trigger_workflow, workflow_cancel
from notifications.tasks import advance_run

from .test_sms import SID, TOKEN, twilio_accepts, twilio_check

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="row-lock interleaving needs PostgreSQL")]


@pytest.fixture
def cancellable(make_workflow, provider_server, provider_config):
    """A queued SMS of a run triggered with cancellation key "k", its workflow, and a Twilio
    stand-in whose answers wait for `gate` (an Event) when one is set."""
    from notifications.services import StepSpec, workflow_put

    gate = {"event": None}

    def respond(request):
        if gate["event"] is not None:
            gate["event"].wait(30)
        return twilio_accepts(request)

    server = provider_server(twilio_check, respond)
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url})
    workflow, _ = workflow_put(key="w", name="w", steps=[StepSpec(
        ref="sms", type="sms", templates={"en": {"text": "hello"}})])
    _, [run] = trigger_workflow(TriggerRequest(
        workflow=workflow, recipients=[{"id": "u1", "phone": "+15550002222"}],
        cancellation_key="k"))
    advance_run(str(run.id))
    return Message.objects.get(run=run), workflow, server, gate


def in_thread(target) -> threading.Thread:
    def run():
        try:
            target()
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until_a_backend_waits_on_a_lock() -> None:
    for _ in range(600):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                           "'Lock' AND datname = current_database()")
            if cursor.fetchone()[0]:
                return
        time.sleep(0.05)
    raise AssertionError("no backend waited on the row lock")


def message_logs(message) -> list[str]:
    return list(StepLog.objects.filter(run_id=message.run_id, detail__message_id=str(
        message.id)).order_by("id").values_list("event", flat=True))


def test_a_cancel_that_locks_first_wins_and_the_message_is_never_sent(cancellable):
    message, workflow, server, _ = cancellable
    cancelled, release = threading.Event(), threading.Event()

    def cancel_and_hold():
        with transaction.atomic():
            workflow_cancel(workflow=workflow, cancellation_key="k")
            cancelled.set()
            release.wait(30)

    canceller = in_thread(cancel_and_hold)
    assert cancelled.wait(30)
    claimed = []
    worker = in_thread(lambda: claimed.append(deliver_batch(str(message.id))))
    wait_until_a_backend_waits_on_a_lock()  # the worker's claim waits on the cancel's lock
    release.set()
    canceller.join(30)
    worker.join(30)

    message.refresh_from_db()
    assert claimed == [0]
    assert message.status == Message.Status.CANCELLED
    assert not DeliveryAttempt.objects.filter(message=message).exists()
    assert server.requests == []
    assert message_logs(message) == [StepLog.Event.QUEUED, StepLog.Event.CANCELLED]


def test_a_cancel_during_the_provider_call_leaves_the_accepted_message_sent(cancellable):
    message, workflow, server, gate = cancellable
    gate["event"] = threading.Event()
    worker = in_thread(lambda: deliver_batch(str(message.id)))
    server.wait_for(1, timeout=30)  # the request is on the wire, the message `sending`

    workflow_cancel(workflow=workflow, cancellation_key="k")
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING  # not the cancel's to write
    gate["event"].set()
    worker.join(30)

    message.refresh_from_db()
    assert message.status == Message.Status.SENT and message.provider_message_id
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
        DeliveryAttempt.Outcome.SUCCEEDED]
    assert len(server.requests) == 1
    assert message_logs(message) == [StepLog.Event.QUEUED, StepLog.Event.SENT]


def test_a_finish_never_overwrites_a_message_that_left_sending(cancellable):
    """The finish's guard: a message moved out of `sending` meanwhile (here cancelled
    directly, as the sweeper's recovery could move it) keeps that status."""
    message, workflow, server, gate = cancellable
    gate["event"] = threading.Event()
    worker = in_thread(lambda: deliver_batch(str(message.id)))
    server.wait_for(1, timeout=30)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.CANCELLED)
    gate["event"].set()
    worker.join(30)

    message.refresh_from_db()
    assert message.status == Message.Status.CANCELLED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert StepLog.Event.SENT not in message_logs(message)
