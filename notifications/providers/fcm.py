"""Push through Firebase Cloud Messaging, HTTP v1 (an OAuth 2 token from a service account)."""

from __future__ import annotations

import asyncio
import json
import threading
from functools import partial
from typing import Any, ClassVar

import httpx

from .base import (
    ConfigurationError,
    HTTPProvider,
    OutboundMessage,
    PermanentError,
    SendResult,
    TransientError,
    error_for_status,
    excerpt,
    json_or_empty,
    parse_retry_after,
    redact_headers,
)
from .push import DeviceOutcome, PushContent, PushProvider
from .registry import register


def _stringify(data: dict) -> dict[str, str]:
    """FCM data values must be strings: objects and numbers travel as JSON text."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in data.items()}


FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_TRANSIENT_CODES = frozenset({"QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL"})

_google_credentials: dict[tuple, Any] = {}
_google_lock = threading.Lock()


class _TimedGoogleRequest:
    """google-auth's requests transport with our timeout (its default is 120 s)."""

    def __init__(self, timeout: float):
        from google.auth.transport.requests import Request

        self._request = Request()
        self._timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return self._request(url, method=method, body=body, headers=headers,
                             timeout=timeout or self._timeout, **kwargs)


@register
class FCM(PushProvider, HTTPProvider):
    """POST {base_url}/v1/projects/{project}/messages:send with ``Authorization: Bearer`` (an
    OAuth 2 access token from the service account: google-auth signs the JWT assertion with the
    account's private key and exchanges it at the account's `token_uri`) and
    ``{"message": {"token", "notification": {"title", "body"}, "data": {string: string}}}``.
    One request per device token; 200 answers ``{"name": "projects/…/messages/…"}``."""

    kind, label = "fcm", "Firebase Cloud Messaging (HTTP v1)"
    credential_fields = ("service_account",)
    optional_credential_fields = ("project_id",)
    option_fields: ClassVar[tuple[str, ...]] = ("base_url", "timeout", "token_uri")
    default_base_url = "https://fcm.googleapis.com"

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        super().validate_config(credentials, options)
        try:
            info = cls._account_info(credentials)
            from google.oauth2 import service_account

            service_account.Credentials.from_service_account_info(info)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError({"credentials.service_account": [
                f"Expected a Google service account JSON key: {exc}"]}) from exc
        if not (credentials.get("project_id") or info.get("project_id")):
            raise ConfigurationError({"credentials.project_id": [
                "The service account names no project; give project_id."]})

    @staticmethod
    def _account_info(credentials) -> dict:
        info = credentials.get("service_account") or {}
        if isinstance(info, str):
            info = json.loads(info)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        return info

    @property
    def project_id(self) -> str:
        return str(self.credentials.get("project_id")
                   or self._account_info(self.credentials).get("project_id") or "")

    @property
    def secrets(self) -> list[str]:
        try:
            info = self._account_info(self.credentials)
        except ValueError:
            return super().secrets
        return [str(info[k]) for k in ("private_key", "private_key_id") if info.get(k)]

    def _google_credentials(self):
        """The service account's credentials, shared by every provider object in the process so
        that the hour-long access token is fetched once, not per message."""
        from google.oauth2 import service_account

        info = dict(self._account_info(self.credentials))
        if self.options.get("token_uri"):
            info["token_uri"] = self.options["token_uri"]
        cache_key = (info.get("client_email"), info.get("private_key_id"), info.get("token_uri"),
                     info.get("private_key"))
        with _google_lock:
            credentials = _google_credentials.get(cache_key)
            if credentials is None:
                credentials = service_account.Credentials.from_service_account_info(
                    info, scopes=[FCM_SCOPE])
                _google_credentials[cache_key] = credentials
        return credentials

    def access_token(self, *, renew: bool = False) -> str:
        from google.auth import exceptions as google_errors

        credentials = self._google_credentials()
        with _google_lock:
            if renew or not credentials.valid:
                try:
                    credentials.refresh(_TimedGoogleRequest(self.timeout))
                except google_errors.TransportError as exc:
                    raise TransientError(f"OAuth token endpoint unreachable: {exc}") from exc
                except google_errors.RefreshError as exc:
                    error = TransientError if getattr(exc, "retryable", False) else PermanentError
                    raise error(f"OAuth token refused: {exc}") from exc
            return credentials.token

    def fcm_request(self, message: OutboundMessage, content: PushContent,
                    token: str) -> dict:
        body: dict[str, Any] = {"token": token}
        notification = {k: v for k, v in (("title", content.title), ("body", content.body)) if v}
        if notification:
            body["notification"] = notification
        if content.data:
            body["data"] = _stringify(content.data)
        config, android = message.step_config or {}, {}
        if config.get("ttl") is not None:
            android["ttl"] = f"{int(config['ttl'])}s"
        if config.get("priority"):
            android["priority"] = "HIGH" if config["priority"] == "high" else "NORMAL"
        if config.get("collapse_key"):
            android["collapse_key"] = str(config["collapse_key"])
        if android:
            body["android"] = android
        return {"message": body}

    @property
    def send_url(self) -> str:
        return f"{self.base_url}/v1/projects/{self.project_id}/messages:send"

    def _outcome(self, token: str, payload: dict, headers: dict,
                 response: httpx.Response) -> DeviceOutcome:
        outcome = DeviceOutcome(
            address=token, status_code=response.status_code,
            request={"method": "POST", "url": self.send_url,
                     "headers": redact_headers(headers), "json": payload},
            response={"body": excerpt(response.text, 500)})
        if response.is_success:
            outcome.provider_message_id = str(json_or_empty(response).get("name") or "")
            return outcome
        error = json_or_empty(response).get("error") or {}
        codes = {d.get("errorCode") for d in error.get("details") or [] if isinstance(d, dict)}
        text = (f"FCM {response.status_code} {error.get('status') or ''} "
                f"{'/'.join(sorted(c for c in codes if c))}: "
                f"{error.get('message') or excerpt(response.text, 200)}")
        text = " ".join(text.split())
        status = response.status_code
        if "UNREGISTERED" in codes:
            # Only this code: a 404 for a wrong project id must not wipe every token.
            outcome.dead = True
            outcome.error = PermanentError(text, status_code=status)
        elif codes & FCM_TRANSIENT_CODES:
            outcome.error = TransientError(
                text, status_code=status,
                retry_after=parse_retry_after(response.headers.get("Retry-After")))
        else:
            outcome.error = error_for_status(text, response)
        return outcome

    def _transport_failure(self, token: str, exc: Exception) -> DeviceOutcome:
        return DeviceOutcome(address=token, error=TransientError(
            f"connection error: {type(exc).__name__}: {exc}"))

    def send_to(self, message, content, token) -> DeviceOutcome:
        payload = self.fcm_request(message, content, token)
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self.access_token(renew=renew)}",
                       "Content-Type": "application/json"}
            try:
                response = self.client().post(self.send_url, json=payload, headers=headers)
            except httpx.TransportError as exc:
                return self._transport_failure(token, exc)
            if response.status_code != 401:  # 401: our access token expired early; renew once
                break
        return self._outcome(token, payload, headers, response)

    async def asend_to(self, message, content, token) -> DeviceOutcome:
        payload = self.fcm_request(message, content, token)
        for renew in (False, True):
            access_token = await asyncio.to_thread(partial(self.access_token, renew=renew))
            headers = {"Authorization": f"Bearer {access_token}",
                       "Content-Type": "application/json"}
            try:
                response = await self.async_client().post(self.send_url, json=payload,
                                                          headers=headers)
            except httpx.TransportError as exc:
                return self._transport_failure(token, exc)
            if response.status_code != 401:
                break
        return self._outcome(token, payload, headers, response)

    async def asend(self, message: OutboundMessage) -> SendResult:
        # Fetch the access token once before the devices' requests run side by side.
        await asyncio.to_thread(self.access_token)
        return await super().asend(message)
