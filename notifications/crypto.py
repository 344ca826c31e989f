"""Secrets encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256): ProviderConfig credentials
and tenants' inbox secrets.

Keys come from CLARION_ENCRYPTION_KEY (comma-separated Fernet keys, newest first, so a key can be
rotated: the first encrypts, all decrypt). With none set, one key is derived from SECRET_KEY so the
embedded mode works with nothing configured; production should set its own.
"""

import base64
import hashlib
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

MASK = "••••"


@cache
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if not keys:
        digest = hashlib.sha256(f"clarion-credentials:{secret_key}".encode()).digest()
        keys = (base64.urlsafe_b64encode(digest).decode(),)
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CLARION.get("ENCRYPTION_KEYS") or ()), settings.SECRET_KEY)


def encrypt_json(value: dict) -> str:
    return fernet().encrypt(json.dumps(value, sort_keys=True).encode()).decode()


def decrypt_json(token: str) -> dict:
    """The decrypted object; ValueError if no configured key opens it."""
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ValueError(
            "The credentials cannot be decrypted with CLARION_ENCRYPTION_KEY."
        ) from exc


def mask(value, *, public: bool = False) -> str:
    """A credential as it may be shown: public ones whole, secrets as •••• + last 4 characters."""
    text = str(value)
    if public:
        return text
    return MASK + text[-4:] if len(text) >= 12 else MASK
