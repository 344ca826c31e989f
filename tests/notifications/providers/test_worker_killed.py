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
from .test_sms import SID, TOKEN, twilio_check

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


def test_killed_mid_call_to_a_provider_without_idempotency_is_never_sent_twice(
        twilio_provider, queue_message):
    server = twilio_provider(lambda r: Reply(201, json={"sid": "SM1"}, delay=3), key="twilio")
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
