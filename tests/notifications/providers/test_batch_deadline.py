"""A delivery batch ends before its task's timeout: no provider call starts that the time left
cannot fit, the messages it could not start go back to `queued` (on their timeline) and the
next pass sends each of them once. And the settings check that keeps the sweeper and django-q
from taking a running task for a dead one."""

import dataclasses

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from notifications.checks import task_timing_check
from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message, StepLog

from .test_sms import SID, TOKEN, twilio_accepts, twilio_check

N = 8


def test_a_batch_starts_no_call_its_deadline_cannot_fit_and_the_next_pass_sends_the_rest_once(
        provider_server, provider_config, queue_message, settings, clarion_settings):
    # Task timeout 8 s → the batch's deadline is 6.4 s in; a call may take 2 × its 2 s timeout;
    # one call on the wire at a time, each answered after 1 s: 8 calls cannot all start.
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 8, "retry": 12}
    clarion_settings(DELIVERY_CONCURRENCY=1)
    slow = {"delay": 1.0}
    server = provider_server(twilio_check, lambda request: dataclasses.replace(
        twilio_accepts(request), delay=slow["delay"]))
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url, "timeout": 2})
    messages = [queue_message("sms", {"text": f"message {n}"}) for n in range(N)]

    assert deliver_batch(str(messages[0].id)) == N
    first_pass = len(server.requests)
    by_status = {m.pk: Message.objects.get(pk=m.pk) for m in messages}
    sent = [m for m in by_status.values() if m.status == Message.Status.SENT]
    deferred = [m for m in by_status.values() if m.status == Message.Status.QUEUED]
    assert len(deferred) >= 1 and len(sent) + len(deferred) == N
    assert DeliveryAttempt.objects.count() == first_pass == len(sent)
    for message in deferred:
        assert message.attempts == 0  # no call was made: not counted
        assert not message.delivery_attempts.exists()
        log = StepLog.objects.filter(run_id=message.run_id, event=StepLog.Event.RETRYING).get()
        assert "time ran out" in log.detail["reason"]
    queued_tasks = sorted(SignedPackage.loads(row.payload)["args"][0]
                          for row in OrmQ.objects.all())
    assert queued_tasks == sorted(str(m.pk) for m in deferred)

    slow["delay"] = 0.0
    assert deliver_batch(queued_tasks[0]) == len(deferred)
    assert set(Message.objects.values_list("status", flat=True)) == {Message.Status.SENT}
    bodies = [request.form()["Body"] for request in server.requests]
    assert sorted(bodies) == sorted(f"message {n}" for n in range(N))  # each exactly once
    assert server.problems == []


def test_the_default_settings_pass_the_task_timing_check():
    assert task_timing_check() == []


@pytest.mark.parametrize(("stuck", "queue", "ids"), [
    (60, {"timeout": 60, "retry": 90}, ["notifications.E002"]),
    (30, {"timeout": 60, "retry": 90}, ["notifications.E002"]),
    (120, {"timeout": 60, "retry": 60}, ["notifications.E003"]),
    (50, {"timeout": 60, "retry": 40}, ["notifications.E002", "notifications.E003"]),
])
def test_a_stuck_time_or_queue_retry_not_above_the_task_timeout_refuses_to_start(
        settings, clarion_settings, stuck, queue, ids):
    clarion_settings(STUCK_AFTER_SECONDS=stuck)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, **queue}
    assert [error.id for error in task_timing_check()] == ids
    with pytest.raises(SystemCheckError, match=ids[0]):
        call_command("check")
