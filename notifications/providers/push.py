"""Push: FCM HTTP v1, APNs (token auth, through aioapns) and Web Push (VAPID, through pywebpush).

A push Message goes to every device the recipient registered for the kind, read from ChannelData
(channel "push", provider = the kind): ``{"tokens": ["…"]}`` for fcm and apns,
``{"subscriptions": [{"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}}]}`` for
webpush. `PushProvider` owns that fan-out; each kind only maps one device's request and answer.

The message is sent when at least one device took it (a retry would repeat it on those): devices
the provider calls dead (FCM UNREGISTERED, APNs BadDeviceToken/Unregistered, Web Push 404/410)
go back in `dead_addresses` for the orchestrator to deactivate, and the others' errors are in the
ledger. When no device took it, the error is transient if any device's was (retry), else
permanent (fail over to the next push provider).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
import jwt
import requests
from django.conf import settings

from .base import (
    ConfigurationError,
    Exchange,
    HTTPProvider,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
    error_for_status,
    excerpt,
    json_or_empty,
    parse_retry_after,
    redact_headers,
)
from .registry import register
from .ssrf import UnsafeURL, check_public_url

DEFAULT_TTL_SECONDS = 28 * 24 * 3600  # FCM's default; used for Web Push, which has none


# --- The channel's base -------------------------------------------------------------------------

@dataclass
class DeviceOutcome:
    """What became of one device's copy of a message."""

    address: Any
    provider_message_id: str = ""
    error: ProviderError | None = None
    dead: bool = False
    status_code: int | None = None
    request: dict = field(default_factory=dict)
    response: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PushContent:
    title: str
    body: str
    data: dict


class PushProvider(Provider):
    """The push channel's base: reads the devices and the rendered title/body/data, sends to each
    device (concurrently under `asend`) and combines the outcomes into one result."""

    channel = "push"
    address_key: ClassVar[str] = "tokens"

    @classmethod
    def test_channel_data(cls, to: str) -> dict:
        """The device data of an admin's "send test" to `to` (what the test form took)."""
        return {cls.address_key: [to.strip()]}

    def addresses(self, message: OutboundMessage) -> list:
        value = (message.channel_data or {}).get(self.address_key) or []
        if not isinstance(value, list):
            raise PermanentError(f"Channel data {self.address_key!r} must be a list.")
        unique, seen = [], set()
        for item in value:
            marker = json.dumps(item, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                unique.append(item)
        if not unique:
            raise PermanentError(f"The recipient has no {self.label} {self.address_key}.")
        return unique

    @staticmethod
    def content_of(message: OutboundMessage) -> PushContent:
        title = str(message.content.get("title") or "")
        body = str(message.content.get("body") or "")
        raw = message.content.get("data") or {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise PermanentError(f"The push data template did not render to JSON: {exc}") \
                    from exc
        if not isinstance(raw, dict):
            raise PermanentError("The push data template must render to a JSON object.")
        if not (title or body):
            raise PermanentError("The push notification has neither a title nor a body.")
        return PushContent(title=title, body=body, data=raw)

    def describe_address(self, address: Any) -> str:
        text = str(address)
        return text if len(text) <= 16 else f"{text[:12]}…{text[-4:]}"

    # What a kind writes ------------------------------------------------------------------------

    def send_to(self, message: OutboundMessage, content: PushContent,
                address: Any) -> DeviceOutcome:
        raise NotImplementedError

    async def asend_to(self, message: OutboundMessage, content: PushContent,
                       address: Any) -> DeviceOutcome:
        return await asyncio.to_thread(self.send_to, message, content, address)

    # What the base does ------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        content, addresses = self.content_of(message), self.addresses(message)
        return self.combine([self.send_to(message, content, a) for a in addresses])

    async def asend(self, message: OutboundMessage) -> SendResult:
        content, addresses = self.content_of(message), self.addresses(message)
        return self.combine(list(await asyncio.gather(
            *(self.asend_to(message, content, a) for a in addresses))))

    def combine(self, outcomes: list[DeviceOutcome]) -> SendResult:
        exchange = Exchange(
            request={"devices": len(outcomes), "first": outcomes[0].request},
            status_code=outcomes[0].status_code,
            response={"devices": [
                {"device": self.describe_address(o.address), "status": o.status_code,
                 "id": o.provider_message_id, "dead": o.dead,
                 "error": str(o.error) if o.error else "", **o.response}
                for o in outcomes]},
        )
        dead = [o.address for o in outcomes if o.dead]
        accepted = [o for o in outcomes if o.error is None]
        if accepted:
            return SendResult(provider_message_id=accepted[0].provider_message_id,
                              exchange=exchange, dead_addresses=dead)
        errors = [o.error for o in outcomes if o.error is not None]
        summary = "; ".join(f"{self.describe_address(o.address)}: {o.error}" for o in outcomes)
        transient = [e for e in errors if e.transient]
        if transient:
            waits = [e.retry_after for e in transient if e.retry_after is not None]
            raise TransientError(summary, retry_after=max(waits) if waits else None,
                                 status_code=transient[0].status_code, dead_addresses=dead,
                                 exchange=exchange)
        raise PermanentError(summary, status_code=errors[0].status_code, dead_addresses=dead,
                             exchange=exchange)


def _stringify(data: dict) -> dict[str, str]:
    """FCM data values must be strings: objects and numbers travel as JSON text."""
    return {str(k): v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
            for k, v in data.items()}


# --- FCM HTTP v1 ----------------------------------------------------------------------------------

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


# --- APNs (token auth, HTTP/2, through aioapns) -------------------------------------------------

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
            priority=5 if config.get("priority") == "normal" else 10,
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


# --- Web Push (VAPID, through pywebpush) --------------------------------------------------------

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
            self._session = requests.Session()
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
