"""API keys: made, checked and revoked; only a hash of the secret is kept."""

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta

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


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The unrevoked key whose secret is `secret` (its tenant read along), or None. Notes when
    it was last used, at most once a minute."""
    api_key = (ApiKey.objects.select_related("tenant")
               .filter(secret_hash=hash_secret(secret), revoked_at__isnull=True).first())
    if api_key is not None:
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke the key (again: nothing changes). Saved, not updated in bulk, so the audit log
    records who revoked it."""
    api_key = ApiKey.objects.get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
