"""Push: the channel's base, shared by FCM (fcm.py), APNs (apns.py) and Web Push (webpush.py).

A recipient's push devices are ChannelData rows (channel "push"), one per kind
(provider = the kind): ``{"tokens": ["…"]}`` for fcm and apns,
``{"subscriptions": [{"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}}]}`` for
webpush, and maybe a generic row (blank provider) that any kind may use. Each row with devices
is a *device set* (`device_sets`): a push Message goes to every device set, each through the
providers that use its row, in order, failing over among those only (delivery/batch.py), so a
person with an iPhone and a browser gets it on both.

One provider call sends to every device of its set; `PushProvider` owns that fan-out and each
kind only maps one device's request and answer. The call succeeds when at least one device took
it (a retry would repeat it on those): devices the provider calls dead (FCM UNREGISTERED, APNs
BadDeviceToken/Unregistered/ExpiredToken, Web Push 404/410) go back in `dead_addresses` for
the orchestrator to deactivate, and every device's result is in the ledger (the attempt's
``response["devices"]``). When no device took it, the error is transient if any device's was
(retry), else permanent (fail over to the set's next provider). An oversize payload (413), a
rate limit (429) or a server error (5xx) is never a dead device.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .base import (
    Exchange,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
)

DEFAULT_TTL_SECONDS = 28 * 24 * 3600  # FCM's default; used for Web Push, which has none


def has_devices(data: dict | None) -> bool:
    """Whether a push ChannelData row's `data` still lists a device (a token or a subscription;
    the "inactive" list of deactivated ones does not count)."""
    return any(value for key, value in (data or {}).items() if key != "inactive")


def device_sets(providers: Iterable[Any], rows: Iterable[Any],
                row_of: Callable[[Any, list], Any | None]) -> list[tuple[Any, list]]:
    """Where one push goes: ``[(row, [provider, …]), …]``, one entry per ChannelData row of the
    recipient that still lists a device (`has_devices`), with the `providers` (in their order)
    for which `row_of(provider, rows)` picks that row (a kind's own row, else the generic one).
    A row no provider uses comes last, with an empty list. Ordered by each row's first provider.
    """
    live = [row for row in rows if has_devices(row.data)]
    sets: dict[Any, tuple[Any, list]] = {}
    for provider in providers:
        row = row_of(provider, live)
        if row is not None:
            sets.setdefault(row.pk, (row, []))[1].append(provider)
    for row in live:
        sets.setdefault(row.pk, (row, []))
    return list(sets.values())


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


def device_result(outcome: DeviceOutcome) -> str:
    """One device's result as the ledger and the timeline name it: "accepted", "deactivated"
    (the provider said the device is gone), "transient_error" or "permanent_error"."""
    if outcome.error is None:
        return "accepted"
    if outcome.dead:
        return "deactivated"
    return "transient_error" if outcome.error.transient else "permanent_error"


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
                {"device": self.describe_address(o.address), "result": device_result(o),
                 "status": o.status_code, "id": o.provider_message_id, "dead": o.dead,
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
