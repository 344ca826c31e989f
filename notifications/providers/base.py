"""The provider contract, in django-anymail's shape.

A *kind* (``twilio``, ``slack_webhook``, ``fcm``…) is one small subclass of `Provider` for its
channel. It maps an `OutboundMessage` to that provider's documented request and the answer back to
a `SendResult`, or raises `TransientError` (retry later, with backoff) or `PermanentError` (never
retry this request with this provider: fail over to the next one). Everything else — choosing the
provider, the circuit breaker, retries, failover, the DeliveryAttempt ledger, deactivating dead
tokens — is the orchestrator's job (notifications/delivery/), not the kind's.

HTTP kinds subclass `HTTPProvider` and write only `build_request` and `parse_response` (and, when
the provider says more than its status code, `raise_for_error`). The base sends the request with
httpx (sync or async, same mapping), classifies timeouts, connection errors, 429 and 5xx as
transient (honouring ``Retry-After``) and other 4xx as permanent, and records a redacted copy of
the request and an excerpt of the answer for the ledger.

See CONTRACT.md beside this file for how to add a kind.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import httpx

from . import ssrf

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
BODY_EXCERPT_CHARS = 2000
# Headers whose value is a secret whatever the provider (Basic/Bearer auth, API key headers).
SECRET_HEADERS = frozenset({
    "authorization", "x-postmark-server-token", "api-key", "x-api-key", "apns-topic-token",
})


# --- Errors -------------------------------------------------------------------------------------

class ProviderError(Exception):
    """A provider refused or could not take a message.

    `retry_after` (seconds) is the provider's own wish (a ``Retry-After`` header); `status_code`
    and `exchange` tell the ledger what happened; `dead_addresses` lists the recipient's addresses
    (push tokens, Web Push subscriptions, chat webhook URLs) that the provider says will never work
    again: the orchestrator deactivates them in the recipient's ChannelData.
    """

    transient: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: float | None = None,
                 status_code: int | None = None, dead_addresses: Iterable[Any] = (),
                 exchange: Exchange | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status_code = status_code
        self.dead_addresses = list(dead_addresses)
        self.exchange = exchange


class TransientError(ProviderError):
    """The provider may accept the same request later (timeout, connection error, 429, 5xx)."""

    transient = True


class PermanentError(ProviderError):
    """The provider will never accept this request (4xx, invalid number, bad credentials)."""


class ConfigurationError(ValueError):
    """Credentials or options that a kind cannot work with; `fields` maps a field to problems."""

    def __init__(self, fields: Mapping[str, list[str]]):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in fields.items()))
        self.fields = dict(fields)


# --- What goes in and what comes out -------------------------------------------------------------

@dataclass(frozen=True)
class OutboundMessage:
    """One message as a provider sees it: no ORM objects, so it can cross threads and tasks.

    `id` is the Message id: kinds that support an idempotency key send it as that key.
    `to` is the address the engine resolved (email, E.164 phone, webhook URL, chat channel);
    `channel_data` is the recipient's ChannelData for this channel and kind (push tokens, Web Push
    subscriptions, chat webhook URL…), read when the message is sent, so dead tokens removed since
    the message was queued are not used.
    """

    id: str
    channel: str
    to: str
    content: Mapping[str, Any]
    tenant_key: str = ""
    sender_name: str = ""
    sender_email: str = ""
    workflow_key: str = ""
    recipient_id: str = ""
    recipient_name: str = ""  # the To display name of an email
    step_config: Mapping[str, Any] = field(default_factory=dict)
    channel_data: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # extra email headers

    @property
    def idempotency_key(self) -> str:
        return self.id


@dataclass
class Exchange:
    """What the ledger keeps of one provider call: the request with secrets redacted, and the
    answer's status and the start of its body."""

    request: dict = field(default_factory=dict)
    status_code: int | None = None
    response: dict = field(default_factory=dict)


@dataclass
class SendResult:
    """The provider accepted the message. `provider_message_id` is its id for the message (what
    status callbacks refer to; one over PROVIDER_MESSAGE_ID_MAX_LENGTH characters is replaced by
    "", see `kept_provider_message_id`); `dead_addresses` as in ProviderError (a push to three
    devices can succeed on two and find the third unregistered)."""

    provider_message_id: str
    exchange: Exchange = field(default_factory=Exchange)
    dead_addresses: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.provider_message_id = kept_provider_message_id(self.provider_message_id)


# Message.provider_message_id's max_length (the models are not imported by the provider kinds).
PROVIDER_MESSAGE_ID_MAX_LENGTH = 255


