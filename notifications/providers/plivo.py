"""Plivo SMS: sending through the Message API."""

import httpx

from .base import HTTPRequest, OutboundMessage, SendResult
from .registry import register
from .sms import SMSProvider


@register
class Plivo(SMSProvider):
    """POST /v1/Account/{auth_id}/Message/, HTTP Basic (auth_id, auth_token), JSON src, dst,
    text (and url for status callbacks, naming the message: see `status_callback_url_for`).
    Answers 202 with `message_uuid: [...]`."""

    kind, label = "plivo", "Plivo"
    credential_fields = ("auth_id", "auth_token", "from")
    default_base_url = "https://api.plivo.com"

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        text = self.text_of(message)
        auth_id = self.credentials["auth_id"]
        body = {"src": self.sender, "dst": message.to, "text": text}
        callback = self.status_callback_url_for(message)
        if callback:
            body["url"] = callback
        return HTTPRequest("POST", f"{self.base_url}/v1/Account/{auth_id}/Message/", json=body,
                           auth=(auth_id, self.credentials["auth_token"]))

    def parse_response(self, message, response: httpx.Response) -> SendResult:
        return SendResult(provider_message_id=str(response.json()["message_uuid"][0]))
