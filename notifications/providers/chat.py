"""Chat: Slack (incoming webhook, or chat.postMessage with a bot token) and Microsoft Teams
(incoming webhook). The destination comes from the recipient's ChannelData (`webhook_url`, or
`channel` for the Slack bot), else from the provider's credentials, else from the step."""

import json
from typing import Any, ClassVar

import httpx

from .base import (
    HTTPProvider,
    HTTPRequest,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    json_or_empty,
)
from .registry import register
from .ssrf import UnsafeURL, check_public_url


class ChatProvider(HTTPProvider):
    """The chat channel's base: text and blocks from the template, the webhook URL checked
    against private addresses before the request leaves."""

    channel = "chat"
    public_urls_only = True  # the webhook URL comes from channel data

    def text_and_blocks(self, message: OutboundMessage) -> tuple[str, Any]:
        text = str(message.content.get("text") or "")
        blocks = message.content.get("blocks")
        if isinstance(blocks, str) and blocks.strip():
            try:
                blocks = json.loads(blocks)
            except ValueError as exc:
                raise PermanentError(f"The blocks template did not render to JSON: {exc}") from exc
        if not text and not blocks:
            raise PermanentError("The chat message has neither text nor blocks.")
        return text, blocks or None

    def webhook_url(self, message: OutboundMessage) -> str:
        url = (message.channel_data.get("webhook_url") or self.credentials.get("webhook_url")
               or (message.to if message.to.startswith(("http://", "https://")) else ""))
        if not url:
            raise PermanentError("No webhook URL: neither the recipient's channel data nor "
                                 "the provider's credentials have one.")
        return str(url)

    def before_send(self, request: HTTPRequest) -> None:
        try:
            check_public_url(request.url)
        except UnsafeURL as exc:
            raise PermanentError(str(exc)) from exc


# Slack webhook answers meaning the URL is gone for good: deactivate it in the ChannelData.
SLACK_DEAD_WEBHOOK = frozenset({"no_service", "channel_is_archived", "no_team", "team_disabled"})


@register
class SlackWebhook(ChatProvider):
    """Slack incoming webhook: POST {"text", "blocks"} to the hooks.slack.com URL; answers 200
    "ok", or an error word (invalid_payload 400, no_service 404, channel_is_archived 410…)."""

    kind, label = "slack_webhook", "Slack (incoming webhook)"
    # signing_secret: the Slack app's, to verify its interactivity requests (approval buttons).
    optional_credential_fields = ("webhook_url", "signing_secret")
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        body: dict[str, Any] = {"text": text}
        if blocks:
            body["blocks"] = blocks
        return HTTPRequest("POST", self.webhook_url(message), json=body)

    def raise_for_error(self, message, response: httpx.Response) -> None:
        word = response.text.strip()
        if not response.is_success and word in SLACK_DEAD_WEBHOOK:
            url = message.channel_data.get("webhook_url")
            raise PermanentError(f"Slack: {word}", dead_addresses=[url] if url else [])
        super().raise_for_error(message, response)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=message.id)


SLACK_TRANSIENT_ERRORS = frozenset({"ratelimited", "service_unavailable", "fatal_error",
                                    "internal_error", "request_timeout"})


@register
class SlackBot(ChatProvider):
    """Slack Web API chat.postMessage: POST /api/chat.postMessage with `Authorization: Bearer
    xoxb-…`, JSON {channel, text, blocks}. Answers 200 {"ok": true, "channel", "ts"} or
    {"ok": false, "error"}; 429 with Retry-After when rate limited."""

    kind, label = "slack", "Slack (bot token, chat.postMessage)"
    credential_fields = ("bot_token",)
    optional_credential_fields = ("channel", "signing_secret")
    default_base_url = "https://slack.com"

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        channel = (message.channel_data.get("channel") or message.step_config.get("channel")
                   or self.credentials.get("channel")
                   or (message.to if not message.to.startswith("http") else ""))
        if not channel:
            raise PermanentError("No Slack channel: set `channel` in the recipient's channel "
                                 "data, the step's config or the provider's credentials.")
        body: dict[str, Any] = {"channel": channel, "text": text}
        if blocks:
            body["blocks"] = blocks
        return HTTPRequest(
            "POST", f"{self.base_url}/api/chat.postMessage", json=body,
            headers={"Authorization": f"Bearer {self.credentials['bot_token']}",
                     "Content-Type": "application/json; charset=utf-8"})

    public_urls_only = False  # the API host is the provider's own, configured by an admin

    def before_send(self, request: HTTPRequest) -> None:
        """The API host is the provider's own, configured by an admin: no SSRF check."""

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        body = response.json()
        if not body.get("ok"):
            error = str(body.get("error") or "unknown error")
            if error in SLACK_TRANSIENT_ERRORS:
                raise TransientError(f"Slack: {error}")
            raise PermanentError(f"Slack: {error}")
        return SendResult(provider_message_id=f"{body.get('channel')}:{body.get('ts')}")


