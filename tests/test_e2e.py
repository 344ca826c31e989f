"""End to end: the product as `make serve` runs it, over real HTTP, mailing a real SMTP server.

`python manage.py serve` runs as a subprocess (migrate, demo seed, daphne + qcluster) against the
pytest-django test database, which is why these tests are `transaction=True`: what the served
product commits, the test reads, and the other way round.
"""

import re
import time
from email.utils import getaddresses

import pytest
from django.contrib.auth import get_user_model

from inbox.models import InboxItem
from notifications.models import ApiKey, Recipient, Tenant, Workflow

pytestmark = pytest.mark.django_db(transaction=True)

RUN_FINAL_STATUSES = {"completed", "failed", "cancelled"}
MESSAGE_PENDING_STATUSES = {"queued", "sending"}


def stop_cleanly(server) -> None:
    """Ctrl-C stops serve with exit code 0 and leaves no daphne or qcluster behind."""
    exit_code = server.stop(timeout=15)
    assert exit_code is not None, "serve did not exit within 15 s of SIGINT"
    assert exit_code == 0
    assert server.survivors == [], "processes left running after serve exited"


def wait_for_settled_run(server, api_key: str, run_id: str, timeout: float = 30) -> dict:
    """Poll GET runs/{id} until the run is final and none of its messages is still pending."""
    deadline = time.monotonic() + timeout
    while True:
        response = server.request("GET", f"/api/v1/runs/{run_id}", api_key=api_key)
        assert response.status == 200, response
        run = response.json()
        if run["status"] in RUN_FINAL_STATUSES and all(
            message["status"] not in MESSAGE_PENDING_STATUSES for message in run["messages"]
        ):
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not settle within {timeout}s: {run}")
        time.sleep(0.2)


def test_welcome_triggered_over_http_reaches_the_inbox_and_smtp(serve, smtp_server):
    _, _, smtp_inbox = smtp_server
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        api_key = server.credentials()["api_key"]

        response = server.request(
            "POST", "/api/v1/workflows/welcome/trigger", api_key=api_key,
            body={"recipients": [{"id": "e2e-user", "name": "Edith",
                                  "email": "edith@example.com"}],
                  "tenant": "acme"},
        )
        assert response.status == 202, response
        accepted = response.json()
        assert [run["recipient"] for run in accepted["runs"]] == ["e2e-user"]
        run_id = accepted["runs"][0]["id"]

        mail = smtp_inbox.wait_for(1, timeout=30)[0]
        assert mail["Subject"] == "Welcome to Acme Inc."
        assert [address for _, address in getaddresses([mail["To"]])] == ["edith@example.com"]
        assert smtp_inbox.envelopes[0].rcpt_tos == ["edith@example.com"]
        assert "hello@acme.test" in mail["From"]
        html = mail.get_body(("html",))
        assert html is not None
        assert "Welcome to Acme Inc., Edith!" in html.get_content()
        text = mail.get_body(("plain",))
        assert text is not None
        assert "Welcome to Acme Inc., Edith!" in text.get_content()

        run = wait_for_settled_run(server, api_key, run_id, timeout=30)
        assert run["status"] == "completed", run
        assert run["recipient"] == "e2e-user"
        assert run["tenant"] == "acme"
        sent = sorted(step["step"] for step in run["steps"] if step["event"] == "sent")
        assert sent == ["inbox", "mail"], run["steps"]
        messages = {message["channel"]: message for message in run["messages"]}
        assert set(messages) == {"in_app", "email"}
        assert messages["email"]["status"] == "sent"
        assert messages["email"]["provider"] == "smtp"
        assert messages["email"]["to"] == "edith@example.com"
        assert [a["outcome"] for a in messages["email"]["attempts"]] == ["succeeded"]
        # The email on the wire is the Message of the run, and it went out once.
        assert mail["Message-ID"] == f"<{messages['email']['id']}@acme.test>"
        assert len(smtp_inbox.messages) == 1

        item = InboxItem.objects.select_related("tenant").get(recipient__external_id="e2e-user")
        assert item.content["body"] == "Welcome aboard, Edith! Take the tour to get started."
        assert item.workflow_key == "welcome"
        assert item.tenant.key == "acme"
        assert str(item.message_id) == messages["in_app"]["id"]

        stop_cleanly(server)


def test_serve_again_keeps_data_and_credentials(serve):
    first = serve.start()
    with serve.logs_on_failure():
        first.wait_until_ready(timeout=60)
        # The banner's "Try it" is followed by the line saying the server now answers.
        for _ in range(50):
            if "Clarion is ready at" in first.log():
                break
            time.sleep(0.2)
        log = first.log()
        assert f"Clarion is ready at http://localhost:{first.port}/" in log, log
        assert log.index("Try it") < log.index("Clarion is ready at")
        # daphne's own log stays, without its HTTP/2 notice (HTTP/2 needs TLS, not served here).
        assert "Listening on TCP address" in log, log
        assert "HTTP/2" not in log, log
        before = first.credentials()
        response = first.request("PUT", "/api/v1/recipients/kept-user", api_key=before["api_key"],
                                 body={"name": "Kept", "email": "kept@example.com"})
        assert response.status == 201, response
        stop_cleanly(first)

        # Changed between the runs: a re-seed must not put the demo values back.
        Recipient.objects.filter(external_id="demo-user").update(name="Ada King")
        Tenant.objects.filter(key="acme").update(name="Acme Corporation")

        second = serve.start()
        second.wait_until_ready(timeout=60)
        after = second.credentials()
        assert after == before
        assert re.findall(r"\bpassword\s+(\S+)", second.log()) == [before["admin_password"]]
        assert second.admin_login(after["admin_username"], after["admin_password"])
        assert not second.admin_login(after["admin_username"], "not-the-password")

        kept = second.request("GET", "/api/v1/recipients/kept-user", api_key=after["api_key"])
        assert kept.status == 200, kept
        assert (kept.json()["name"], kept.json()["email"]) == ("Kept", "kept@example.com")
        demo_user = second.request("GET", "/api/v1/recipients/demo-user",
                                   api_key=after["api_key"])
        assert demo_user.status == 200, demo_user
        assert demo_user.json()["name"] == "Ada King"
        assert Tenant.objects.get(key="acme").name == "Acme Corporation"
        assert Tenant.objects.count() == 1
        assert sorted(Workflow.objects.values_list("key", flat=True)) == ["comment-mentioned",
                                                                          "welcome"]
        assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 1
        assert get_user_model().objects.count() == 1

        stop_cleanly(second)
