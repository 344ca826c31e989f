"""Chat kinds against local servers: Slack incoming webhooks and chat.postMessage, Teams."""

import json

import pytest

from notifications.delivery import deliver
from notifications.models import ChannelData, Message

from .servers import Reply

BOT_TOKEN = "xoxb-1234-5678-secretbottoken"
BLOCKS = '[{"type": "section", "text": {"type": "mrkdwn", "text": "*{{ recipient.id }}*"}}]'


@pytest.fixture(autouse=True)
def allow_loopback(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)


def slack_webhook_check(request) -> list[str]:
    problems = []
    if request.method != "POST" or request.path != "/services/T000/B000/XXXX":
        problems.append(f"{request.method} {request.path}")
    if request.headers.get("content-type") != "application/json":
        problems.append("content-type")
    body = request.json()
    if not body.get("text") and not body.get("blocks"):
        problems.append("missing text/blocks")
    return problems


def chat_recipient(url):
    return {"id": "team-1", "channel_data": {"chat": {"webhook_url": url}}}


def test_slack_incoming_webhook_gets_text_and_blocks(provider_server, provider_config,
                                                     queue_message):
    server = provider_server(slack_webhook_check, lambda r: Reply(200, body=b"ok"))
    provider_config("slack", "chat", "slack_webhook")
    url = f"{server.url}/services/T000/B000/XXXX"
    message = queue_message("chat", {"text": "Deploy for {{ recipient.id }}", "blocks": BLOCKS},
                            recipient=chat_recipient(url))
    assert message.to == url
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json() == {"text": "Deploy for team-1", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*team-1*"}}]}
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "slack")


def test_slack_webhook_gone_is_deactivated_in_the_channel_data(provider_server,
                                                               provider_config, queue_message):
    server = provider_server(slack_webhook_check, lambda r: Reply(404, body=b"no_service"))
    provider_config("slack", "chat", "slack_webhook")
    url = f"{server.url}/services/T000/B000/XXXX"
    message = queue_message("chat", {"text": "hi"}, recipient=chat_recipient(url))
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.error) == (Message.Status.FAILED, "Slack: no_service")
    data = ChannelData.objects.get(channel="chat").data
    assert "webhook_url" not in data
    assert data["inactive"][0]["address"] == url
    assert "no_service" in data["inactive"][0]["reason"]


def slack_api_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", "/api/chat.postMessage"):
        problems.append(f"{request.method} {request.path}")
    if request.headers.get("authorization") != f"Bearer {BOT_TOKEN}":
        problems.append("auth")
    if not request.headers.get("content-type", "").startswith("application/json"):
        problems.append("content-type")
    body = request.json()
    if not body.get("channel"):
        problems.append("missing channel")
    if not body.get("text") and not body.get("blocks"):
        problems.append("missing text/blocks")
    return problems


def slack_api_answers(request) -> Reply:
    body = request.json()
    if body["channel"] == "C-ARCHIVED":
        return Reply(200, json={"ok": False, "error": "is_archived"})
    return Reply(200, json={"ok": True, "channel": body["channel"], "ts": "1503435956.000247",
                            "message": {"text": body.get("text", "")}})


@pytest.fixture
def slack_api(provider_server, provider_config):
    server = provider_server(slack_api_check, slack_api_answers)
    provider_config("slack-bot", "chat", "slack", {"bot_token": BOT_TOKEN},
                    options={"base_url": server.url})
    return server


def test_slack_bot_posts_to_the_steps_channel(slack_api, queue_message):
    message = queue_message("chat", {"text": "Build failed"}, recipient={"id": "ops"},
                            config={"channel": "C024BE91L"})
    assert message.to == "C024BE91L"
    deliver(str(message.id))
    assert slack_api.problems == []
    assert slack_api.requests[0].json() == {"channel": "C024BE91L", "text": "Build failed"}
    message.refresh_from_db()
    assert message.provider_message_id == "C024BE91L:1503435956.000247"
    attempt = message.delivery_attempts.get()
    assert BOT_TOKEN not in json.dumps(attempt.request)


def test_slack_bot_error_in_a_200_answer_is_permanent(slack_api, queue_message):
    message = queue_message("chat", {"text": "x"}, recipient={"id": "ops"},
                            config={"channel": "C-ARCHIVED"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.error) == (Message.Status.FAILED, "Slack: is_archived")


def test_slack_rate_limit_is_transient_with_retry_after(slack_api, queue_message):
    slack_api.script(Reply(429, body=b"", headers={"Retry-After": "30"}))
    message = queue_message("chat", {"text": "x"}, recipient={"id": "ops"},
                            config={"channel": "C1"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert (message.next_attempt_at - message.updated_at).total_seconds() >= 29


def teams_check(request) -> list[str]:
    body = request.json()
    problems = [] if request.path == "/webhookb2/abc" else [f"path {request.path}"]
    try:
        [attachment] = body["attachments"]
        assert body["type"] == "message"
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["content"]["type"] == "AdaptiveCard"
    except (KeyError, ValueError, AssertionError):
        problems.append("not a message with one Adaptive Card")
    return problems


def test_teams_webhook_gets_an_adaptive_card(provider_server, provider_config, queue_message):
    server = provider_server(teams_check, lambda r: Reply(200, body=b"1"))
    provider_config("teams", "chat", "teams_webhook",
                    {"webhook_url": "http://127.0.0.1:1/unused"})
    url = f"{server.url}/webhookb2/abc"
    message = queue_message("chat", {"text": "Incident resolved"}, recipient=chat_recipient(url))
    deliver(str(message.id))
    assert server.problems == []
    card = server.requests[0].json()["attachments"][0]["content"]
    assert card["body"] == [{"type": "TextBlock", "text": "Incident resolved", "wrap": True}]
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


def test_chat_without_channel_data_or_step_channel_is_undeliverable(queue_message):
    message = queue_message("chat", {"text": "x"}, recipient={"id": "nobody"})
    assert message.status == Message.Status.UNDELIVERABLE
    assert message.error == ("The recipient has no chat channel data and the step names no "
                             "channel.")


def test_chat_webhook_on_a_private_address_is_refused(provider_config, queue_message,
                                                      clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=False)
    provider_config("slack", "chat", "slack_webhook")
    message = queue_message("chat", {"text": "x"},
                            recipient=chat_recipient("http://127.0.0.1:9/hook"))
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "resolves to 127.0.0.1, a private or reserved address" in message.error
