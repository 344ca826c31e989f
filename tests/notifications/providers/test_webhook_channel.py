"""The webhook channel: the rendered message POSTed as JSON, signed with HMAC-SHA256."""

import hashlib
import hmac
import time

import pytest

from notifications.delivery import deliver
from notifications.models import Message
from notifications.providers.webhook import verify

from .servers import Reply

SECRET = "whsec-0123456789abcdef"


@pytest.fixture(autouse=True)
def allow_loopback(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)


def test_webhook_posts_the_rendered_body_signed_with_a_timestamp(provider_server,
                                                                  provider_config,
                                                                  queue_message):
    server = provider_server(respond=lambda r: Reply(204))
    provider_config("hooks", "webhook", "webhook", {"signing_secret": SECRET})
    body = '{"event": "signup", "user": "{{ recipient.id }}"}'
    message = queue_message("webhook", {"body": body}, recipient={"id": "u9"},
                            config={"url": f"{server.url}/in"})
    before = int(time.time())
    deliver(str(message.id))
    [request] = server.requests
    assert request.path == "/in"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"id": str(message.id), "workflow": message.workflow.key,
                              "recipient": "u9", "tenant": None,
                              "data": {"event": "signup", "user": "u9"}}
    signature = request.headers["clarion-signature"]
    timestamp = int(signature.split(",")[0].removeprefix("t="))
    assert before <= timestamp <= time.time()
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.body,
                        hashlib.sha256).hexdigest()
    assert signature == f"t={timestamp},v1={expected}"
    assert verify(SECRET, signature, request.body)
    assert not verify(SECRET, signature, request.body + b" ")
    assert not verify(SECRET, signature, request.body, now=timestamp + 301)
    assert request.headers["idempotency-key"] == str(message.id)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    attempt = message.delivery_attempts.get()
    assert attempt.status_code == 204
    assert attempt.request["headers"]["Clarion-Signature"].startswith("t=")


def test_webhook_without_a_configured_provider_is_signed_with_the_default_secret(
        provider_server, queue_message, clarion_settings):
    clarion_settings(WEBHOOK_SIGNING_SECRET="from-the-environment")
    server = provider_server(respond=lambda r: Reply(200))
    message = queue_message("webhook", {"body": "plain text"}, recipient={"id": "u1"},
                            config={"url": f"{server.url}/hook"})
    deliver(str(message.id))
    request = server.requests[0]
    assert request.json()["data"] == "plain text"
    assert verify("from-the-environment", request.headers["clarion-signature"], request.body)
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "webhook")


def test_webhook_redirect_is_not_followed(provider_server, queue_message):
    server = provider_server(respond=lambda r: Reply(302, headers={"Location": "http://10.0.0.1/"}))
    message = queue_message("webhook", {"body": "x"}, recipient={"id": "u1"},
                            config={"url": f"{server.url}/hook"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "redirects are not followed" in message.error
    assert len(server.requests) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://10.1.2.3/x",
                                 "http://169.254.169.254/latest/meta-data/", "http://[::1]/x"])
def test_webhook_to_a_private_address_is_refused_before_any_request(queue_message, clarion_settings,
                                                                     url):
    clarion_settings(ALLOW_PRIVATE_URLS=False)
    message = queue_message("webhook", {"body": "x"}, recipient={"id": "u1"},
                            config={"url": url})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "a private or reserved address" in message.error


def test_webhook_step_without_url_is_undeliverable(queue_message):
    message = queue_message("webhook", {"body": "x"}, recipient={"id": "u1"})
    assert (message.status, message.error) == (Message.Status.UNDELIVERABLE,
                                               "The webhook step has no url.")


def test_webhooks_in_a_batch_are_each_checked_then_sent_concurrently(
        provider_server, queue_message, clarion_settings):
    from notifications.delivery import deliver_batch

    server = provider_server(respond=lambda r: Reply(200))
    messages = [queue_message("webhook", {"body": "{}"}, recipient={"id": f"u{i}"},
                              config={"url": f"{server.url}/hook"}) for i in range(3)]
    messages.append(queue_message("webhook", {"body": "{}"}, recipient={"id": "u3"},
                                  config={"url": "http://10.0.0.1/hook"}))
    clarion_settings(ALLOW_PRIVATE_URLS=False)
    assert deliver_batch(str(messages[0].id), size=10) == 4
    # Refused inside the concurrent batch, before any request left.
    assert set(Message.objects.values_list("status", flat=True)) == {"failed"}
    assert server.requests == []

    clarion_settings(ALLOW_PRIVATE_URLS=True)
    again = [queue_message("webhook", {"body": "{}"}, recipient={"id": f"v{i}"},
                           config={"url": f"{server.url}/hook"}) for i in range(3)]
    assert deliver_batch(str(again[0].id), size=10) == 3
    assert [Message.objects.get(pk=m.pk).status for m in again] == ["sent"] * 3
    assert len(server.requests) == 3
