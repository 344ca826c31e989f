"""Any django-anymail ESP plugs in through EMAIL_BACKEND: Postmark against a local server that
checks each request the way Postmark's API documents it (POST /email)."""

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django_q.models import OrmQ

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message
from notifications.services import TriggerRequest, tenant_upsert, trigger_workflow
from notifications.tasks import advance_run

from ..conftest import email_step

SERVER_TOKEN = "pm-server-token"


class PostmarkAPI(BaseHTTPRequestHandler):
    requests: list
    answer: int = 200

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        problems = []
        if self.path != "/email":
            problems.append(f"path {self.path}")
        if self.headers.get("X-Postmark-Server-Token") != SERVER_TOKEN:
            problems.append("X-Postmark-Server-Token")
        if self.headers.get("Accept") != "application/json":
            problems.append("Accept")
        for field in ("From", "To", "Subject"):
            if not body.get(field):
                problems.append(f"missing {field}")
        if not (body.get("HtmlBody") or body.get("TextBody")):
            problems.append("missing HtmlBody/TextBody")
        self.requests.append({"body": body, "problems": problems})
        if problems:
            status, answer = 422, {"ErrorCode": 300, "Message": "; ".join(problems)}
        elif self.answer != 200:
            status, answer = self.answer, {"ErrorCode": 10 if self.answer == 401 else 0,
                                           "Message": "error"}
        else:
            status, answer = 200, {"To": body["To"], "SubmittedAt": "2026-11-22T00:00:00Z",
                                   "MessageID": str(uuid.uuid4()), "ErrorCode": 0,
                                   "Message": "OK"}
        self.last_answer = answer
        self.requests[-1]["answer"] = answer
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def postmark(settings):
    handler = type("Handler", (PostmarkAPI,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": SERVER_TOKEN,
                        "POSTMARK_API_URL": f"http://127.0.0.1:{server.server_port}/"}
    yield handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def queued_email(make_workflow):
    tenant, _ = tenant_upsert(key="acme", name="Acme", sender_name="Acme",
                              sender_email="hello@acme.test")
    workflow = make_workflow("w", steps=[email_step(html="<p>Hi {{ recipient.name }}</p>")])
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, tenant=tenant,
        recipients=[{"id": "u1", "name": "Ada", "email": "ada@example.com"}]))
    advance_run(str(runs[0].id))
    OrmQ.objects.all().delete()
    return Message.objects.get()


def test_email_goes_through_the_configured_esp(queued_email, postmark):
    deliver(str(queued_email.id))
    [request] = postmark.requests
    assert request["problems"] == []
    body = request["body"]
    assert body["To"] == "Ada <ada@example.com>"
    assert body["From"] == "Acme <hello@acme.test>"
    assert body["Subject"] == "Hello Ada"
    assert body["HtmlBody"] == "<p>Hi Ada</p>"
    assert body["TextBody"] == "Hi Ada"
    assert body["Metadata"] == {"clarion_message_id": str(queued_email.id)}
    assert body["Tag"] == "w"
    message = Message.objects.get()
    assert message.status == Message.Status.SENT
    assert message.provider == "postmark"
    assert message.provider_message_id == request["answer"]["MessageID"]


def test_esp_server_error_is_transient_and_auth_error_permanent(queued_email, postmark):
    postmark.answer = 503
    deliver(str(queued_email.id))
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR

    postmark.answer = 401
    deliver(str(message.id), now=message.next_attempt_at)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
        "transient_error", "permanent_error"]
