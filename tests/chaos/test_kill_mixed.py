"""2,000 triggers (in-app + SMS + email) while qcluster worker processes are killed with SIGKILL
at random moments.

PostgreSQL, real `qcluster` workers, a loopback Twilio that records every request, aiosmtpd for
the email. The triggers are written first (their advance tasks in the ORM queue); the workers
walk the runs and deliver while the test kills a worker process at a random moment, five times.
Then recovery, as in production: Twilio's status callbacks arrive for every SMS it received, the
sweeper runs, and what it queued again is done (here, in this process).

- every run completed; every in-app step made exactly one inbox item;
- nothing reached a provider twice (no second SMS request, no second email for one message);
- every SMS reached Twilio exactly once: a call cut short either reached it (its status
  callback or its Messages list says so: sent) or never did (its list proves it: sent again);
- every email reached the SMTP server exactly once. One whose worker died before the end of its
  data ("<CRLF>.<CRLF>") is sent again; one whose worker died while its attempt committed, or
  after, is ended and recorded by the worker's SMTP keeper (notifications/delivery/keeper.py),
  which holds a copy of the connection. Only a worker killed between reading the server's reply
  and telling its keeper leaves an email of unknown outcome (failed, on its run's timeline,
  never sent again; at most kills x DELIVERY_CONCURRENCY, test_kill_run's bound): it reached the
  server all the same, and a lost email fails the test;
- the sweeper's work is on the timelines.
"""

import os
import random
import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone

from inbox.models import InboxItem
from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message, Run, StepLog
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
from notifications.tasks import sweep
from tests.notifications.providers.servers import ProviderServer
from tests.notifications.providers.test_sms import (
    SID,
    TOKEN,
    TwilioRecords,
    message_id_of,
    twilio_check,
    twilio_reports,
)
from tests.processes import Cluster

from .support import wait

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="real worker processes against PostgreSQL")]

CALLBACK = "http://testserver/webhooks/twilio/twilio-main/status/"
CONCURRENCY = 8  # DELIVERY_CONCURRENCY of the workers