def kept_provider_message_id(value: str | None) -> str:
    """`value`, a provider's id for a message (from its answer or a status callback), as it is
    stored and compared: "" for None or for an id over PROVIDER_MESSAGE_ID_MAX_LENGTH
    characters. Such an id cannot be stored whole, and cut short it would match nothing (or,
    worse, another id with the same start), so neither a message nor a status event keeps it:
    a callback then finds its message by Clarion's own id, if the provider echoes it, and a
    killed worker's send is not taken as proved by it. SMS and email ids are short (Twilio's SID
    34 characters, FCM's message name ~100); a web push service's id is the `Location` URL it
    answers, which can be longer. The full answer stays in the attempt's ledger."""
    if not value:
        return ""
    if len(value) > PROVIDER_MESSAGE_ID_MAX_LENGTH:
        logger.info("A provider id of %d characters (over %d) is not kept as the message's "
                    "provider id", len(value), PROVIDER_MESSAGE_ID_MAX_LENGTH)
        return ""
    return value


# --- Redaction ----------------------------------------------------------------------------------

def redact(value: Any, secrets: Iterable[str]) -> Any:
    """`value` (nested dicts/lists/strings) with every occurrence of every secret replaced."""
    secrets = sorted({s for s in secrets if isinstance(s, str) and len(s) >= 4}, key=len,
                     reverse=True)
    if not secrets:
        return value

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for secret in secrets:
                if secret in item:
                    item = item.replace(secret, REDACTED)
            return item
        if isinstance(item, Mapping):
            return {walk(k): walk(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v) for v in item]
        return item

    return walk(value)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: REDACTED if name.lower() in SECRET_HEADERS else value
            for name, value in headers.items()}


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def transient_status(status: int) -> bool:
    """408, 429 and 5xx: the provider may accept the same request later."""
    return status in (408, 429) or status >= 500


def error_for_status(text: str, response) -> ProviderError:
    """The error an unsuccessful HTTP answer (httpx or requests) means: transient for
    `transient_status` codes, honouring Retry-After, permanent for the rest."""
    status = response.status_code
    if transient_status(status):
        return TransientError(text, status_code=status,
                              retry_after=parse_retry_after(response.headers.get("Retry-After")))
    return PermanentError(text, status_code=status)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - (now or datetime.now(UTC))).total_seconds(), 0.0)


# --- Providers ----------------------------------------------------------------------------------

def channel_data_row(kind: str, rows: Iterable[Any]) -> Any | None:
    """Of a recipient's ChannelData rows for one channel, the one providers of `kind` use: the
    row for that kind (`provider_kind`), else the generic one (blank `provider_kind`), else None."""
    rows = list(rows)
    for row in rows:
        if row.provider_kind == kind:
            return row
    return next((row for row in rows if not row.provider_kind), None)


