"""Push through Web Push: RFC 8291 encryption and RFC 8292 VAPID, through pywebpush."""

from __future__ import annotations

import json
from typing import Any, ClassVar

import requests
from django.conf import settings

from .base import (
    ConfigurationError,
    OutboundMessage,
    PermanentError,
    TransientError,
    error_for_status,
    excerpt,
)
from .push import DEFAULT_TTL_SECONDS, DeviceOutcome, PushProvider
from .registry import register
from .ssrf import UnsafeURL, check_public_url, public_session

WEBPUSH_DEAD_STATUSES = frozenset({404, 410})


@register
class WebPush(PushProvider):
    """POST the encrypted payload (RFC 8291, ``Content-Encoding: aes128gcm``) to each
    subscription's endpoint, with ``Authorization: vapid t=<ES256 JWT>, k=<public key>``
    (RFC 8292: aud the endpoint's origin, sub the `vapid_subject`), ``TTL`` and, from the step,
    ``Urgency`` and ``Topic``. The payload is the JSON ``{"title", "body", "data"}`` that the
    site's service worker shows. 201 is accepted; 404/410 mean the subscription is gone."""

    kind, label = "webpush", "Web Push (VAPID)"
    address_key = "subscriptions"
    credential_fields = ("vapid_private_key", "vapid_subject")
    public_credential_fields = frozenset({"vapid_subject"})
    option_fields: ClassVar[tuple[str, ...]] = ("timeout",)
    default_timeout = 10.0

    _session: requests.Session | None = None

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        super().validate_config(credentials, options)
        problems: dict[str, list[str]] = {}
        try:
            cls._vapid(str(credentials["vapid_private_key"]))
        except Exception as exc:  # py_vapid raises whatever the key parser raised
            problems["credentials.vapid_private_key"] = [
                f"Expected a P-256 private key (PEM, or base64url raw/DER): {exc}"]
        if not str(credentials.get("vapid_subject") or "").startswith(("mailto:", "https://")):
            problems["credentials.vapid_subject"] = ["Expected a mailto: or https: URL."]
        if problems:
            raise ConfigurationError(problems)

    @classmethod
    def test_channel_data(cls, to: str) -> dict:
        """A test goes to one subscription: the JSON of the browser's PushSubscription."""
        try:
            subscription = json.loads(to)
        except ValueError as exc:
            raise ValueError("Expected the subscription's JSON (PushSubscription.toJSON()): "
                             f"{exc}") from exc
        if not isinstance(subscription, dict):
            raise ValueError("Expected the subscription's JSON object, with endpoint and keys.")
        return {cls.address_key: [subscription]}

    @staticmethod
    def _vapid(key: str):
        from py_vapid import Vapid

        key = key.strip()
        return Vapid.from_pem(key.encode()) if key.startswith("-----BEGIN") \
            else Vapid.from_string(key)

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout") or self.default_timeout)

    def describe_address(self, address: Any) -> str:
        endpoint = str(address.get("endpoint", "")) if isinstance(address, dict) else ""
        return super().describe_address(endpoint) if len(endpoint) <= 60 else \
            f"{endpoint[:48]}…{endpoint[-8:]}"

    @staticmethod
    def _check_subscription(subscription: Any) -> str:
        """The subscription's endpoint; PermanentError for one that cannot be used."""
        if not isinstance(subscription, dict):
            raise PermanentError("A Web Push subscription must be an object.")
        keys = subscription.get("keys")
        endpoint = subscription.get("endpoint")
        if not (isinstance(endpoint, str) and isinstance(keys, dict)
                and keys.get("p256dh") and keys.get("auth")):
            raise PermanentError("A Web Push subscription needs endpoint and keys.p256dh/auth.")
        try:
            check_public_url(endpoint)
        except UnsafeURL as exc:
            raise PermanentError(f"Refused push endpoint: {exc}") from exc
        if not settings.CLARION.get("ALLOW_PRIVATE_URLS") and not endpoint.startswith("https:"):
            raise PermanentError("A Web Push endpoint must be an https URL.")
        return endpoint

    def headers_for(self, message: OutboundMessage) -> dict[str, str]:
        config, headers = message.step_config or {}, {}
        urgency = config.get("priority")
        if urgency in ("very-low", "low", "normal", "high"):
            headers["Urgency"] = urgency
        if config.get("collapse_key"):
            headers["Topic"] = str(config["collapse_key"])[:32]
        return headers

    def send_to(self, message, content, subscription) -> DeviceOutcome:
        from pywebpush import WebPushException, webpush

        outcome = DeviceOutcome(address=subscription)
        try:
            endpoint = self._check_subscription(subscription)
        except PermanentError as exc:
            outcome.error = exc
            return outcome
        config = message.step_config or {}
        ttl = int(config["ttl"]) if config.get("ttl") is not None else DEFAULT_TTL_SECONDS
        payload = {"title": content.title, "body": content.body, "data": content.data,
                   "id": message.id}
        outcome.request = {"method": "POST", "url": endpoint, "ttl": ttl, "json": payload,
                           "headers": self.headers_for(message)}
        if self._session is None:
            self._session = public_session()  # the endpoint comes from the subscription
        try:
            response = webpush(
                subscription_info=subscription, data=json.dumps(payload),
                vapid_private_key=self._vapid(str(self.credentials["vapid_private_key"])),
                vapid_claims={"sub": str(self.credentials["vapid_subject"])},
                content_encoding="aes128gcm", ttl=ttl, timeout=self.timeout,
                headers=self.headers_for(message), requests_session=self._session)
        except WebPushException as exc:
            response = exc.response
            if response is None:
                outcome.error = PermanentError(f"Web Push refused: {exc}")
                return outcome
        except requests.RequestException as exc:
            outcome.error = TransientError(f"connection error: {type(exc).__name__}: {exc}")
            return outcome
        except UnsafeURL as exc:  # the endpoint's name resolved to a private address
            outcome.error = PermanentError(f"Refused push endpoint: {exc}")
            return outcome
        except (ValueError, TypeError) as exc:  # keys that do not decode
            outcome.error = PermanentError(f"Unusable subscription keys: {exc}")
            return outcome
        status = response.status_code
        outcome.status_code = status
        outcome.response = {"body": excerpt(response.text or "", 300)}
        text = f"Web Push {status}: {excerpt(response.text or '', 200)}".strip()
        if status < 300:
            outcome.provider_message_id = response.headers.get("Location", "") or endpoint
        elif status in WEBPUSH_DEAD_STATUSES:
            outcome.dead = True
            outcome.error = PermanentError(text, status_code=status)
        else:
            outcome.error = error_for_status(text, response)
        return outcome

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
