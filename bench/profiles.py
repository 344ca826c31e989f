"""Where the time goes: pyinstrument profiles of the trigger request and of one advance + delivery.

1. `--n` POST /api/v1/workflows/bench-profile/trigger through the whole stack in-process (Django's
   test client: middleware, API key, validation, recipient upsert, trigger + run + timeline rows,
   the queued task);
2. for each of those runs, `advance_run` (in-app + email: the inbox item, two messages, the
   timeline) then `deliver_message` of its email, to a loopback SMTP server (aiosmtpd) that
   accepts at once.

Prints each profile's call tree (frames under 2 % of the time hidden) and writes the HTML pages
next to it with `--html DIR`. PostgreSQL only. Usage:
.venv/bin/python bench/profiles.py [--n 200] [--html DIR]
DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/clarion_bench (created if missing).
"""

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/clarion_bench")
os.environ.setdefault("CLARION_VAR_DIR", tempfile.mkdtemp(prefix="clarion-bench-"))
os.environ.setdefault("CLARION_TRIGGER_RATE_LIMIT", "100000000")
os.environ["DJANGO_SETTINGS_MODULE"] = "clarion.settings"

from common import free_port  # noqa: E402
from trigger import ensure_database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--html", type=Path)
    args = parser.parse_args()
    ensure_database(os.environ["DATABASE_URL"])
    from aiosmtpd.controller import Controller

    class Accept:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            return "250 OK"

    smtp = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    os.environ.update(EMAIL_HOST="127.0.0.1", EMAIL_PORT=str(smtp.port))

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django_q.models import OrmQ
    from pyinstrument import Profiler

    from notifications.models import Message, Run
    from notifications.services import StepSpec, api_key_create, workflow_put
    from notifications.tasks import advance_run, deliver_message

    call_command("migrate", verbosity=0)
    workflow_put(key="bench-profile", name="Bench", steps=[
        StepSpec(ref="inbox", type="in_app", templates={"en": {"body": "Hi {{ recipient.name }}"}}),
        StepSpec(ref="mail", type="email", templates={"en": {
            "subject": "Welcome {{ recipient.name }}", "html": "<p>{{ data.text }}</p>"}}),
    ])
    _, secret = api_key_create(name="bench-profile")
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Bearer {secret}")
    tag = uuid.uuid4().hex[:6]

    def trigger(i: int) -> None:
        response = client.post(
            "/api/v1/workflows/bench-profile/trigger", json.dumps({
                "recipients": [{"id": f"{tag}-{i}", "name": f"User {i}",
                                "email": f"u{i}@example.com"}],
                "data": {"text": "Your invoice is ready"}}),
            content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"{tag}-{i}")
        assert response.status_code == 202, response.content

    for i in range(10):  # warm up: imports, caches
        trigger(-1 - i)
    profiler = Profiler(interval=0.0005)
    with profiler:
        for i in range(args.n):
            trigger(i)
    print(f"== trigger request ({args.n} POST /trigger, in-process) ==")
    print(profiler.output_text(unicode=True, show_all=False, time="percent_of_total"))
    if args.html:
        args.html.mkdir(parents=True, exist_ok=True)
        (args.html / "trigger.html").write_text(profiler.output_html())

    OrmQ.objects.all().delete()
    runs = list(Run.objects.filter(recipient__external_id__startswith=f"{tag}-")
                .values_list("id", flat=True))
    for run_id in runs[:10]:
        advance_run(str(run_id))
    profiler = Profiler(interval=0.0005)
    with profiler:
        for run_id in runs[10:]:
            advance_run(str(run_id))
            message = Message.objects.filter(run_id=run_id, channel="email").values_list(
                "id", flat=True).first()
            deliver_message(str(message))
    print(f"== advance + delivery ({len(runs) - 10} runs: advance_run, then deliver_message of "
          "the email) ==")
    print(profiler.output_text(unicode=True, show_all=False, time="percent_of_total"))
    if args.html:
        (args.html / "advance_delivery.html").write_text(profiler.output_html())
    sent = Message.objects.filter(run_id__in=runs[10:], channel="email", status="sent").count()
    assert sent == len(runs) - 10, f"{sent} of {len(runs) - 10} emails sent"
    OrmQ.objects.all().delete()
    smtp.stop()


if __name__ == "__main__":
    main()
