"""API keys: made, checked and revoked; only a hash of the secret is kept.

A web process keeps the keys it checked for CLARION["API_KEY_CACHE_SECONDS"] (a read per key
and process that often, not one per request). A revocation is seen at once by the process that
made it, and by every other process within that many seconds."""

import copy
import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from ..models import (
    ApiKey,
    Tenant,
)

LAST_USED_RESOLUTION = timedelta(minutes=1)  # how often an API key's last use is written


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, tenant: Tenant | None = None,
                   scopes: Sequence[str] = ()) -> tuple[ApiKey, str]:
    """A new key and its secret. The secret is returned once and never stored."""
    prefix = "ck_" + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(name=name, prefix=prefix, secret_hash=hash_secret(secret),
                                tenant=tenant, scopes=list(scopes))
    return key, secret


# secret hash → (monotonic time until which it holds, the key with its tenant)
_checked: dict[str, tuple[float, ApiKey]] = {}
_checked_lock = threading.Lock()
_clock = time.monotonic


def api_keys_forget(**_signal) -> None:
    """Forget the keys this process checked (a key or tenant saved or deleted here): the next
    request reads its key again. A signal receiver too."""
    with _checked_lock:
        _checked.clear()


def _copy(api_key: ApiKey) -> ApiKey:
    """A request's own copy of a kept key and its tenant (requests may run on other threads)."""
    fresh = copy.copy(api_key)
    if api_key.tenant_id is not None:
        fresh.tenant = copy.copy(api_key.tenant)
    return fresh


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The unrevoked key whose secret is `secret` (its tenant read along), or None. A key found
    is kept CLARION["API_KEY_CACHE_SECONDS"] (0: read every time); an unknown or revoked one is
    never kept. Notes when it was last used, at most once a minute per process."""
    secret_hash = hash_secret(secret)
    kept = _checked.get(secret_hash)
    if kept is not None and kept[0] > _clock():
        api_key = kept[1]
    else:
        api_key = (ApiKey.objects.select_related("tenant")
                   .filter(secret_hash=secret_hash, revoked_at__isnull=True).first())
        if api_key is None:
            return None
        seconds = settings.CLARION["API_KEY_CACHE_SECONDS"]
        if seconds > 0:
            with _checked_lock:
                _checked[secret_hash] = (_clock() + seconds, api_key)
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return _copy(api_key)


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke the key (again: nothing changes). Saved, not updated in bulk, so the audit log
    records who revoked it."""
    api_key = ApiKey.objects.get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    api_keys_forget()
