"""Providers that hang: one accepts the connection and never answers, the next answers after
10 s. Real qcluster workers deliver SMS and email to recipients while they do.

- every timeout fires within its bound (twice the provider's timeout: connect, then read);
- each SMS fails over, hung → slow → healthy, and reaches the healthy provider exactly once;
  the circuit breakers of both open;
- the email of the same recipients keeps flowing meanwhile (workers are not starved): each
  reaches the SMTP server (aiosmtpd) exactly once, and promptly;
- the batch deadline holds: no task outlives the queue's timeout (no failed task, no attempt
  of unknown outcome, nothing left `sending`).
"""

import contextlib
import time
from collections import Counter

import pytest
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django_q.models import Task

from notifications.models import DeliveryAttempt, Message, ProviderConfig
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
from tests.notifications.providers.servers import ProviderServer, Reply
from tests.notifications.providers.test_sms import (
    SID,
    TOKEN,
    message_id_of,
    twilio_accepts,
    twilio_check,
)
from tests.processes import Cluster

from .support import SilentServer, wait

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="real worker processes against PostgreSQL")]

HUNG_TIMEOUT, SLOW_TIMEOUT, SLOW_ANSWER = 2, 3, 10  # seconds
BREAKER_FAILURES = 3
CALLBACK = "http://testserver/webhooks/twilio/healthy/status/"


def twilio(provider_config, key: str, url: str, priority: int, timeout: float) -> None:
    provider_config(key, "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    priority=priority,
                    options={"base_url": url, "timeout": timeout,
                             "status_callback_url": CALLBACK})


def hangs(tmp_path, provider_config, smtp_server, *, n: int, cooldown: float) -> None:
    host, port, mailbox = smtp_server
    stack = contextlib.ExitStack()
    hung = SilentServer()
    stack.callback(hung.stop)
    slow = ProviderServer(twilio_check, lambda request: Reply(
        201, json={"sid": "SMslow", "status": "queued"}, delay=SLOW_ANSWER))
    stack.callback(slow.stop)
    healthy = ProviderServer(twilio_check, twilio_accepts)
    stack.callback(healthy.stop)
    twilio(provider_config, "hung", hung.url, 1, HUNG_TIMEOUT)
    twilio(provider_config, "slow", slow.url, 2, SLOW_TIMEOUT)
    twilio(provider_config, "healthy", healthy.url, 3, 10)
    provider_config("mail", "email", "smtp", {"host": host, "port": port,
                                              "from_email": "alerts@example.com"})
    workflow, _ = workflow_put(key="alerts", name="alerts", steps=[
        StepSpec(ref="sms", type="sms", templates={"en": {"text": "Alert {{ data.n }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Alert", "html": "<p>Alert {{ data.n }}</p>"}})])
    trigger_workflow(TriggerRequest(workflow=workflow, data={"n": 1}, recipients=[
        {"id": f"u{i}", "phone": f"+1555{i:07d}", "email": f"u{i}@example.com"}
        for i in range(n)]))

    with stack:
        started = time.monotonic()
        cluster = Cluster(tmp_path / "qcluster.log", workers=2, extra_env={
            "CLARION_DELIVERY_MAX_ATTEMPTS": "1", "CLARION_DELIVERY_BACKOFF_SECONDS": "1",
            "CLARION_BREAKER_FAILURES": str(BREAKER_FAILURES),
            "CLARION_BREAKER_COOLDOWN_SECONDS": str(cooldown)})
        stack.callback(cluster.stop)
        mail_done = {}

        def settled() -> bool:
            if "at" not in mail_done and len(mailbox.messages) >= n:
                mail_done["at"] = time.monotonic() - started
            return (Message.objects.count() == 2 * n and not Message.objects.filter(
                status__in=[Message.Status.QUEUED, Message.Status.SENDING]).exists())

        wait(settled, "every message to be sent or given up", timeout=60 + n, interval=0.25)
        elapsed = time.monotonic() - started
        mailbox.wait_for(n, timeout=10)
        mail_done.setdefault("at", time.monotonic() - started)
        log = cluster.log_path.read_text()

    sms = Message.objects.filter(channel="sms")
    assert set(sms.values_list("status", "provider")) == {(Message.Status.SENT, "healthy")}
    reached = Counter(message_id_of(request) for request in healthy.requests)
    assert reached == Counter({str(pk): 1 for pk in sms.values_list("pk", flat=True)})
    assert healthy.problems == slow.problems == []
    # Every call to the hung and the slow provider ended as a timeout, within its bound.
    for key, timeout in (("hung", HUNG_TIMEOUT), ("slow", SLOW_TIMEOUT)):
        attempts = DeliveryAttempt.objects.filter(provider=key)
        assert attempts.exists()
        assert set(attempts.values_list("outcome", flat=True)) == {"transient_error"}
        assert all(error.startswith("timeout") for error in
                   attempts.values_list("error", flat=True)), key
        longest = max(attempts.values_list("duration_ms", flat=True))
        assert longest <= (2 * timeout + 1) * 1000, (key, longest)
        assert ProviderConfig.objects.get(key=key).consecutive_failures >= BREAKER_FAILURES
    hung_calls = DeliveryAttempt.objects.filter(provider="hung").count()
    slow_calls = DeliveryAttempt.objects.filter(provider="slow").count()
    # Email flowed meanwhile: each exactly once.
    assert Counter(str(m["To"]) for m in mailbox.messages) == Counter(
        f"u{i}@example.com" for i in range(n))
    assert set(Message.objects.filter(channel="email").values_list("status", flat=True)) == {
        Message.Status.SENT}
    # The batch deadline held: no task was killed or failed, no call's outcome is unknown.
    assert not Task.objects.filter(success=False).exists()
    assert "timed out" not in log and "Traceback" not in log
    assert not DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.UNKNOWN).exists()
    print(f"\nprovider hangs: {n} SMS + {n} emails, hung provider {hung.accepted} connections "
          f"({hung_calls} calls), slow provider {slow_calls} calls, healthy {len(healthy.requests)}"
          f"; all email delivered {mail_done['at']:.1f} s in, everything settled {elapsed:.1f} s "
          f"in; 0 lost, 0 duplicated")


def test_hung_and_slow_providers_time_out_fail_over_and_starve_nothing(
        tmp_path, provider_config, smtp_server):
    hangs(tmp_path, provider_config, smtp_server, n=20, cooldown=600)


@pytest.mark.chaos
def test_hung_providers_probed_again_and_again_over_a_long_run(
        tmp_path, provider_config, smtp_server):
    """A short cool-down: the breakers let a probe through every 5 s, which hangs again."""
    hangs(tmp_path, provider_config, smtp_server, n=300, cooldown=5)
