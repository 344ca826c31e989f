"""Discord, Google Chat and Mattermost webhooks against local servers that check each request the
way the service documents it, answer as it does (errors included), and the SSRF check they share
with the other webhook-URL chat kinds."""

import pytest

from notifications.delivery import deliver
from notifications.models import ChannelData, Message

from .servers import Reply

EMBEDS = '[{"title": "Deploy {{ recipient.id }}", "description": "done"}]'


@pytest.fixture
def allow_loopback(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)


def chat_recipient(url):
    return {"id": "team-1", "channel_data": {"chat": {"webhook_url": url}}}


def discord_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == (
        "POST", "/api/webhooks/1234/tok-en") else [f"{request.method} {request.path}"]
    if request.query.get("wait") != ["true"]:
        problems.append("wait=true")
    body = request.json()
    if not body.get("content") and not body.get("embeds"):
        problems.append("content or embeds")
    if len(body.get("content", "")) > 2000:
        problems.append("content longer than 2000")
    return problems


def test_discord_gets_content_and_embeds_and_its_message_id_is_kept(
        allow_loopback, provider_server, provider_config, queue_message):
    server = provider_server(discord_check, lambda r: Reply(200, json={
        "id": "1192837465", "channel_id": "42", "content": r.json()["content"]}))
    provider_config("discord", "chat", "discord_webhook")
    message = queue_message("chat", {"text": "Deploy for {{ recipient.id }}", "blocks": EMBEDS},
                            recipient=chat_recipient(f"{server.url}/api/webhooks/1234/tok-en"))
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json() == {"content": "Deploy for team-1", "embeds": [
        {"title": "Deploy team-1", "description": "done"}]}
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT, "1192837465")


def test_discord_unknown_webhook_is_retired_from_the_channel_data(
        allow_loopback, provider_server, provider_config, queue_message):
    server = provider_server(discord_check, lambda r: Reply(404, json={
        "message": "Unknown Webhook", "code": 10015}))
    provider_config("discord", "chat", "discord_webhook")
    url = f"{server.url}/api/webhooks/1234/tok-en"
    message = queue_message("chat", {"text": "hi"}, recipient=chat_recipient(url))
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED and "10015" in message.error
    data = ChannelData.objects.get(recipient=message.recipient, channel="chat").data
    assert "webhook_url" not in data and url in str(data.get("inactive"))


def test_discord_rate_limit_is_transient_with_its_retry_after(
        allow_loopback, provider_server, provider_config, queue_message, clarion_settings):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    server = provider_server(discord_check, lambda r: Reply(429, json={
        "message": "You are being rate limited.", "retry_after": 0.5, "global": False}))
    provider_config("discord", "chat", "discord_webhook")
    message = queue_message("chat", {"text": "hi"},
                            recipient=chat_recipient(f"{server.url}/api/webhooks/1234/tok-en"))
    deliver(str(message.id))
    assert message.delivery_attempts.get().outcome == "transient_error"


def google_chat_check(request) -> list[str]:
    problems = [] if request.path == "/v1/spaces/AAAA/messages" else [f"path {request.path}"]
    if request.query.get("key") != ["k"] or request.query.get("token") != ["t"]:
        problems.append("key/token")
    body = request.json()
    if not body.get("text") and not body.get("cardsV2"):
        problems.append("text or cardsV2")
    return problems


def test_google_chat_gets_text_and_cards_and_its_message_name_is_kept(
        allow_loopback, provider_server, provider_config, queue_message):
    server = provider_server(google_chat_check, lambda r: Reply(200, json={
        "name": "spaces/AAAA/messages/BBBB.BBBB", "text": r.json().get("text")}))
    provider_config("gchat", "chat", "google_chat_webhook")
    cards = '[{"cardId": "c1", "card": {"header": {"title": "{{ recipient.id }}"}}}]'
    message = queue_message("chat", {"text": "Deploy", "blocks": cards}, recipient=chat_recipient(
        f"{server.url}/v1/spaces/AAAA/messages?key=k&token=t"))
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json()["cardsV2"] == [
        {"cardId": "c1", "card": {"header": {"title": "team-1"}}}]
    message.refresh_from_db()
    assert message.provider_message_id == "spaces/AAAA/messages/BBBB.BBBB"


def test_google_chat_space_gone_is_permanent_and_retires_the_url(
        allow_loopback, provider_server, provider_config, queue_message):
    server = provider_server(google_chat_check, lambda r: Reply(404, json={"error": {
        "code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}}))
    provider_config("gchat", "chat", "google_chat_webhook")
    url = f"{server.url}/v1/spaces/AAAA/messages?key=k&token=t"
    message = queue_message("chat", {"text": "hi"}, recipient=chat_recipient(url))
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED and "NOT_FOUND" in message.error
    assert "webhook_url" not in ChannelData.objects.get(recipient=message.recipient,
                                                        channel="chat").data


def mattermost_check(request) -> list[str]:
    problems = [] if request.path == "/hooks/xxx-generatedkey-xxx" else [f"path {request.path}"]
    if request.headers.get("content-type") != "application/json":
        problems.append("content-type")
    if not request.json().get("text"):
        problems.append("text")
    return problems


def test_mattermost_gets_text_and_attachments(allow_loopback, provider_server, provider_config,
                                              queue_message):
    server = provider_server(mattermost_check, lambda r: Reply(200, body=b"ok"))
    provider_config("mm", "chat", "mattermost_webhook")
    attachments = '[{"fallback": "x", "color": "#FF8000", "text": "{{ recipient.id }}"}]'
    message = queue_message("chat", {"text": "Deploy", "blocks": attachments},
                            recipient=chat_recipient(f"{server.url}/hooks/xxx-generatedkey-xxx"))
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json() == {"text": "Deploy", "attachments": [
        {"fallback": "x", "color": "#FF8000", "text": "team-1"}]}
    message.refresh_from_db()
    assert message.status == Message.Status.SENT


@pytest.mark.parametrize("kind", ["discord_webhook", "google_chat_webhook",
                                  "mattermost_webhook"])
def test_a_webhook_url_naming_a_private_address_is_refused_before_any_request(
        provider_server, provider_config, queue_message, kind):
    server = provider_server()
    provider_config("chat", "chat", kind)
    message = queue_message("chat", {"text": "hi"},
                            recipient=chat_recipient(f"{server.url}/hooks/abc"))
    deliver(str(message.id))
    assert server.requests == []
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert "private" in message.error.lower() or "not public" in message.error.lower() \
        or "127.0.0.1" in message.error
