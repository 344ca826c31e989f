"""The providers a message may go through: a channel's active ProviderConfigs in order (the
tenant's own first, then the global ones, each by priority), else the built-in defaults; one
provider instance per config and worker thread, so connections outlive a batch."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db.models import F, Q

from ..models import Channel, ProviderConfig
from ..providers import registry
from ..providers.base import Provider
from ..providers.email import SettingsEmail
from ..providers.webhook import SignedWebhook, default_signing_secret

logger = logging.getLogger(__name__)


@dataclass
class Candidate:
    key: str
    provider: Provider
    config: ProviderConfig | None = None


def provider_for(config: ProviderConfig) -> Provider:
    """An instance of the config's kind with its decrypted credentials."""
    cls = registry.get(config.kind)
    return cls(key=config.key, credentials=config.credentials, options=config.options)


def default_candidates(channel: str) -> list[Candidate]:
    """Providers used when a channel has none configured: Django's email settings, and the
    webhook channel signed with CLARION_WEBHOOK_SIGNING_SECRET."""
    if channel == Channel.EMAIL:
        provider = SettingsEmail(key="settings")
        provider.key = provider.name
        return [Candidate(provider.key, provider)]
    if channel == Channel.WEBHOOK:
        provider = SignedWebhook(key="webhook",
                                 credentials={"signing_secret": default_signing_secret()})
        return [Candidate("webhook", provider)]
    return []


_local = threading.local()


def _cached_provider(config: ProviderConfig) -> Provider:
    """One instance per config (and version of it) per worker thread, so HTTP connections are
    kept alive across batches; an edited config gets a fresh instance."""
    cache = getattr(_local, "providers", None)
    if cache is None:
        cache = _local.providers = {}
    version = (config.updated_at, config.credentials_encrypted, config.kind)
    cached = cache.get(config.pk)
    if cached is not None and cached[0] == version:
        return cached[1]
    if cached is not None:
        old = cached[1]
        old.close()
        if getattr(old, "_async_clients", None):
            event_loop().run_until_complete(old.aclose())
    provider = provider_for(config)
    cache[config.pk] = (version, provider)
    return provider


def event_loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for concurrent calls, kept between batches: async HTTP clients
    belong to the loop that opened them. Its default executor, which runs the calls made in
    threads (SMTP, anymail: `Provider.asend`), has room for DELIVERY_CONCURRENCY of them
    (asyncio's own default is min(32, cores + 4) threads: 6 on 2 cores, so a batch of 25
    emails went out 6 at a time, and their attempt rows in as many small transactions as
    that allowed). Threads are started as calls need them and kept idle between batches."""
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
        loop.set_default_executor(ThreadPoolExecutor(
            max_workers=max(1, settings.CLARION["DELIVERY_CONCURRENCY"]),
            thread_name_prefix="delivery"))
    return loop


class ProviderPool:
    """The candidates of each (channel, tenant) for one batch: one query each."""

    def __init__(self):
        self._by_scope: dict[tuple[str, int | None], list[Candidate]] = {}
        self._defaults: list[Provider] = []
        self.problems: dict[tuple[str, int | None], str] = {}

    def candidates(self, channel: str, tenant_id: int | None) -> list[Candidate]:
        scope = (channel, tenant_id)
        if scope not in self._by_scope:
            tenants = Q(tenant__isnull=True) | Q(tenant_id=tenant_id) if tenant_id \
                else Q(tenant__isnull=True)
            configs = ProviderConfig.objects.filter(tenants, channel=channel, active=True) \
                .order_by(F("tenant_id").asc(nulls_last=True), "priority", "key")
            found, configured = [], False
            for config in configs:
                configured = True
                try:
                    provider = _cached_provider(config)
                except (KeyError, ValueError) as exc:  # unknown kind, undecryptable credentials
                    logger.error("provider %s is unusable: %s", config.key, exc)
                    self.problems[scope] = f"Provider {config.key} is unusable: {exc}"
                    continue
                found.append(Candidate(config.key, provider, config))
            if not configured:  # never instead of configured providers that are unusable
                found = default_candidates(channel)
                self._defaults += [c.provider for c in found]
            self._by_scope[scope] = found
        return self._by_scope[scope]

    def close(self) -> None:
        """Close the per-batch default providers (configured ones stay cached)."""
        for provider in self._defaults:
            provider.close()
            if getattr(provider, "_async_clients", None):
                event_loop().run_until_complete(provider.aclose())
