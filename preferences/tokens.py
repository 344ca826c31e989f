"""Signed links: the preference center (`/p/<token>/`) and one-click unsubscribe (`/u/<token>/`).

Tokens are django.core.signing values with their own salts, so one kind is never accepted as
the other. A center token names a recipient and (optionally) a tenant; an unsubscribe token
also names the workflow and its category at the time of sending. They do not expire unless
CLARION["PREFERENCES_TOKEN_MAX_AGE"] (env CLARION_PREFERENCES_TOKEN_MAX_AGE, seconds) is set.
"""

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.encoding import force_bytes

CENTER_SALT = "clarion.preferences.center"
UNSUBSCRIBE_SALT = "clarion.preferences.unsubscribe"


@dataclass(frozen=True)
class Link:
    recipient_id: int
    tenant_id: int | None
    workflow_key: str = ""
    category: str = ""


def _max_age() -> int | None:
    return getattr(settings, "CLARION", {}).get("PREFERENCES_TOKEN_MAX_AGE")


class _KeyedSigner(signing.TimestampSigner):
    """signing.dumps' TimestampSigner (the default sha256, SECRET_KEY) with its HMAC keyed once:
    Django derives the key (salted_hmac: a hash of salt and secret) and keys a new HMAC on every
    signature; the engine signs two links a run. Signatures and tokens are byte for byte
    signing.dumps' (tests/preferences/test_tokens.py), so either verifies the other's."""

    def __init__(self, *, salt: str):
        super().__init__(salt=salt)
        derived = hashlib.sha256(force_bytes(self.salt + "signer") + force_bytes(self.key))
        self._mac = hmac.new(derived.digest(), digestmod=hashlib.sha256)

    def signature(self, value, key=None):
        if key is not None and key != self.key:  # a fallback key, when unsigning
            return super().signature(value, key)
        mac = self._mac.copy()
        mac.update(force_bytes(value))
        return signing.b64_encode(mac.digest()).decode()


# One signer per salt, for the SECRET_KEY it was made with (override_settings changes it).
_SIGNERS: dict[tuple[str, str], _KeyedSigner] = {}


def _dumps(obj: dict, *, salt: str) -> str:
    """signing.dumps(obj, salt=salt), with the salt's signer made once."""
    key = (salt, settings.SECRET_KEY)
    signer = _SIGNERS.get(key)
    if signer is None:
        signer = _SIGNERS[key] = _KeyedSigner(salt=salt)
    return signer.sign_object(obj)


def center_token(*, recipient_id: int, tenant_id: int | None) -> str:
    return _dumps({"r": recipient_id, "t": tenant_id}, salt=CENTER_SALT)


def unsubscribe_token(*, recipient_id: int, tenant_id: int | None, workflow_key: str,
                      category: str) -> str:
    return _dumps({"r": recipient_id, "t": tenant_id, "w": workflow_key, "c": category},
                  salt=UNSUBSCRIBE_SALT)


def read(token: str, *, salt: str) -> Link | None:
    """The link a token names, or None when it is forged, damaged or expired."""
    try:
        data = signing.loads(token, salt=salt, max_age=_max_age())
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("r"), int):
        return None
    return Link(recipient_id=data["r"], tenant_id=data.get("t"),
                workflow_key=str(data.get("w", "")), category=str(data.get("c", "")))


def absolute(path: str) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}{path}"


# reverse() of the two pages, split where the token goes, per (name, URLconf, script prefix):
# the engine builds both links for every run it renders (a fan-out: thousands a second), and
# reverse() cost three times the signing. Tokens are URL-safe (base64url, ':' and '.'), which
# reverse() would leave as they are.
_TOKEN_MARK = "clarion-token-mark"
_SHAPES: dict[tuple, list[str]] = {}


def _shape(name: str) -> list[str]:
    """reverse(name, args=[token]) split where the token goes (token.join(shape) is the path)."""
    key = (name, get_urlconf(), get_script_prefix())
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _SHAPES[key] = reverse(name, args=[_TOKEN_MARK]).split(_TOKEN_MARK)
    return shape


def _path(name: str, token: str) -> str:
    """reverse(name, args=[token]) for a signing token."""
    return token.join(_shape(name))


def preferences_url(*, recipient_id: int, tenant_id: int | None) -> str:
    token = center_token(recipient_id=recipient_id, tenant_id=tenant_id)
    return absolute(_path("preferences:center", token))


def unsubscribe_url(*, recipient_id: int, tenant_id: int | None, workflow_key: str,
                    category: str) -> str:
    token = unsubscribe_token(recipient_id=recipient_id, tenant_id=tenant_id,
                              workflow_key=workflow_key, category=category)
    return absolute(_path("preferences:unsubscribe", token))


class Links:
    """preferences_url and unsubscribe_url of many people in a row (the runs of an advance
    batch): the pages' absolute URLs around the token (PUBLIC_URL, this thread's URLconf and
    script prefix: a lookup in asgiref's Local each, ~6 µs a link) are read once, when the
    first link of each kind is made. The same links as the functions above."""

    def __init__(self):
        self._shapes: dict[str, list[str]] = {}

    def _url(self, name: str, token: str) -> str:
        shape = self._shapes.get(name)
        if shape is None:
            first, *rest = _shape(name)
            shape = self._shapes[name] = [absolute(first), *rest]
        return token.join(shape)

    def preferences_url(self, *, recipient_id: int, tenant_id: int | None) -> str:
        return self._url("preferences:center",
                         center_token(recipient_id=recipient_id, tenant_id=tenant_id))

    def unsubscribe_url(self, *, recipient_id: int, tenant_id: int | None, workflow_key: str,
                        category: str) -> str:
        return self._url("preferences:unsubscribe", unsubscribe_token(
            recipient_id=recipient_id, tenant_id=tenant_id, workflow_key=workflow_key,
            category=category))
