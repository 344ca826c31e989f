"""Push through the Apple Push Notification service: token auth (ES256 JWT), HTTP/2 through
aioapns."""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
import uuid
from functools import partial
from typing import ClassVar
from urllib.parse import urlsplit

import jwt

from .base import ConfigurationError, OutboundMessage, PermanentError, SendResult, TransientError
from .push import DeviceOutcome, PushContent, PushProvider
from .registry import register

APNS_DEAD_REASONS = frozenset({"BadDeviceToken", "Unregistered", "ExpiredToken"})
APNS_TRANSIENT_STATUSES = frozenset({"429", "500", "503"})
# Apple refuses provider tokens renewed more often than every 20 minutes and expires them after
# 60: one token per (team, key) per process, renewed after 50 minutes.
APNS_TOKEN_SECONDS = 50 * 60

_apns_tokens: dict[tuple[str, str], tuple[float, str]] = {}
_apns_lock = threading.Lock()


def _apns_authorization(*, team_id: str, key_id: str, private_key: str,
                        renew: bool = False) -> str:
    with _apns_lock:
        cached = _apns_tokens.get((team_id, key_id))
        if renew or cached is None or time.time() - cached[0] > APNS_TOKEN_SECONDS:
            issued = int(time.time())
            token = jwt.encode({"iss": team_id, "iat": issued}, private_key, algorithm="ES256",
                               headers={"kid": key_id})
            cached = (issued, f"bearer {token}")
            _apns_tokens[(team_id, key_id)] = cached
        return cached[1]


def _apns_pool(*, host: str, port: int, topic: str, ssl_context: ssl.SSLContext,
               authorization):
    """An aioapns connection pool to `host:port` (Apple's, or a test server) that sends Clarion's
    shared provider token. aioapns reads the host from its protocol class (APNS_SERVER,
    APNS_PORT), so the pool gets a protocol subclass naming ours: nothing in aioapns is patched.
    """
    from aioapns.connection import (
        APNsBaseConnectionPool,
        APNsTLSClientProtocol,
        AuthorizationHeaderProvider,
    )

    class SharedToken(AuthorizationHeaderProvider):
        def get_header(self) -> str:
            return authorization()

    class Pool(APNsBaseConnectionPool):
        def __init__(self):
            super().__init__(topic=topic, max_connections=4, max_connection_attempts=1)
            self.protocol_class = type("ClarionAPNsProtocol", (APNsTLSClientProtocol,),
                                       {"APNS_SERVER": host, "APNS_PORT": port})
            self.ssl_context = ssl_context

        async def create_connection(self):
            factory = partial(self.protocol_class, self.apns_topic, self.loop,
                              self.discard_connection, SharedToken())
            _, protocol = await self.loop.create_connection(factory, host=host, port=port,
                                                            ssl=ssl_context)
            return protocol

    return Pool()