class Provider:
    """One configured provider of one kind (a ProviderConfig, or a built-in default).

    Subclasses set `kind`, `channel`, `label`, `credential_fields` (required),
    `optional_credential_fields`, `option_fields`, and implement `send` (and `asend` if they can
    do better than running `send` in a thread). `public_credential_fields` are shown unmasked
    (a sender number is not a secret); every other credential value is redacted from the ledger.
    `supports_idempotency` is True only where the provider de-duplicates on the message's
    idempotency key: only then may a message whose worker died mid-call be sent again.
    `commits_late` is True where `send` takes `before_commit`, a callable it calls once with
    `hand_over` just before the step that hands the message over (SMTP: the end of the
    message's data, "<CRLF>.<CRLF>", once the rest of it is sent), `hand_over()` taking that
    step: everything before it may be redone, so delivery writes the call's attempt only then,
    and calls `hand_over()` itself, in the thread that wrote it (delivery/calls.py).
    `can_find_accepted` is True where the kind implements `find_accepted`: a lookup in the
    provider's own records of whether a message whose worker died mid-call was accepted.
    """

    kind: ClassVar[str] = ""
    channel: ClassVar[str] = ""
    label: ClassVar[str] = ""
    credential_fields: ClassVar[tuple[str, ...]] = ()
    optional_credential_fields: ClassVar[tuple[str, ...]] = ()
    public_credential_fields: ClassVar[frozenset[str]] = frozenset({"from", "sender", "from_email"})
    option_fields: ClassVar[tuple[str, ...]] = ()
    supports_idempotency: ClassVar[bool] = False
    commits_late: ClassVar[bool] = False
    can_find_accepted: ClassVar[bool] = False

    def __init__(self, *, key: str, credentials: Mapping[str, Any] | None = None,
                 options: Mapping[str, Any] | None = None):
        self.key = key
        self.credentials = dict(credentials or {})
        self.options = dict(options or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.key}>"

    @classmethod
    def validate_config(cls, credentials: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        """Raise ConfigurationError naming each missing or unknown field. Kinds may add checks."""
        problems: dict[str, list[str]] = {}
        for name in cls.credential_fields:
            if not credentials.get(name):
                problems.setdefault(f"credentials.{name}", []).append("This field is required.")
        known = set(cls.credential_fields) | set(cls.optional_credential_fields)
        for name in credentials:
            if name not in known:
                problems.setdefault(f"credentials.{name}", []).append(
                    f"Unknown field; {cls.kind} takes: {', '.join(sorted(known)) or 'none'}.")
        from .cost import COST_OPTIONS, cost_option_problems

        problems.update(cost_option_problems(options))
        for name in options:
            if name not in cls.option_fields and name not in COST_OPTIONS:
                problems.setdefault(f"options.{name}", []).append(
                    f"Unknown option; {cls.kind} takes: "
                    f"{', '.join((*cls.option_fields, *COST_OPTIONS))}.")
        if problems:
            raise ConfigurationError(problems)

    @property
    def secrets(self) -> list[str]:
        """Credential values that must never reach the ledger."""
        return [str(v) for k, v in self.credentials.items()
                if k not in self.public_credential_fields and v]

    def estimate_cost(self, message: OutboundMessage):
        """(Decimal cost, ISO 4217 currency) of `message` from this provider's cost options
        (cost.py: per message, per SMS segment, per country); None without a price."""
        from .cost import estimate_cost

        return estimate_cost(self.channel, self.options, to=message.to,
                             content=message.content)

    def channel_data_for(self, rows: Iterable[Any]) -> Any | None:
        """The recipient's ChannelData row this kind uses: its own kind's, else a generic one."""
        return channel_data_row(self.kind, rows)

    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def find_accepted(self, message: OutboundMessage, *, since: datetime,
                      exclude: Iterable[str] = ()) -> str | None:
        """Whether the provider holds `message` (the same recipient, sender and content),
        created at or after `since` (aware) less a few minutes of clock skew: the provider's id
        for it, or None when its records prove it never arrived. `exclude`: provider ids that
        belong to other messages. Only kinds with `can_find_accepted` implement it; raises
        TransientError when the provider cannot be asked."""
        raise NotImplementedError

    async def asend(self, message: OutboundMessage, **kwargs: Any) -> SendResult:
        """Send from an event loop; the default runs `send` in a thread (with `kwargs`:
        `before_commit` for kinds with `commits_late`)."""
        return await asyncio.to_thread(self.send, message, **kwargs)

    def close(self) -> None:
        """Release connections. The orchestrator calls it when a batch is done."""

    async def aclose(self) -> None:
        self.close()


@dataclass
class HTTPRequest:
    """A provider request as data: the base sends it (sync or async) and redacts it for the
    ledger. Exactly one of json/data/content, or none."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    data: Mapping[str, Any] | None = None
    content: bytes | None = None
    auth: tuple[str, str] | None = None

    def as_kwargs(self) -> dict:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if self.json is not None:
            kwargs["json"] = self.json
        if self.data is not None:
            kwargs["data"] = dict(self.data)
        if self.content is not None:
            kwargs["content"] = self.content
        if self.auth is not None:
            kwargs["auth"] = self.auth
        return kwargs


class HTTPProvider(Provider):
    """A provider reached over HTTP. Subclasses set `default_base_url` and write
    `build_request` and `parse_response`; the base URL comes from options["base_url"] so tests
    (and regional endpoints) can point a kind elsewhere."""

    default_base_url: ClassVar[str] = ""
    option_fields: ClassVar[tuple[str, ...]] = ("base_url", "timeout")
    default_timeout: ClassVar[float] = 10.0
    # The URL comes from data (a step, a recipient's channel data): connect only to public
    # addresses, the ones that were checked when the name was resolved (see ssrf.py).
    public_urls_only: ClassVar[bool] = False

    _client: httpx.Client | None = None
    _async_clients: list[httpx.AsyncClient] | None = None
    _next_async = 0

    @property
    def base_url(self) -> str:
        return str(self.options.get("base_url") or self.default_base_url).rstrip("/")

    @property
    def timeout(self) -> float:
        return float(self.options.get("timeout") or self.default_timeout)

    # What a kind writes ------------------------------------------------------------------------

    def build_request(self, message: OutboundMessage) -> HTTPRequest:
        raise NotImplementedError

    def parse_response(self, message: OutboundMessage, response: httpx.Response) -> SendResult:
        """Map a 2xx answer to a SendResult (at least the provider's message id)."""
        raise NotImplementedError

    def raise_for_error(self, message: OutboundMessage, response: httpx.Response) -> None:
        """Raise for an answer that is not a success. The default: 429/5xx (and 408) transient
        honouring Retry-After, other 4xx permanent. Kinds override it to read error codes (a
        dead device token, an invalid number) and call super() for the rest."""
        if response.is_success:
            return
        raise error_for_status(f"HTTP {response.status_code}: {excerpt(response.text, 300)}",
                               response)

    def before_send(self, request: HTTPRequest) -> None:
        """A last check on the request before it leaves (the webhook kind checks for SSRF)."""

    # What the base does ------------------------------------------------------------------------

    def describe(self, request: HTTPRequest) -> dict:
        """The request as the ledger keeps it: secrets redacted."""
        described: dict[str, Any] = {"method": request.method, "url": request.url,
                                     "headers": redact_headers(request.headers)}
        if request.json is not None:
            described["json"] = request.json
        if request.data is not None:
            described["data"] = dict(request.data)
        if request.content is not None:
            described["content"] = excerpt(request.content.decode("utf-8", "replace"))
        if request.auth is not None:
            described["auth"] = [request.auth[0], REDACTED]
        return redact(described, self.secrets)

    def _result_of(self, message: OutboundMessage, request: HTTPRequest,
                   response: httpx.Response) -> SendResult:
        """The SendResult of the provider's answer, with the exchange; raises its typed error."""
        exchange = Exchange(request=self.describe(request), status_code=response.status_code,
                            response={"body": redact(excerpt(response.text), self.secrets)})
        try:
            self.raise_for_error(message, response)
            result = self.parse_response(message, response)
        except ProviderError as exc:
            exc.exchange = exc.exchange or exchange
            exc.status_code = exc.status_code or response.status_code
            raise
        except (ValueError, KeyError, TypeError) as exc:  # an answer we cannot read
            raise PermanentError(f"Unreadable answer: {type(exc).__name__}: {exc}",
                                 status_code=response.status_code, exchange=exchange) from exc
        result.exchange = exchange
        return result

    def _transport_error(self, request: HTTPRequest, exc: Exception) -> TransientError:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
        return TransientError(f"{kind}: {type(exc).__name__}: {exc}",
                              exchange=Exchange(request=self.describe(request)))

    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = (ssrf.public_client(timeout=self.timeout, verify=ssl_context())
                            if self.public_urls_only else
                            httpx.Client(timeout=self.timeout, verify=ssl_context()))
        return self._client

    def async_client(self) -> httpx.AsyncClient:
        """One of a few small clients, in turn (see `async_clients`)."""
        if self._async_clients is None:
            self._async_clients = async_clients(timeout=self.timeout,
                                                public_only=self.public_urls_only)
        self._next_async = (self._next_async + 1) % len(self._async_clients)
        return self._async_clients[self._next_async]

    def send(self, message: OutboundMessage) -> SendResult:
        request = self.build_request(message)
        self.before_send(request)
        try:
            response = self.client().request(request.method, request.url, **request.as_kwargs())
        except httpx.TransportError as exc:
            raise self._transport_error(request, exc) from exc
        except ssrf.UnsafeURL as exc:
            raise PermanentError(str(exc), exchange=Exchange(request=self.describe(request))) \
                from exc
        return self._result_of(message, request, response)

    async def asend(self, message: OutboundMessage) -> SendResult:
        request = self.build_request(message)
        if type(self).before_send is not HTTPProvider.before_send:
            # It may resolve names (the SSRF check): never block the batch's event loop.
            await asyncio.to_thread(self.before_send, request)
        try:
            response = await self.async_client().request(request.method, request.url,
                                                         **request.as_kwargs())
        except httpx.TransportError as exc:
            raise self._transport_error(request, exc) from exc
        except ssrf.UnsafeURL as exc:
            raise PermanentError(str(exc), exchange=Exchange(request=self.describe(request))) \
                from exc
        return self._result_of(message, request, response)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        self.close()
        for client in self._async_clients or ():
            await client.aclose()
        self._async_clients = None


ASYNC_CLIENTS, CONNECTIONS_PER_ASYNC_CLIENT = 16, 4


def async_clients(*, timeout: float, public_only: bool = False) -> list[httpx.AsyncClient]:
    """Concurrent calls spread over several small httpx clients: httpcore's pool does work
    proportional to (waiting requests × connections) whenever a request starts or ends, so one
    client with 50 calls in flight spends more CPU in its pool than on the calls (measured by
    bench/delivery.py: 16 clients of 4 connections send several times more per second)."""
    per = CONNECTIONS_PER_ASYNC_CLIENT
    limits = httpx.Limits(max_connections=per, max_keepalive_connections=per)
    if public_only:
        return [ssrf.public_async_client(timeout=timeout, verify=ssl_context(), limits=limits)
                for _ in range(ASYNC_CLIENTS)]
    return [httpx.AsyncClient(timeout=timeout, limits=limits, verify=ssl_context())
            for _ in range(ASYNC_CLIENTS)]


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One TLS context (certifi's CAs) for every client: loading the CAs takes ~30 ms."""
    return httpx.create_ssl_context()


def json_or_empty(response: httpx.Response) -> dict:
    """The answer's JSON object, or {} when it has none."""
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def monotonic_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