def kill_run(tmp_path, provider_config, smtp_server, client, run_tasks, *, n: int, kills: int,
             seed: int = 14):
    host, port, mailbox = smtp_server
    chance = random.Random(seed)
    twilio = ProviderServer(twilio_check, TwilioRecords(delay=0.05))
    provider_config("twilio-main", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": twilio.url, "status_callback_url": CALLBACK})
    provider_config("mail", "email", "smtp", {"host": host, "port": port,
                                              "from_email": "alerts@example.com"})
    workflow, _ = workflow_put(key="mixed", name="mixed", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ data.n }}"}}),
        StepSpec(ref="sms", type="sms", templates={"en": {"text": "Code {{ data.n }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Code", "html": "<p>Code {{ data.n }}</p>"}})])
    for i in range(n):  # n triggers, one recipient each
        trigger_workflow(TriggerRequest(workflow=workflow, data={"n": i}, recipients=[
            {"id": f"u{i}", "phone": f"+1555{i:07d}", "email": f"u{i}@example.com"}]))

    def sms_sent() -> list:  # Twilio's create requests (its list reads are GETs)
        return [request for request in twilio.requests if request.method == "POST"]

    started = time.monotonic()
    cluster = Cluster(tmp_path / "qcluster.log", workers=2, concurrency=CONCURRENCY)
    killed = []
    try:
        for k in range(kills):
            # A random moment within the part of the run this kill belongs to.
            target = (k + chance.random()) * 3 * n / (kills + 1)
            wait(lambda target=target: Message.objects.filter(
                status__in=[Message.Status.SENT, Message.Status.SENDING]).count() >= target,
                 f"kill {k + 1}'s moment", timeout=300)
            wait(lambda: cluster.workers(), "a live worker", timeout=60)
            victim = chance.choice(cluster.workers())
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        # No run left to walk, nothing queued, no request for 5 s: on a machine loaded by other
        # work a live worker can pause a second or two between calls, and stopping the cluster
        # then would be a sixth kill.
        def settled() -> bool:
            count = len(sms_sent()) + len(mailbox.messages)
            time.sleep(5)
            return (count == len(sms_sent()) + len(mailbox.messages)
                    and not Message.objects.filter(status=Message.Status.QUEUED).exists()
                    and not Run.objects.filter(status=Run.Status.RUNNING,
                                               updated_at__gt=timezone.now()
                                               - timedelta(seconds=5)).exists())

        wait(settled, "the workers to finish what they could", timeout=600, interval=1)
    finally:
        cluster.stop()
    worked = time.monotonic() - started

    # Recovery: Twilio reports on every message it received; the sweeper; what it queued.
    twilio_reports(client, sms_sent())
    # Claimed by a worker that died before making their call: the sweeper queues them again.
    never_called = {str(pk) for pk in Message.objects.filter(
        status=Message.Status.SENDING, delivery_attempts__isnull=True).values_list("pk",
                                                                                  flat=True)}
    swept = sweep(now=timezone.now() + timedelta(minutes=5))
    run_tasks(limit=20 * n)
    while (queued := Message.objects.filter(status=Message.Status.QUEUED).first()):
        deliver_batch(str(queued.id))
        run_tasks(limit=20 * n)
    recovered = time.monotonic() - started

    assert len(killed) == kills
    assert not Run.objects.exclude(status=Run.Status.COMPLETED).exists()
    assert not Message.objects.filter(status=Message.Status.SENDING).exists()
    assert InboxItem.objects.count() == n  # one per in-app step, never two
    assert twilio.problems == []
    sms_reached = Counter(message_id_of(request) for request in sms_sent())
    mail_reached = Counter(str(m["To"]) for m in mailbox.messages)
    uncertain = set(DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.UNKNOWN)
                    .values_list("message_id", flat=True))
    lost = duplicated = 0
    by_channel, reached_anyway = Counter(), Counter()
    for message in Message.objects.filter(channel__in=["sms", "email"]):
        reached = (sms_reached[str(message.pk)] if message.channel == "sms"
                   else mail_reached[message.to])
        duplicated += reached > 1
        if message.pk in uncertain:  # on the wire at a kill, never reported: given up on
            by_channel[message.channel] += 1
            reached_anyway[message.channel] += reached
            assert message.status == Message.Status.FAILED
            assert reached == 1, (message.pk, message.channel)  # unknown, never lost
        else:
            lost += reached == 0
            assert (message.status, reached) == (Message.Status.SENT, 1), (message.pk,
                                                                          message.channel)
    assert duplicated == lost == 0
    assert "sms" not in by_channel, by_channel  # every SMS's outcome found out
    assert all(count <= kills * CONCURRENCY for count in by_channel.values()), by_channel
    # The sweeper's work is on the timelines: every uncertain message failed there, and every
    # message it queued again (its worker stopped before the call started) says so, and went.
    failed = {log.detail["message_id"] for log in StepLog.objects.filter(
        event=StepLog.Event.FAILED)}
    assert failed == {str(pk) for pk in uncertain}
    # (In Python: `detail__reason__contains` is JSON containment, i.e. equality, on PostgreSQL.)
    # Two kinds: claimed but never called, and SMS calls cut short that Twilio's message list
    # shows never arrived (each went once afterwards: checked above).
    # The cluster's own sweeper (every minute) may have queued some again while the workers
    # ran, once their claim was STUCK_AFTER_SECONDS old (a loaded machine, a long run); those
    # were sent before the end, so the final sweep's set is not all: whichever sweep queued a
    # message again, no provider call of it had started before.
    sweeper_logs = [log for log in StepLog.objects.filter(event=StepLog.Event.RETRYING)
                    if "sweeper" in log.detail.get("reason", "")]
    swept_logs = [log.detail for log in sweeper_logs]
    never_arrived = [d["message_id"] for d in swept_logs if "never arrived" in d["reason"]]
    requeued = [d["message_id"] for d in swept_logs]
    assert never_called <= set(requeued)
    for log in sweeper_logs:
        if log.detail["message_id"] not in never_arrived:
            assert not DeliveryAttempt.objects.filter(
                message_id=log.detail["message_id"], started_at__lt=log.created_at).exists(), (
                log.detail)
    assert set(Message.objects.filter(pk__in=never_arrived).values_list("channel", flat=True)
               ) <= {"sms"}
    assert set(Message.objects.filter(pk__in=requeued).values_list("status", flat=True)) <= {
        Message.Status.SENT}
    lost_mail = by_channel["email"] - reached_anyway["email"]  # the window after the COMMIT
    print(f"\nkills: {n} triggers ({3 * n} steps: in-app, SMS, email), {kills} SIGKILLs, "
          f"{len(sms_sent())} SMS requests, {len(mailbox.messages)} emails; lost {lost_mail} "
          f"(emails), duplicated 0; {len(uncertain)} of unknown outcome, failed "
          f"({dict(by_channel)}; of them {dict(reached_anyway)} had reached the provider); "
          f"sweeper { {k: v for k, v in swept.items() if v} }, {len(requeued)} queued again "
          f"on their timelines ({len(never_arrived)} SMS calls Twilio's list showed never "
          f"arrived); "
          f"workers {worked:.0f} s, recovered {recovered:.0f} s")


@pytest.mark.chaos
def test_two_thousand_triggers_survive_five_worker_kills_with_nothing_lost_or_sent_twice(
        tmp_path, provider_config, smtp_server, client, run_tasks):
    kill_run(tmp_path, provider_config, smtp_server, client, run_tasks, n=2000, kills=5)
