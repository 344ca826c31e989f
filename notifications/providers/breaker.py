"""A circuit breaker per provider, shared by every worker process through the database.

State lives on the ProviderConfig row (`consecutive_failures`, `circuit_open_until`), not in a
process or the cache: production runs many workers on several machines, and the embedded mode's
cache is per process. Every transition is one conditional UPDATE, so two workers never both take
the single probe after a cool-down.

- closed: `circuit_open_until` is null; each transient failure adds one to
  `consecutive_failures`; at BREAKER_FAILURES the circuit opens for BREAKER_COOLDOWN_SECONDS.
- open: the provider is skipped until `circuit_open_until`.
- half-open: once the cool-down is over, the first worker to move `circuit_open_until` one
  cool-down ahead (a conditional UPDATE) sends the probe; the others still see it open. A success
  closes the circuit; a failure leaves it open for the new cool-down.

Permanent errors (a bad number, a 400) say nothing about the provider's health and do not count.
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F

from ..models import ProviderConfig


def _cooldown() -> timedelta:
    return timedelta(seconds=settings.CLARION["BREAKER_COOLDOWN_SECONDS"])


def breaker_allows(config: ProviderConfig, *, now: datetime) -> bool:
    """May a call go to this provider now? Claims the half-open probe when the cool-down is
    over (so at most one caller gets True for it)."""
    if config.pk is None or config.circuit_open_until is None:
        return True
    if config.circuit_open_until > now:
        return False
    claimed = ProviderConfig.objects.filter(
        pk=config.pk, circuit_open_until=config.circuit_open_until
    ).update(circuit_open_until=now + _cooldown())
    if claimed:
        config.circuit_open_until = now + _cooldown()
    return bool(claimed)


def breaker_record_failure(config: ProviderConfig, *, now: datetime, error: str) -> None:
    """A transient failure: count it, and open the circuit at the threshold."""
    if config.pk is None:
        return
    ProviderConfig.objects.filter(pk=config.pk).update(
        consecutive_failures=F("consecutive_failures") + 1, last_error=error[:1000])
    ProviderConfig.objects.filter(
        pk=config.pk, consecutive_failures__gte=settings.CLARION["BREAKER_FAILURES"],
    ).update(circuit_open_until=now + _cooldown())
    config.consecutive_failures += 1


def breaker_record_success(config: ProviderConfig) -> None:
    """A success closes the circuit. No write when the row we loaded was healthy."""
    if config.pk is None or (not config.consecutive_failures and not config.circuit_open_until):
        return
    ProviderConfig.objects.filter(pk=config.pk).update(
        consecutive_failures=0, circuit_open_until=None)
    config.consecutive_failures, config.circuit_open_until = 0, None
