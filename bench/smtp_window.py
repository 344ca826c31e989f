"""How long an SMTP email can be lost by a worker killed at its point of no return.

Delivery writes an SMTP call's attempt once the message's data is on the server but its end
("<CRLF>.<CRLF>", RFC 5321 section 4.1.1.4), then sends that end. A worker killed after the
attempt's COMMIT reached PostgreSQL and before the end left loses the email: PostgreSQL completes
the commit without it, the server drops the unended DATA. This measures that window in the real
delivery path (notifications.delivery.deliver_batch, batches of `--batch` emails sent
concurrently, to a loopback aiosmtpd server in this process), for every email: from the moment
the COMMIT that makes its attempt durable is sent to the return of the send of its end.

`--synchronous-commit on` measures it as it was before the attempt's transaction committed with
synchronous_commit off (delivery.calls.commit_without_flush): the commit then waits for the WAL's
flush. `--switch-interval S` sets the interpreter's GIL switch interval (sys.setswitchinterval;
CPython's default is 0.005 s) to see how much of the window is the loop thread waiting for the
GIL after the commit's I/O. No floor: the figure is a time, read against the machine's load.

`--keeper on|off` (CLARION_SMTP_KEEPER): with the SMTP keeper (delivery/keeper.py) the window no
longer loses the email; what it costs is printed as the delivery time per email after the first
batch (which waits for the keeper's start).

PostgreSQL only. Usage: .venv/bin/python bench/smtp_window.py [--n 400] [--batch 8]
                        [--synchronous-commit on|off] [--switch-interval S] [--keeper on|off]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench_smtp.
"""

import argparse
import os
import smtplib
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench_smtp")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import free_port  # noqa: E402
from trigger import ensure_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="off")
    parser.add_argument("--switch-interval", type=float, default=None)
    parser.add_argument("--keeper", choices=["on", "off"], default="on")
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])

    import logging

    import django
    from aiosmtpd.controller import Controller

    django.setup()
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.test.utils import override_settings
    from django_q.models import OrmQ

    from notifications.delivery import calls, deliver_batch
    from notifications.models import Message, ProviderConfig
    from notifications.providers.smtp_data import END_OF_DATA
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
    from notifications.tasks import advance_run

    received = []

    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            received.append(1)
            return "250 OK"

    smtp = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    call_command("migrate", verbosity=0)
    Message.objects.filter(status__in=("queued", "sending")).update(status="cancelled")
    ProviderConfig.objects.filter(channel="email").delete()
    config = ProviderConfig(key="bench-smtp", channel="email", kind="smtp")
    config.credentials = {"host": "127.0.0.1", "port": smtp.port,
                          "from_email": "bench@example.com"}
    config.save()
    workflow, _ = workflow_put(key="bench-smtp-window", name="Bench SMTP window", steps=[
        StepSpec(ref="mail", type="email", templates={"en": {"subject": "Code",
                                                             "text": "Your code is 1234"}})])
    ids = []
    for i in range(args.n):
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[
            {"id": f"w{i}", "email": f"w{i}@example.com"}]))
        advance_run(str(runs[0].id))
        ids.append(str(Message.objects.get(run=runs[0]).id))
    OrmQ.objects.all().delete()

    sent_commit, windows = [], []
    send, commit = smtplib.SMTP.send, BaseDatabaseWrapper.commit

    def timed_send(self, data):
        send(self, data)
        if data == END_OF_DATA:
            windows.append((time.perf_counter() - sent_commit[-1]) * 1e6)

    def timed_commit(self):
        sent_commit.append(time.perf_counter())
        return commit(self)

    def synchronous() -> None:
        """commit_without_flush as it was: nothing (the server's synchronous_commit)."""

    smtplib.SMTP.send, BaseDatabaseWrapper.commit = timed_send, timed_commit
    if args.synchronous_commit == "on":
        calls.commit_without_flush = synchronous
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    load = os.getloadavg()
    clarion = {**settings.CLARION, "DELIVERY_CONCURRENCY": args.batch,
               "DELIVERY_BATCH_SIZE": args.batch, "SMTP_KEEPER": args.keeper == "on"}
    with override_settings(CLARION=clarion):
        for start in range(0, len(ids), args.batch):
            if start == args.batch:
                began = time.perf_counter()
            deliver_batch(ids[start:start + args.batch])
        per_email = (time.perf_counter() - began) / (len(ids) - args.batch)
    from notifications.delivery import keeper_client

    if (keeper_client._client is not None) != (args.keeper == "on"):
        sys.exit(f"the keeper was {'not ' if args.keeper == 'on' else ''}used")
    smtp.stop()
    connection.close()
    if len(received) != args.n or len(windows) != args.n:
        sys.exit(f"{len(received)} emails received, {len(windows)} ends timed, of {args.n}")
    w = sorted(windows)
    print(f"SMTP window ({args.n} emails, batches of {args.batch}, synchronous_commit "
          f"{args.synchronous_commit}, switch interval {sys.getswitchinterval()} s, load "
          f"{load[0]:.1f}): median {statistics.median(w) / 1000:.2f} ms, p90 "
          f"{w[int(0.9 * len(w))] / 1000:.2f} ms, p99 {w[int(0.99 * len(w))] / 1000:.2f} ms, "
          f"max {w[-1] / 1000:.2f} ms; keeper {args.keeper}: {per_email * 1000:.2f} ms per email "
          f"delivered (after the first batch)", flush=True)


if __name__ == "__main__":
    main()
