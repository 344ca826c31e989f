"""The delivery path, measured against its floor.

A loopback SMS provider (a Twilio-shaped API in its own process: asyncio, HTTP/1.1 keep-alive)
answers each POST at once, or after a latency. N queued SMS messages are delivered the way a
worker does it: `notifications.tasks.deliver_message(id)` for each message, in order. The first
task of a batch claims up to DELIVERY_BATCH_SIZE due messages and sends them concurrently; the
others then find their message claimed and return. Every guarantee holds: each message is claimed
before its call, has a DeliveryAttempt before and after, a timeline entry, and its status.

The floor is the same number of raw HTTP calls to the same server, with the same concurrency
(the same httpx clients, batches of the same size), and no database at all. Floor and Clarion run
in alternating rounds, so that other load on the machine weighs on both alike.

PostgreSQL only. Usage: .venv/bin/python bench/delivery.py [--n 2000] [--latency-ms 0 100]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing;
its tables are emptied first).
"""

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

SID, TOKEN = "ACbench0000000000000000000000000", "bench-auth-token"


# --- The loopback provider (run with --serve) ----------------------------------------------------

async def serve(port: int, latency: float) -> None:
    counter = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal counter
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                if latency:
                    await asyncio.sleep(latency)
                counter += 1
                body = b'{"sid": "SM%032d", "status": "queued"}' % counter
                writer.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def start_server(latency_ms: float) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                                "--latency-ms", str(latency_ms)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    sys.exit("the loopback provider did not start")


# --- The floor -----------------------------------------------------------------------------------

def floor(url: str, n: int, batch: int) -> float:
    """Seconds for n raw POSTs of a Twilio request, `batch` at a time."""
    from notifications.providers.base import async_clients

    async def run() -> float:
        # The same httpx clients the providers use (several small ones, in turn).
        clients = async_clients(timeout=30)
        path = f"{url}/2010-04-01/Accounts/{SID}/Messages.json"

        async def one(i: int) -> None:
            client = clients[i % len(clients)]
            response = await client.post(path, auth=(SID, TOKEN), data={
                "To": "+15550002222", "From": "+15550001111", "Body": f"Your code is {i}"})
            assert response.status_code == 201

        try:
            started = time.perf_counter()
            for start in range(0, n, batch):
                await asyncio.gather(*(one(i) for i in range(start, min(start + batch, n))))
            return time.perf_counter() - started
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


# --- Clarion -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 100])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.latency_ms[0] / 1000))
        return

    from trigger import ensure_database

    ensure_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from notifications.models import DeliveryAttempt, Message, ProviderConfig, Recipient, Run
    from notifications.models import Trigger as TriggerRow
    from notifications.services import StepSpec, workflow_put
    from notifications.tasks import deliver_message

    call_command("migrate", verbosity=0)
    batch = settings.CLARION["DELIVERY_BATCH_SIZE"]
    print(f"Clarion delivery benchmark: n={args.n} SMS, batch {batch}, "
          f"PostgreSQL {connection.pg_version}, {os.cpu_count()} CPUs")

    workflow, _ = workflow_put(key="bench-sms", name="Bench SMS", steps=[
        StepSpec(ref="sms", type="sms",
                 templates={"en": {"text": "Your code is {{ data.code }}"}})])
    step = workflow.steps.get()

    def queue(n: int) -> list[str]:
        """n queued messages, as the engine leaves them (bulk, not measured)."""
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE notifications_trigger, notifications_recipient, "
                           "django_q_ormq, django_q_schedule CASCADE")
        recipients = Recipient.objects.bulk_create(
            Recipient(external_id=f"b{i}", phone="+15550002222") for i in range(n))
        trigger = TriggerRow.objects.create(workflow=workflow)
        runs = Run.objects.bulk_create(
            Run(trigger=trigger, workflow=workflow, recipient=r, status="completed")
            for r in recipients)
        messages = Message.objects.bulk_create(
            Message(run=run, step=step, step_ref="sms", recipient_id=run.recipient_id,
                    workflow=workflow, channel="sms", to="+15550002222",
                    content={"text": f"Your code is {i}"}) for i, run in enumerate(runs))
        return [str(m.id) for m in messages]

    for latency in args.latency_ms:
        process, url = start_server(latency)
        try:
            ProviderConfig.objects.all().delete()
            config = ProviderConfig(key="bench-twilio", channel="sms", kind="twilio",
                                    options={"base_url": url})
            config.credentials = {"account_sid": SID, "auth_token": TOKEN,
                                  "from": "+15550001111"}
            config.save()
            n = args.n if latency < 50 else max(args.n // 2, batch)
            floor(url, min(n, 200), batch)  # warm-up
            # Alternate rounds of floor and Clarion, so that load from anything else on the
            # machine weighs on both alike.
            per_round = max(n // args.rounds, batch)
            floor_seconds = clarion_seconds = 0.0
            n = per_round * args.rounds
            for _ in range(args.rounds):
                floor_seconds += floor(url, per_round, batch)
                ids = queue(per_round)
                started = time.perf_counter()
                for message_id in ids:
                    deliver_message(message_id)
                clarion_seconds += time.perf_counter() - started
                sent = Message.objects.filter(status="sent").count()
                attempts = DeliveryAttempt.objects.filter(outcome="succeeded").count()
                assert sent == attempts == per_round, (sent, attempts, per_round)
        finally:
            process.kill()
            process.wait()
        clarion_rate, floor_rate = n / clarion_seconds, n / floor_seconds
        print(f"provider latency {latency:g} ms, {n} messages")
        print(f"  clarion  {clarion_rate:8.1f} sends/s  ({clarion_seconds:6.2f} s, every message "
              "claimed, attempted, logged, sent)")
        print(f"  floor    {floor_rate:8.1f} calls/s  ({floor_seconds:6.2f} s, raw HTTP, "
              "same concurrency)")
        print(f"  ratio    {clarion_rate / floor_rate:8.2f} of the floor")
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE notifications_trigger, notifications_recipient, django_q_ormq, "
                       "django_q_schedule CASCADE")
    ProviderConfig.objects.all().delete()
    workflow.delete()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
