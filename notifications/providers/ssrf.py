"""URLs that admins or apps configure (webhook steps, chat webhooks, Web Push endpoints) must not
reach into the network Clarion runs in (SSRF): every address the host resolves to must be public,
unless CLARION["ALLOW_PRIVATE_URLS"] is set (tests, and deployments that post to their own
services).

The check is made where the name is resolved, when the connection is opened, and the connection
goes to the address that was checked: a DNS answer that changes between a check and a connection
(DNS rebinding) cannot redirect a request. `public_client`/`public_async_client` (httpx) and
`public_session` (requests) are the clients that do this; TLS is still verified against the URL's
host name, which is also sent as the Host header and as SNI.

An IPv6 address that carries an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
`::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`, Teredo `2001::/32`) is judged by the IPv4
address it carries as well; local-use NAT64 (`64:ff9b:1::/48`) is refused outright.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

import anyio.to_thread
import httpcore
import httpx
import requests
import requests.adapters
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's defaults

# IPv6 ranges that carry an IPv4 address, and where (RFC 4291 2.5.5, RFC 6052, RFC 3056).
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: the IPv4 may sit anywhere
SIX_TO_FOUR = ipaddress.ip_network("2002::/16")
TEREDO = ipaddress.ip_network("2001::/32")  # RFC 4380: server and (inverted) client IPv4


class UnsafeURL(ValueError):
    pass


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (none for an IPv4 address or plain IPv6)."""
    if address.version == 4:
        return []
    if address in IPV4_MAPPED or address in IPV4_COMPATIBLE or address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address in SIX_TO_FOUR:
        return [address.sixtofour]
    if address in TEREDO:
        return list(address.teredo)
    return []


def address_problem(address: IPAddress) -> str:
    """Why a connection to `address` is refused ("" when it is public)."""
    if not address.is_global or address.is_multicast or (
            address.version == 6 and address.is_site_local):
        return "a private or reserved address"
    if address.version == 6 and address in NAT64_LOCAL_USE:
        return "a local-use NAT64 address (RFC 8215)"
    for inner in embedded_ipv4(address):
        if address_problem(inner):
            return f"which carries {inner}, a private or reserved address"
    return ""


def _refusal(host: str, address: IPAddress, problem: str) -> UnsafeURL:
    return UnsafeURL(f"{host!r} resolves to {address}, {problem}; set CLARION_ALLOW_PRIVATE_URLS "
                     "to allow it.")


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to for a TCP connection, in the resolver's order and without
    repeats. The only place this module resolves names. Raises UnsafeURL when it does not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeURL(f"{host!r} does not resolve: {exc}") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def connectable_addresses(host: str, port: int) -> list[str]:
    """Resolve `host` once and return the addresses to connect to: all of them, each checked to
    be public unless CLARION["ALLOW_PRIVATE_URLS"] is set. Raises UnsafeURL if any is not
    public (one private answer is enough to refuse the name) or the name does not resolve."""
    literal = _literal(host)
    addresses = [str(literal)] if literal is not None else resolve(host, port)
    if settings.CLARION.get("ALLOW_PRIVATE_URLS"):
        return addresses
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        problem = address_problem(address)
        if problem:
            raise _refusal(host, address, problem)
    return addresses


