"""URLs that admins or apps configure (webhook steps, chat webhooks) must not reach into the
network Clarion runs in (SSRF): every address the host resolves to must be public, unless
CLARION["ALLOW_PRIVATE_URLS"] is set (tests, and deployments that post to their own services).

The check resolves the name just before the request; a DNS answer that changes between the check
and the connection (rebinding) is not covered: deployments that need that guarantee should send
outbound webhooks through an egress proxy.
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class UnsafeURL(ValueError):
    pass


def check_public_url(url: str) -> None:
    """Raise UnsafeURL unless `url` is http(s) and its host resolves only to public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"{url!r} is not an http(s) URL.")
    if settings.CLARION.get("ALLOW_PRIVATE_URLS"):
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{parts.hostname!r} does not resolve: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeURL(f"{parts.hostname!r} resolves to {address}, a private or reserved "
                            "address; set CLARION_ALLOW_PRIVATE_URLS to allow it.")
