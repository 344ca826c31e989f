"""Writes the provider layer needs outside delivery itself."""

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..crypto import MASK, mask
from ..models import ChannelData, ProviderConfig, Tenant
from . import registry
from .base import ConfigurationError, OutboundMessage, SendResult


def channel_data_deactivate(*, channel_data_id: int, addresses: Iterable[Any], reason: str) -> int:
    """Take dead addresses (push tokens, Web Push subscriptions, webhook URLs) out of a
    recipient's ChannelData so no later message uses them; keep them under "inactive" with the
    reason and time, for support. An address is removed wherever it appears: as an item of any
    list in the data (``{"tokens": [...]}``, ``{"subscriptions": [...]}``) or as the value of a
    top-level key (``{"webhook_url": "..."}``). Returns how many were removed.
    """
    dead = [a for a in addresses]
    if not dead:
        return 0
    with transaction.atomic():
        row = ChannelData.objects.select_for_update().filter(pk=channel_data_id).first()
        if row is None:
            return 0
        data = dict(row.data or {})
        removed = []
        for name, value in list(data.items()):
            if name == "inactive":
                continue
            if isinstance(value, list):
                kept = [item for item in value if item not in dead]
                removed += [item for item in value if item in dead]
                data[name] = kept
            elif value in dead:
                removed.append(value)
                del data[name]
        if not removed:
            return 0
        now = timezone.now().isoformat()
        data["inactive"] = list(data.get("inactive") or []) + [
            {"address": item, "reason": reason[:300], "at": now} for item in removed]
        row.data = data
        row.save(update_fields=["data", "updated_at"])
        return len(removed)


# --- ProviderConfig ------------------------------------------------------------------------------

def _merged_credentials(config: ProviderConfig | None, kind: str,
                        credentials: Mapping[str, Any] | None) -> dict:
    """New credentials; a field left out, or given back masked as GET showed it, keeps its stored
    value (so a GET body can be PUT back without re-typing secrets) — unless the kind changed."""
    stored = config.credentials if config is not None and config.kind == kind else {}
    if credentials is None:
        return stored
    merged = {}
    for name, value in credentials.items():
        if isinstance(value, str) and value.startswith(MASK) and name in stored:
            merged[name] = stored[name]
        else:
            merged[name] = value
    for name, value in stored.items():
        merged.setdefault(name, value)
    return merged


def provider_config_check(*, config: ProviderConfig | None, channel: str, kind: str,
                          credentials: Mapping[str, Any] | None,
                          options: Mapping[str, Any] | None) -> dict:
    """Check a provider config as `provider_config_put` would store it over `config` (None for a
    new one), without saving. Returns the credentials it would store (masked values and left-out
    fields keep their stored values); raises ConfigurationError naming each bad field."""
    kinds = registry.kinds(channel)
    if kind not in kinds:
        raise ConfigurationError({"kind": [
            f"Unknown {channel} kind; expected one of: {', '.join(kinds) or 'none'}."]})
    merged = _merged_credentials(config, kind, credentials)
    kinds[kind].validate_config(merged, dict(options or {}))
    return merged


def provider_config_put(*, key: str, channel: str, kind: str, priority: int = 1,
                        active: bool = True, tenant: Tenant | None = None,
                        credentials: Mapping[str, Any] | None = None,
                        options: Mapping[str, Any] | None = None) -> tuple[ProviderConfig, bool]:
    """Create or replace the provider `key`. Raises ConfigurationError naming bad fields."""
    with transaction.atomic():
        config = ProviderConfig.objects.select_for_update().filter(key=key).first()
        options = dict(options or {})
        merged = provider_config_check(config=config, channel=channel, kind=kind,
                                       credentials=credentials, options=options)
        created = config is None
        if created:
            config = ProviderConfig(key=key)
        config.channel, config.kind, config.priority, config.active = channel, kind, priority, \
            active
        config.tenant, config.options = tenant, options
        config.credentials = merged
        config.save()
    return config, created


def provider_config_delete(*, config: ProviderConfig) -> None:
    config.delete()


def masked_credentials(config: ProviderConfig) -> dict[str, str]:
    """The credentials as the API and the admin show them: secrets masked, senders whole."""
    try:
        public = registry.get(config.kind).public_credential_fields
    except KeyError:
        public = frozenset()
    return {name: mask(value, public=name in public) for name, value in config.credentials.items()}


def provider_send_test(*, config: ProviderConfig, to: str, text: str = "") -> SendResult:
    """Send a test message through this provider alone (no failover, no ledger); raises
    ProviderError with the provider's answer, ValueError for a `to` the kind cannot use (a
    Web Push subscription that is not JSON)."""
    cls = registry.get(config.kind)
    text = text or f"Clarion test message from provider {config.key}."
    content = {"email": {"subject": "Clarion test message", "text": text},
               "sms": {"text": text}, "chat": {"text": text},
               "push": {"title": "Clarion", "body": text},
               "webhook": {"body": json.dumps({"test": True, "text": text})}}[config.channel]
    channel_data = {}
    if config.channel == "push":  # fcm/apns: a token; webpush: the subscription's JSON
        channel_data = cls.test_channel_data(to)
    elif config.channel == "chat" and to.startswith(("http://", "https://")):
        channel_data = {"webhook_url": to}
    message = OutboundMessage(id=f"test-{uuid.uuid4()}", channel=config.channel, to=to,
                              content=content, channel_data=channel_data,
                              tenant_key=config.tenant.key if config.tenant_id else "")
    provider = cls(key=config.key, credentials=config.credentials, options=config.options)
    try:
        return provider.send(message)
    finally:
        provider.close()
