"""Signed links: the preference center (`/p/<token>/`) and one-click unsubscribe (`/u/<token>/`).

Tokens are django.core.signing values with their own salts, so one kind is never accepted as
the other. A center token names a recipient and (optionally) a tenant; an unsubscribe token
also names the workflow and its category at the time of sending. They do not expire unless
CLARION["PREFERENCES_TOKEN_MAX_AGE"] (env CLARION_PREFERENCES_TOKEN_MAX_AGE, seconds) is set.
"""

from dataclasses import dataclass

from django.conf import settings
from django.core import signing
from django.urls import get_script_prefix, get_urlconf, reverse

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


def center_token(*, recipient_id: int, tenant_id: int | None) -> str:
    return signing.dumps({"r": recipient_id, "t": tenant_id}, salt=CENTER_SALT)


def unsubscribe_token(*, recipient_id: int, tenant_id: int | None, workflow_key: str,
                      category: str) -> str:
    return signing.dumps({"r": recipient_id, "t": tenant_id, "w": workflow_key, "c": category},
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


def _path(name: str, token: str) -> str:
    """reverse(name, args=[token]) for a signing token."""
    key = (name, get_urlconf(), get_script_prefix())
    shape = _SHAPES.get(key)
    if shape is None:
        shape = _SHAPES[key] = reverse(name, args=[_TOKEN_MARK]).split(_TOKEN_MARK)
    return token.join(shape)


def preferences_url(*, recipient_id: int, tenant_id: int | None) -> str:
    token = center_token(recipient_id=recipient_id, tenant_id=tenant_id)
    return absolute(_path("preferences:center", token))


def unsubscribe_url(*, recipient_id: int, tenant_id: int | None, workflow_key: str,
                    category: str) -> str:
    token = unsubscribe_token(recipient_id=recipient_id, tenant_id=tenant_id,
                              workflow_key=workflow_key, category=category)
    return absolute(_path("preferences:unsubscribe", token))
