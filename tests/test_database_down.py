"""PostgreSQL unreachable: the API answers 503 with a JSON body and Retry-After, at once (never
a 500, never a hang). The server runs in a subprocess pointed at a port nothing listens on, so
the PostgreSQL other tests share is never stopped."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, time, django
django.setup()
from django.test import Client
client = Client(raise_request_exception=False, HTTP_HOST="localhost")
answers = []


def credentials(path):
    if path.startswith("/api/v1/inbox/"):  # reads the tenant's inbox secret from the database
        return {"HTTP_X_CLARION_RECIPIENT": "ada", "HTTP_X_CLARION_HMAC": "0" * 64,
                "HTTP_X_CLARION_TENANT": "acme"}
    return {"HTTP_AUTHORIZATION": "Bearer ck_0000_secret"}


for method, path in (("get", "/api/v1/workflows"), ("post", "/api/v1/workflows/w/trigger"),
                     ("get", "/api/v1/recipients/ada"),
                     ("get", "/api/v1/inbox/counts?tenant=acme")):
    started = time.monotonic()
    response = getattr(client, method)(path, data={"recipients": ["ada"]} if method == "post"
                                       else None, content_type="application/json",
                                       **credentials(path))
    answers.append({"path": path, "status": response.status_code,
                    "retry_after": response.get("Retry-After"),
                    "type": response.get("Content-Type"), "body": response.content.decode(),
                    "seconds": time.monotonic() - started})
print(json.dumps(answers))
"""


def test_an_unreachable_database_is_a_503_with_retry_after_within_seconds():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "clarion.settings",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:{free_port()}/clarion_down"}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    for answer in answers:
        assert answer["status"] == 503, answer
        assert answer["retry_after"] == "5", answer
        assert answer["type"] == "application/json", answer
        assert json.loads(answer["body"]) == {
            "error": "database_unavailable",
            "detail": "The database cannot be reached; retry shortly."}, answer
        assert answer["seconds"] < 10, answer
    assert time.monotonic() - started < 60


@pytest.mark.django_db
@pytest.mark.parametrize("unreachable", [True, False])
def test_a_trigger_that_fails_leaves_its_idempotency_key_free(
        api_key, make_workflow, monkeypatch, unreachable):
    # The key's record is written in the trigger's transaction: a failure, the database lost
    # or a bug, takes it back with the trigger, so the client's retry triggers (never a 409).
    import psycopg
    from django.db import OperationalError

    from notifications import services
    from notifications.models import IdempotencyRecord, Trigger

    def fail(request, ids):
        if unreachable:
            try:
                raise psycopg.OperationalError("server closed the connection unexpectedly")
            except psycopg.OperationalError as cause:
                raise OperationalError(str(cause)) from cause
        raise RuntimeError("a bug")

    workflow = make_workflow("w")
    request = services.TriggerRequest(workflow=workflow, recipients=["ada"], api_key=api_key[0])
    with monkeypatch.context() as patched:
        patched.setattr(services.triggers, "_trigger_write", fail)
        with pytest.raises(OperationalError if unreachable else RuntimeError):
            services.trigger_workflow_idempotent(request=request, idempotency_key="k1",
                                                 request_fingerprint=["w"])
    assert not IdempotencyRecord.objects.exists()
    answer = services.trigger_workflow_idempotent(request=request, idempotency_key="k1",
                                                  request_fingerprint=["w"])
    assert (answer.status, answer.replayed) == (202, False)
    assert str(Trigger.objects.get().pk) == answer.body["trigger_id"]
