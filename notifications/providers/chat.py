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
    optional_credential_fields = ("webhook_url",)
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
    optional_credential_fields = ("channel",)
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

