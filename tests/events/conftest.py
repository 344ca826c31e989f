"""A real HTTP receiver on 127.0.0.1 that verifies Standard Webhooks signatures with the
`standardwebhooks` package, the way an operator's endpoint would."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


class Receiver:
    """Records every request (webhook-id, type, data, whether its signature verified) and
    answers the status codes of `answers` in turn (then `default`)."""

    def __init__(self):
        self.secret = ""
        self.requests: list[dict] = []
        self.answers: list[int] = []
        self.default = 200
        self.fail_for: set[str] = set()  # recipients whose events get a 500
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    payload, verified = json.loads(body), False
                with receiver.lock:
                    if payload["data"].get("recipient") in receiver.fail_for:
                        status = 500
                    elif receiver.answers:
                        status = receiver.answers.pop(0)
                    else:
                        status = receiver.default
                    receiver.requests.append({
                        "id": headers.get("webhook-id"), "type": payload["type"],
                        "data": payload["data"], "verified": verified, "status": status,
                        "timestamp": headers.get("webhook-timestamp")})
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}' if status < 300 else b'{"error": "boom"}')

            def log_message(self, *args):
                pass

        return Handler

    def types(self, status: int | None = None) -> list[str]:
        return [r["type"] for r in self.requests if status is None or r["status"] == status]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    receiver = Receiver()
    yield receiver
    receiver.close()
