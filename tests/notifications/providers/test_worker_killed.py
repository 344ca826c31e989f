"""A worker killed (SIGKILL) during a provider call: the provider may have accepted the message.

A real process runs `deliver` against a real server that holds the request; the test kills it
once the server has the request, then runs the sweeper as production would.
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from django.conf import settings
from django.utils import timezone

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message
from notifications.providers.twilio import twilio_signature
from notifications.tasks import sweep
from tests.e2e_support import served_database_url

from .servers import Reply
from .test_sms import SID, TOKEN, TwilioRecords, twilio_check

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = ("import sys, django; django.setup(); "
          "from notifications.delivery import deliver; deliver(sys.argv[1])")


def kill_worker_mid_call(message: Message, server) -> None:
    env = {**os.environ, "DATABASE_URL": served_database_url(), "SECRET_KEY": settings.SECRET_KEY,
           "DJANGO_SETTINGS_MODULE": "clarion.settings", "CLARION_ALLOW_PRIVATE_URLS": "1"}
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(message.id)], env=env,
                              cwd=settings.BASE_DIR)
    try:
        server.wait_for(1, timeout=60)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.STARTED


def test_killed_mid_call_to_a_provider_that_cannot_be_asked_is_never_sent_twice(
        plivo_provider, queue_message):
    """Plivo offers neither an idempotency key nor a lookup of a message by ours: the outcome
    stays unknown, and the message is failed rather than risk a second SMS."""
    server = plivo_provider(lambda r: Reply(202, json={"message_uuid": ["u1"]}, delay=3))
    message = queue_message("sms", {"text": "your code is 1234"})
    kill_worker_mid_call(message, server)

    counts = sweep(now=timezone.now() + timedelta(minutes=5))
    assert counts["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == ("Delivery outcome unknown: the worker stopped during the provider "
                             "call.")
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.UNKNOWN
    deliver(str(message.id))
    sweep(now=timezone.now() + timedelta(minutes=10))
    assert len(server.requests) == 1


def test_killed_mid_call_to_an_idempotent_webhook_is_resent_with_the_same_key(
        provider_server, queue_message, run_tasks, clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    server = provider_server(respond=lambda r: Reply(200))
    server.script(Reply(200, delay=3))
    message = queue_message("webhook", {"body": "{}"}, recipient={"id": "u1"},
                            config={"url": f"{server.url}/hook"})
    kill_worker_mid_call(message, server)

    assert sweep(now=timezone.now() + timedelta(minutes=5))["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    run_tasks()
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    first, second = server.wait_for(2)
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == str(
        message.id)
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
        "unknown", "succeeded"]


def test_killed_mid_call_then_reported_by_the_provider_is_sent_not_failed(
        provider_server, provider_config, queue_message, client):
    """Twilio had the message: its status callback (the URL names Clarion's message) reaches
    Clarion after the worker died. The sweeper takes that report as the answer it never got."""
    callback = "http://testserver/webhooks/twilio/twilio/status/"
    server = provider_server(twilio_check, lambda r: Reply(201, json={"sid": "SM1"}, delay=3))
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url, "status_callback_url": callback})
    message = queue_message("sms", {"text": "your code is 1234"})
    kill_worker_mid_call(message, server)
    url = server.requests[0].form()["StatusCallback"]
    assert str(message.id) in url
    params = {"AccountSid": SID, "MessageSid": "SM1", "MessageStatus": "delivered",
              "To": message.to, "From": "+15550001111"}
    signature = twilio_signature(url, {k: [v] for k, v in params.items()}, TOKEN)
    path = urlsplit(url)
    assert client.post(f"{path.path}?{path.query}", data=urlencode(params),
                       content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature).status_code == 204

    counts = sweep(now=timezone.now() + timedelta(minutes=5))
    assert (counts["recovered"], counts["unknown"]) == (1, 0)
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.DELIVERED, "SM1")
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SUCCEEDED
    deliver(str(message.id))
    assert len(server.requests) == 1


def twilio_records(provider_server, provider_config, records: TwilioRecords):
    server = provider_server(twilio_check, records)
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url})
    return server


def posts(server) -> list:
    return [request for request in server.requests if request.method == "POST"]


def test_killed_mid_call_that_twilio_lists_is_sent_not_failed_nor_sent_again(
        provider_server, provider_config, queue_message):
    """No status callback came (none configured), but Twilio's Messages list holds the message:
    the sweeper takes its sid as the answer the worker never got."""
    records = TwilioRecords(delay=3)
    server = twilio_records(provider_server, provider_config, records)
    message = queue_message("sms", {"text": "your code is 1234"})
    kill_worker_mid_call(message, server)

    counts = sweep(now=timezone.now() + timedelta(minutes=5))
    assert (counts["recovered"], counts["unknown"]) == (1, 0)
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                            records.created[0]["sid"])
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert attempt.response["resolved_from"] == "the provider's message list"
    assert server.problems == []
    deliver(str(message.id))
    sweep(now=timezone.now() + timedelta(minutes=10))
    assert len(posts(server)) == 1


class LosesTheFirst(TwilioRecords):
    """The first create request is held and never reaches Twilio's records (lost on the way:
    the worker died before its request was whole); the next ones are created as usual."""

    def __call__(self, request):
        if request.method == "POST" and not getattr(self, "lost", False):
            self.lost = True
            return Reply(201, json={"sid": "SMlost"}, delay=3)
        return super().__call__(request)


def test_killed_mid_call_that_never_reached_twilio_is_sent_again_once(
        provider_server, provider_config, queue_message, run_tasks):
    records = LosesTheFirst()
    server = twilio_records(provider_server, provider_config, records)
    message = queue_message("sms", {"text": "your code is 1234"})
    kill_worker_mid_call(message, server)

    sweep(now=timezone.now() + timedelta(minutes=5))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR
    assert message.run.step_logs.filter(event="retrying",
                                   detail__message_id=str(message.id)).exists()
    run_tasks()
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                            records.created[0]["sid"])
    assert len(records.created) == 1  # Twilio holds it once
    assert server.problems == []


def test_killed_mid_call_while_twilio_cannot_be_asked_waits_then_fails_never_twice(
        provider_server, provider_config, queue_message):
    """The list answers 503: the message waits in `sending` (the sweeper asks again), and is
    given up as failed, never sent again, an hour after its call."""
    records = TwilioRecords(delay=3)

    def down_for_lists(request):
        return Reply(503, json={"code": 20500}) if request.method == "GET" else records(request)

    server = twilio_records(provider_server, provider_config, down_for_lists)
    message = queue_message("sms", {"text": "your code is 1234"})
    kill_worker_mid_call(message, server)

    assert sweep(now=timezone.now() + timedelta(minutes=5))["unknown"] == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENDING
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.STARTED
    sweep(now=timezone.now() + timedelta(minutes=70))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.UNKNOWN
    assert len(posts(server)) == 1