def check_public_url(url: str) -> None:
    """Raise UnsafeURL unless `url` is http(s) with a host, and that host, when it is an address,
    is public. A host name is checked when it is resolved, by the public clients below."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"{url!r} is not an http(s) URL.")
    literal = _literal(parts.hostname)
    if literal is not None and not settings.CLARION.get("ALLOW_PRIVATE_URLS"):
        problem = address_problem(literal)
        if problem:
            raise _refusal(parts.hostname, literal, problem)


def check_url_destination(url: str) -> None:
    """For a URL someone enters that Clarion or its readers will request (a tenant's logo, shown
    in emails and on the preference center): raise UnsafeURL when its host is a private,
    loopback or link-local address, or a name resolving to one, unless
    CLARION["ALLOW_PRIVATE_URLS"]. A name that does not resolve (yet) is accepted; URLs Clarion
    itself connects to are checked again at connection time (connectable_addresses)."""
    check_public_url(url)
    if settings.CLARION.get("ALLOW_PRIVATE_URLS"):
        return
    parts = urlsplit(url)
    if _literal(parts.hostname) is not None:
        return  # checked above
    try:
        addresses = resolve(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except UnsafeURL:
        return
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        problem = address_problem(address)
        if problem:
            raise _refusal(parts.hostname, address, problem)


# --- httpx: a connection pool whose network backend connects only to checked addresses --------

class _PublicBackend(httpcore.SyncBackend):
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        error: Exception | None = None
        for address in connectable_addresses(host, port):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:  # try the next address, as create_connection
                error = exc
        raise error or httpcore.ConnectError(f"{host!r} has no address")


class _PublicAsyncBackend(httpcore.AnyIOBackend):
    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None):
        addresses = await anyio.to_thread.run_sync(connectable_addresses, host, port)
        error: Exception | None = None
        for address in addresses:
            try:
                return await super().connect_tcp(address, port, timeout, local_address,
                                                 socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host!r} has no address")


def _pool_options(verify: ssl.SSLContext, limits: httpx.Limits) -> dict:
    return {"ssl_context": verify, "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry}


class PublicHTTPTransport(httpx.HTTPTransport):
    """httpx's transport with a pool that opens connections through `_PublicBackend`. httpx has
    no option for the network backend, so the pool it builds is replaced by the same pool with
    ours (httpx's handle_request only uses `_pool`). Environment proxies are not used."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits = LIMITS):
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self._pool = httpcore.ConnectionPool(**_pool_options(verify, limits),
                                             network_backend=_PublicBackend())


class PublicAsyncHTTPTransport(httpx.AsyncHTTPTransport):
    """The async PublicHTTPTransport."""

    def __init__(self, *, verify: ssl.SSLContext, limits: httpx.Limits = LIMITS):
        super().__init__(verify=verify, limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(**_pool_options(verify, limits),
                                                  network_backend=_PublicAsyncBackend())


def public_client(*, timeout: float, verify: ssl.SSLContext) -> httpx.Client:
    """An httpx client that connects only to public addresses, the ones it checked."""
    return httpx.Client(timeout=timeout, trust_env=False,
                        transport=PublicHTTPTransport(verify=verify))


def public_async_client(*, timeout: float, verify: ssl.SSLContext,
                        limits: httpx.Limits = LIMITS) -> httpx.AsyncClient:
    """The async public_client."""
    return httpx.AsyncClient(timeout=timeout, trust_env=False,
                             transport=PublicAsyncHTTPTransport(verify=verify, limits=limits))


# --- requests (pywebpush): urllib3 connections that connect only to checked addresses ---------

class _PublicConnectionMixin:
    def _new_conn(self) -> socket.socket:
        error: Exception | None = None
        for address in connectable_addresses(self._dns_host, self.port):
            try:
                return create_connection((address, self.port), self.timeout,
                                         source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError as exc:
                error = ConnectTimeoutError(self, f"Connection to {self.host} timed out.")
                error.__cause__ = exc
            except OSError as exc:
                error = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
        raise error or NewConnectionError(self, f"{self.host!r} has no address")


class _PublicHTTPConnection(_PublicConnectionMixin, HTTPConnection):
    pass


class _PublicHTTPSConnection(_PublicConnectionMixin, HTTPSConnection):
    pass


class _PublicHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PublicHTTPSConnection


class PublicHTTPAdapter(requests.adapters.HTTPAdapter):
    """A requests adapter whose pools open connections only to checked public addresses (TLS is
    verified against the URL's host name, as urllib3 always does)."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicHTTPPool,
                                                   "https": _PublicHTTPSPool}


def public_session() -> requests.Session:
    """A requests session that connects only to public addresses, the ones it checked;
    environment proxies are not used."""
    session = requests.Session()
    session.trust_env = False
    for prefix in ("http://", "https://"):
        session.mount(prefix, PublicHTTPAdapter())
    return session
