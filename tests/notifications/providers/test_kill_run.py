"""Workers killed (SIGKILL) in the middle of a run of SMS: nothing that never left is lost.

PostgreSQL, real `qcluster` worker processes, a loopback Twilio that records every request. While
the workers send, the test kills one worker process at a time (the reincarnated ones go on).
Then, as in production: Twilio's status callbacks (carrying Clarion's message id in their URL)
arrive for every message it received, the sweeper runs, and what it queued again is delivered.

- every message is delivered at most once (no request reaches the provider twice);
- every message whose request never started is delivered exactly once;
- the messages left uncertain (attempt started, no answer, no report from the provider) are at
  most the requests in flight at the kills: kills × DELIVERY_CONCURRENCY.

A worker is killed only while a request of its own is on the wire (the server lists the client
ports it has read a request from and not yet answered): a worker idle between tasks keeps its
connection to the provider alive, and killing it would prove nothing about a send (a worker killed
while it waits for a task is tests/test_worker_queues.py's case).

The suite runs a bounded version; `make chaos` (the `chaos` marker) a longer one. PostgreSQL
only: the suite runs it when DATABASE_URL names a PostgreSQL database.
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone
from django_q.models import OrmQ

from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message, StepLog
from notifications.providers.twilio import twilio_signature
from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
from notifications.tasks import advance_run, sweep
from tests.e2e_support import _STRIPPED_PREFIXES, _STRIPPED_VARIABLES, served_database_url

from .servers import Reply
from .test_sms import SID, TOKEN, twilio_check

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


def message_id_of(request) -> str:
    return parse_qs(urlsplit(request.form()["StatusCallback"]).query)["message_id"][0]


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


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Cluster:
    """`manage.py qcluster` with `workers` worker processes, against the test database."""

    def __init__(self, log_path: Path, workers: int, extra_env: dict | None = None):
        env = {name: value for name, value in os.environ.items()
               if name not in _STRIPPED_VARIABLES and not name.startswith(_STRIPPED_PREFIXES)}
        env.update(DATABASE_URL=served_database_url(), SECRET_KEY=settings.SECRET_KEY,
                   QUEUE_WORKERS=str(workers), CLARION_ALLOW_PRIVATE_URLS="1",
                   CLARION_DELIVERY_CONCURRENCY=str(CONCURRENCY),
                   CLARION_DELIVERY_BATCH_SIZE=str(BATCH), PYTHONUNBUFFERED="1",
                   CLARION_VAR_DIR=str(log_path.parent), **(extra_env or {}))
        self.log_path = log_path
        self._log = open(log_path, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR, env=env,
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def workers(self) -> list[int]:
        """The pids of the worker processes alive now (django-q logs "… ready for work at")."""
        pids = re.findall(r"ready for work at (\d+)", self.log_path.read_text())
        return [int(pid) for pid in pids if alive(int(pid))]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()


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
    server = provider_server(twilio_check, lambda request: Reply(
        201, json={"sid": "SM" + uuid.uuid4().hex, "status": "queued"}, delay=0.1))
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

    cluster = Cluster(tmp_path / "qcluster.log", workers=3)
    killed = []
    try:
        for k in range(kills):
            wait(lambda k=k: len(server.requests) >= (k + 1) * n // (kills + 2),
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
            count = len(server.requests)
            time.sleep(1)
            return (count == len(server.requests)
                    and not Message.objects.filter(status=Message.Status.QUEUED).exists())

        wait(settled, "the workers to finish what they could", timeout=120)
    finally:
        cluster.stop()
    assert len(killed) == kills

    # Twilio calls back for every message it received (the URL names Clarion's message).
    for request in list(server.requests):
        url = request.form()["StatusCallback"]
        params = {"AccountSid": SID, "MessageSid": "SM" + uuid.uuid4().hex,
                  "MessageStatus": "sent", "To": request.form()["To"],
                  "From": "+15550001111"}
        signature = twilio_signature(url, {k: [v] for k, v in params.items()}, TOKEN)
        path = urlsplit(url)
        response = client.post(f"{path.path}?{path.query}", data=urlencode(params),
                               content_type="application/x-www-form-urlencoded",
                               HTTP_X_TWILIO_SIGNATURE=signature)
        assert response.status_code == 204, response.content
    sweep(now=timezone.now() + timedelta(minutes=5))
    while (queued := Message.objects.filter(status=Message.Status.QUEUED).first()):
        deliver_batch(str(queued.id))
    assert not Message.objects.filter(status=Message.Status.SENDING).exists()

    reached = Counter(message_id_of(request) for request in server.requests)
    uncertain = set(DeliveryAttempt.objects.filter(outcome=DeliveryAttempt.Outcome.UNKNOWN)
                    .values_list("message_id", flat=True))
    statuses = dict(Message.objects.values_list("id", "status"))
    assert server.problems == []
    assert max(reached.values()) == 1  # nothing reached the provider twice
    for message_id, status in statuses.items():
        if message_id in uncertain:  # started, never answered, no report: given up on
            assert status == Message.Status.FAILED and reached[str(message_id)] == 0
        else:  # never started, or its outcome known: delivered, exactly once
            assert status == Message.Status.SENT, (message_id, status)
            assert reached[str(message_id)] == 1
    assert len(uncertain) <= kills * CONCURRENCY
    failed_logs = StepLog.objects.filter(event=StepLog.Event.FAILED).count()
    assert failed_logs == len(uncertain)
    print(f"\n{n} messages, {kills} kills: {len(uncertain)} uncertain, "
          f"{sum(reached.values())} reached the provider")


def test_killed_workers_leave_uncertain_only_requests_on_the_wire_and_resend_the_rest_once(
        tmp_path, provider_server, provider_config, client):
    run_with_kills(tmp_path, provider_server, provider_config, client, n=300, kills=3)


@pytest.mark.chaos
def test_many_killed_workers_over_a_long_run_lose_nothing_that_never_left(
        tmp_path, provider_server, provider_config, client):
    run_with_kills(tmp_path, provider_server, provider_config, client, n=1000, kills=6)