@register
class TeamsWebhook(ChatProvider):
    """Microsoft Teams incoming webhook (or a Workflows webhook): POST a message with one
    Adaptive Card attachment; answers 200 ("1") or 202."""

    kind, label = "teams_webhook", "Microsoft Teams (incoming webhook)"
    optional_credential_fields = ("webhook_url",)
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        body = blocks if isinstance(blocks, list) else [{"type": "TextBlock", "text": text,
                                                         "wrap": True}]
        card = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard", "version": "1.4", "body": body}
        payload = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
             "content": card}]}
        return HTTPRequest("POST", self.webhook_url(message), json=payload)

    def raise_for_error(self, message, response: httpx.Response) -> None:
        # Teams' legacy connectors answer 200 with an error text instead of "1".
        if response.status_code == 200 and "429" in response.text:
            raise TransientError(f"Teams: {response.text[:300]}")
        if response.status_code in (404, 410):
            url = message.channel_data.get("webhook_url")
            raise PermanentError(f"Teams: HTTP {response.status_code}",
                                 dead_addresses=[url] if url else [])
        super().raise_for_error(message, response)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=message.id)



def dead_url_error(message: OutboundMessage, text: str) -> PermanentError:
    """A PermanentError that retires the recipient's webhook URL (it will never work again)."""
    url = message.channel_data.get("webhook_url")
    return PermanentError(text, dead_addresses=[url] if url else [])


# Discord error codes meaning the webhook is gone for good: 10015 Unknown Webhook, 50027 Invalid
# Webhook Token (https://discord.com/developers/docs/topics/opcodes-and-status-codes#json).
DISCORD_DEAD_WEBHOOK = frozenset({10015, 50027})
DISCORD_MAX_CONTENT = 2000


@register
class DiscordWebhook(ChatProvider):
    """Discord's Execute Webhook (https://discord.com/developers/docs/resources/webhook#execute-
    webhook): POST <webhook URL>?wait=true, JSON {"content" (≤ 2000 characters), "embeds"
    (the template's blocks: a list of embed objects)}. With `wait` Discord answers 200 with the
    created message (its `id`); errors are {"code", "message"}; 429 carries `retry_after`."""

    kind, label = "discord_webhook", "Discord (webhook)"
    optional_credential_fields = ("webhook_url",)
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        if len(text) > DISCORD_MAX_CONTENT:
            raise PermanentError(f"Discord takes at most {DISCORD_MAX_CONTENT} characters of "
                                 f"content; the text has {len(text)}.")
        body: dict[str, Any] = {"content": text}
        if isinstance(blocks, list):
            body["embeds"] = blocks
        url = self.webhook_url(message)
        return HTTPRequest("POST", url + ("&" if "?" in url else "?") + "wait=true", json=body)

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if not response.is_success:
            body = json_or_empty(response)
            if body.get("code") in DISCORD_DEAD_WEBHOOK or response.status_code == 404:
                raise dead_url_error(message, f"Discord {body.get('code')}: "
                                              f"{body.get('message')}")
            if response.status_code == 429 and "Retry-After" not in response.headers:
                raise TransientError("Discord: rate limited",
                                     retry_after=float(body.get("retry_after") or 1),
                                     status_code=429)
        super().raise_for_error(message, response)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(json_or_empty(response).get("id")
                                                  or message.id))


@register
class GoogleChatWebhook(ChatProvider):
    """A Google Chat space's incoming webhook (https://developers.google.com/workspace/chat/
    quickstart/webhooks): POST https://chat.googleapis.com/v1/spaces/<space>/messages?key=…
    &token=…, JSON {"text", "cardsV2" (the template's blocks: a list of cards)}. Answers 200
    with the Message (`name`: spaces/…/messages/…); errors are Google's {"error": {"code",
    "status", "message"}}: 404 NOT_FOUND (the space or webhook is gone) retires the URL."""

    kind, label = "google_chat_webhook", "Google Chat (webhook)"
    optional_credential_fields = ("webhook_url",)
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        body: dict[str, Any] = {"text": text} if text else {}
        if isinstance(blocks, list):
            body["cardsV2"] = blocks
        return HTTPRequest("POST", self.webhook_url(message), json=body,
                           headers={"Content-Type": "application/json; charset=UTF-8"})

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if response.status_code == 404:
            error = json_or_empty(response).get("error") or {}
            raise dead_url_error(message, f"Google Chat: {error.get('status', 'NOT_FOUND')} "
                                          f"{error.get('message', '')}".strip())
        super().raise_for_error(message, response)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(json_or_empty(response).get("name")
                                                  or message.id))


@register
class MattermostWebhook(ChatProvider):
    """A Mattermost incoming webhook (https://developers.mattermost.com/integrate/webhooks/
    incoming/): POST https://<server>/hooks/<key>, JSON {"text", "attachments" (the template's
    blocks: Slack-style message attachments)}; answers 200 "ok". A 404 (the webhook was
    deleted) retires the URL."""

    kind, label = "mattermost_webhook", "Mattermost (incoming webhook)"
    optional_credential_fields = ("webhook_url",)
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text, blocks = self.text_and_blocks(message)
        body: dict[str, Any] = {"text": text}
        if isinstance(blocks, list):
            body["attachments"] = blocks
        return HTTPRequest("POST", self.webhook_url(message), json=body)

    def raise_for_error(self, message, response: httpx.Response) -> None:
        if response.status_code == 404:
            raise dead_url_error(message, f"Mattermost: HTTP 404 {response.text[:200]}")
        super().raise_for_error(message, response)

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=message.id)