def apns_id(message_id: str, token: str) -> str:
    """The apns-id of one message to one device: the same on every retry."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"clarion:{message_id}:{token}"))


# The step's priority (Web Push's urgency words) as ``apns-priority``: 10 sends at once, 5 as
# the device's power allows, 1 only when the device is awake anyway ("Sending notification
# requests to APNs", developer.apple.com). No priority: 10, Apple's default.
APNS_PRIORITY = {"high": 10, "normal": 5, "low": 5, "very-low": 1}


@register
class APNs(PushProvider):
    """POST /3/device/<token> over HTTP/2 + TLS with ``authorization: bearer <ES256 JWT>`` (kid:
    the key id, iss: the team id), ``apns-topic`` (the app's bundle id), ``apns-push-type:
    alert``, ``apns-priority``, ``apns-id`` (derived from the message and token, so a retry
    carries the same id), and ``apns-expiration``/``apns-collapse-id`` from the step's
    ttl/collapse_key. The payload is ``{"aps": {"alert": {"title", "body"}}, …data}``."""

    kind, label = "apns", "Apple Push Notification service (token auth)"
    credential_fields = ("team_id", "key_id", "private_key", "topic")
    public_credential_fields = frozenset({"team_id", "key_id", "topic"})
    option_fields: ClassVar[tuple[str, ...]] = ("base_url", "timeout", "sandbox", "ca_file")
    production_url = "https://api.push.apple.com"
    sandbox_url = "https://api.sandbox.push.apple.com"
    default_timeout = 10.0

    _pool = None
    _pool_loop = None

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        super().validate_config(credentials, options)
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        problems: dict[str, list[str]] = {}
        for name in ("team_id", "key_id"):
            value = str(credentials.get(name) or "")
            if not (len(value) == 10 and value.isalnum()):
                problems[f"credentials.{name}"] = ["Expected Apple's 10-character id."]
        try:
            key = load_pem_private_key(str(credentials["private_key"]).encode(), password=None)
            if not (isinstance(key, ec.EllipticCurvePrivateKey)
                    and key.curve.name == "secp256r1"):
                raise ValueError("not a P-256 key")
        except (ValueError, TypeError) as exc:
            problems["credentials.private_key"] = [
                f"Expected the .p8 key's PEM text (an ES256 key): {exc}"]
        if problems:
            raise ConfigurationError(problems)

    @property
    def base_url(self) -> str:
        default = self.sandbox_url if self.options.get("sandbox") else self.production_url
        return str(self.options.get("base_url") or default).rstrip("/")

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout") or self.default_timeout)

    def authorization(self, *, renew: bool = False) -> str:
        return _apns_authorization(team_id=str(self.credentials["team_id"]),
                                   key_id=str(self.credentials["key_id"]),
                                   private_key=str(self.credentials["private_key"]), renew=renew)

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.options.get("ca_file") or None)
        context.set_alpn_protocols(["h2"])
        return context

    def pool(self):
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool_loop is not loop:
            parts = urlsplit(self.base_url)
            self._pool = _apns_pool(host=parts.hostname or "", port=parts.port or 443,
                                    topic=str(self.credentials["topic"]),
                                    ssl_context=self._ssl_context(),
                                    authorization=self.authorization)
            self._pool_loop = loop
        return self._pool

    def notification(self, message: OutboundMessage, content: PushContent, token: str):
        from aioapns import NotificationRequest, PushType

        alert = {k: v for k, v in (("title", content.title), ("body", content.body)) if v}
        payload = {k: v for k, v in content.data.items() if k != "aps"}
        payload["aps"] = {"alert": alert}
        config = message.step_config or {}
        return NotificationRequest(
            device_token=token, message=payload,
            notification_id=apns_id(message.id, token),
            time_to_live=int(config["ttl"]) if config.get("ttl") is not None else None,
            priority=APNS_PRIORITY.get(config.get("priority"), 10),
            collapse_key=str(config["collapse_key"]) if config.get("collapse_key") else None,
            push_type=PushType.ALERT,
        )

    async def asend_to(self, message, content, token) -> DeviceOutcome:
        from aioapns.exceptions import ConnectionClosed, MaxAttemptsExceeded

        request = self.notification(message, content, token)
        outcome = DeviceOutcome(address=token, request={
            "url": f"{self.base_url}/3/device/{token}", "apns-id": request.notification_id,
            "apns-topic": str(self.credentials["topic"]), "payload": request.message})
        try:
            result = await asyncio.wait_for(self.pool().send_notification(request),
                                            timeout=self.timeout)
        except (TimeoutError, MaxAttemptsExceeded, ConnectionClosed, ConnectionError,
                OSError) as exc:
            outcome.error = TransientError(f"APNs unreachable: {type(exc).__name__}: {exc}")
            return outcome
        outcome.status_code = int(result.status) if str(result.status).isdigit() else None
        outcome.response = {"reason": result.description or ""}
        if result.is_successful:
            outcome.provider_message_id = result.notification_id
            return outcome
        reason = result.description or ""
        text = f"APNs {result.status} {reason}".strip()
        if reason in APNS_DEAD_REASONS:
            outcome.dead = True
            outcome.error = PermanentError(text, status_code=outcome.status_code)
        elif reason == "ExpiredProviderToken":
            self.authorization(renew=True)
            outcome.error = TransientError(text, status_code=outcome.status_code)
        elif str(result.status) in APNS_TRANSIENT_STATUSES:
            outcome.error = TransientError(text, status_code=outcome.status_code)
        else:
            outcome.error = PermanentError(text, status_code=outcome.status_code)
        return outcome

    def send(self, message: OutboundMessage) -> SendResult:
        async def run() -> SendResult:
            try:
                return await self.asend(message)
            finally:
                await self.aclose()

        return asyncio.run(run())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = self._pool_loop = None

    async def aclose(self) -> None:
        self.close()
        await asyncio.sleep(0)  # let the transports close before the loop may end
