"""Workers killed (SIGKILL) in the middle of a run of SMS: nothing that never left is lost.

PostgreSQL, real `qcluster` worker processes, a loopback Twilio that records every request. While
the workers send, the test kills one worker process at a time (the reincarnated ones go on).
Then, as in production: Twilio's status callbacks (carrying Clarion's message id in their URL)
arrive for every message it received, the sweeper runs, and what it queued again is delivered.

- every message reached the provider exactly once: none twice, none lost. Those whose call was
  cut short either reached Twilio (its status callback, or its Messages list, says so: sent) or
  never did (its list proves it: sent again, once); none is left of unknown outcome.

A worker is killed only while a request of its own is on the wire (the server lists the client
ports it has read a request from and not yet answered): a worker idle between tasks keeps its
connection to the provider alive, and killing it would prove nothing about a send (a worker killed
while it waits for a task is tests/test_worker_queues.py's case).

The suite runs a bounded version; `make chaos` (the `chaos` marker) a longer one. PostgreSQL
only: the suite runs it when DATABASE_URL names a PostgreSQL database.
"""

import contextlib
import os
import signal
import time
from collections import Counter
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone
from django_q.models import OrmQ

from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
from notifications.tasks import advance_run, sweep
from tests.processes import Cluster

from .test_sms import SID, TOKEN, TwilioRecords, message_id_of, twilio_check, twilio_reports

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="real worker processes against PostgreSQL")]

CONCURRENCY = 8  # DELIVERY_CONCURRENCY of the workers
# A worker claims a batch (DELIVERY_BATCH_SIZE, 100 by default) and starts CONCURRENCY calls at a
# time; a killed worker's claimed messages whose call never started wait in `sending` for the
# sweeper (STUCK_AFTER_SECONDS), which the test runs at the end. With 100 a batch, three workers
# claim all 300 messages at once and two kills can leave too few for the next kill's moment, so
# the workers here claim two rounds of calls at a time: kills keep landing mid-send.
BATCH = 2 * CONCURRENCY
CALLBACK = "http://testserver/webhooks/twilio/twilio-main/status/"


def provider_sockets(port: int, client_ports: set[int]) -> set[str]:
    """Inodes of the established TCP connections to 127.0.0.1:`port` from one of `client_ports`
    (from /proc/net/tcp)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if (fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port
                        and int(fields[1].rsplit(":", 1)[1], 16) in client_ports):
                    inodes.add(fields[9])
    return inodes


def talks_to(pid: int, inodes: set[str]) -> bool:
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def wait(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            states = Counter((status, error[:80], bool(at)) for status, error, at in
                             Message.objects.values_list("status", "error", "next_attempt_at"))
            raise AssertionError(f"waited {timeout} s for {what}; messages (status, error, "
                                 f"retry at): {dict(states)}")
        time.sleep(0.05)


def run_with_kills(tmp_path, provider_server, provider_config, client, *, n: int,
                   kills: int) -> None:
    records = TwilioRecords(delay=0.1)  # keeps what it was sent, and lists it
    server = provider_server(twilio_check, records)
    provider_config("twilio-main", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url, "status_callback_url": CALLBACK})
    workflow, _ = workflow_put(key="codes", name="codes", steps=[StepSpec(
        ref="sms", type="sms", templates={"en": {"text": "Your code is 1234"}})])
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[
        {"id": f"u{i}", "phone": f"+1555{i:07d}"} for i in range(n)]))
    OrmQ.objects.all().delete()
    for run in runs:
        advance_run(str(run.id))  # n messages queued, each with its delivery task
    assert Message.objects.filter(status=Message.Status.QUEUED).count() == n
    port = urlsplit(server.url).port

    cluster = Cluster(tmp_path / "qcluster.log", workers=3, concurrency=CONCURRENCY, batch=BATCH)
    killed = []
    try:
        for k in range(kills):
            wait(lambda k=k: len(records.created) >= (k + 1) * n // (kills + 2),
                 "requests between kills")

            sending = []  # workers with a request on the wire, not only a kept-alive socket

            def found(sending=sending):
                inodes = provider_sockets(port, set(server.in_flight))
                sending.extend(pid for pid in cluster.workers() if talks_to(pid, inodes))
                return sending

            wait(found, "a worker with a request on the wire", timeout=30)
            victim = sending[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

        def settled():  # nothing queued, and no request for a second
            count = len(records.created)
            time.sleep(1)
            return (count == len(records.created)
                    and not Message.objects.filter(status=Message.Status.QUEUED).exists())

        wait(settled, "the workers to finish what they could", timeout=120)
    finally:
        cluster.stop()
    assert len(killed) == kills

    # Twilio calls back for every message it received (the URL names Clarion's message).
    sent = [request for request in server.requests if request.method == "POST"]
    twilio_reports(client, sent)
    sweep(now=timezone.now() + timedelta(minutes=5))
    while (queued := Message.objects.filter(status=Message.Status.QUEUED).first()):
        deliver_batch(str(queued.id))
    assert not Message.objects.filter(status=Message.Status.SENDING).exists()

    sent = [request for request in server.requests if request.method == "POST"]
    reached = Counter(message_id_of(request) for request in sent)
    statuses = dict(Message.objects.values_list("id", "status"))
    assert server.problems == []
    assert len(records.created) == len(sent)
    # Exactly once: every message sent, each reached Twilio once, none of unknown outcome.
    assert set(statuses.values()) == {Message.Status.SENT}
    assert {message_id_of(request) for request in sent} == {str(pk) for pk in statuses}
    assert max(reached.values()) == 1
    assert not DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.UNKNOWN).exists()
    assert not StepLog.objects.filter(event=StepLog.Event.FAILED).exists()
    # The calls cut short that never reached Twilio: found absent from its list, sent again.
    resent = StepLog.objects.filter(event=StepLog.Event.RETRYING,
                                    detail__reason__startswith="the worker stopped during")
    listed = DeliveryAttempt.objects.filter(response__resolved_from="the provider's message list")
    print(f"\n{n} messages, {kills} kills: {len(sent)} reached the provider, once each; "
          f"cut short: {resent.count()} never arrived (sent again), {listed.count()} found in "
          f"Twilio's list")


def test_killed_workers_leave_uncertain_only_requests_on_the_wire_and_resend_the_rest_once(
        tmp_path, provider_server, provider_config, client):
    run_with_kills(tmp_path, provider_server, provider_config, client, n=300, kills=3)


@pytest.mark.chaos
def test_many_killed_workers_over_a_long_run_lose_nothing_that_never_left(
        tmp_path, provider_server, provider_config, client):
    run_with_kills(tmp_path, provider_server, provider_config, client, n=1000, kills=6)
