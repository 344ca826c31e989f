"""SSRF (issue 11 point 8): addresses that carry a private IPv4 are refused, and a connection goes
to the address that was checked, so a DNS answer that changes between the check and the
connection (rebinding) cannot reach 127.0.0.1.

Name resolution cannot run for real here, so `dns` answers for test names by patching
socket.getaddrinfo (numeric hosts still go to the real resolver); every connection is real. The
same fixture keeps traffic on the machine: a connection to a non-loopback address is recorded and
refused, as a firewall would, instead of leaving."""

import asyncio
import datetime
import ipaddress
import os
import re
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from notifications.providers import ssrf
from notifications.providers.base import OutboundMessage, PermanentError, TransientError
from notifications.providers.ssrf import UnsafeURL, address_problem, check_public_url
from notifications.providers.webhook import SignedWebhook

from .servers import ProviderServer, Reply

PUBLIC = "93.184.216.34"  # a global address; the fixture refuses connections to it locally

# (form, the IPv6 address) for private IPv4 addresses carried by IPv6 ones.
CARRIERS = [
    ("IPv4-mapped", "::ffff:127.0.0.1"),
    ("IPv4-mapped, hex", "::ffff:7f00:1"),
    ("IPv4-mapped metadata", "::ffff:169.254.169.254"),
    ("IPv4-compatible", "::127.0.0.1"),
    ("IPv4-compatible private", "::10.1.2.3"),
    ("NAT64", "64:ff9b::7f00:1"),
    ("NAT64 metadata", "64:ff9b::a9fe:a9fe"),
    ("NAT64 local use", "64:ff9b:1::7f00:1"),
    ("NAT64 local use, public IPv4", "64:ff9b:1::808:808"),
    ("6to4", "2002:7f00:1::1"),
    ("6to4 private", "2002:a00:1::"),
    ("Teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"),
    ("Teredo loopback client", "2001:0:808:808:0:0:80ff:fffe"),
]


@pytest.fixture
def strict(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=False)


@pytest.fixture
def dns(monkeypatch):
    """dns.answer(name, [addresses], [addresses later]…): the first lookup of `name` gets the
    first list, later ones the next (the last repeats). `dns.lookups[name]` counts lookups;
    `dns.refused` lists the non-loopback (address, port) connections that were attempted."""
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    class Dns:
        answers: dict[str, list[list[str]]] = {}
        lookups: dict[str, int] = {}
        refused: list[tuple[str, int]] = []

        def answer(self, name, *answers):
            self.answers[name] = [list(a) for a in answers]

    fake = Dns()
    fake.answers, fake.lookups, fake.refused = {}, {}, []

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name not in fake.answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        count = fake.lookups.get(name, 0)
        fake.lookups[name] = count + 1
        answers = fake.answers[name]
        infos = []
        for address in answers[min(count, len(answers) - 1)]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 \
                else (address, int(port or 0))
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos

    def connect(sock, address):
        if isinstance(address, tuple) and not ipaddress.ip_address(
                address[0].split("%")[0]).is_loopback:
            fake.refused.append((address[0], address[1]))
            raise ConnectionRefusedError(f"test network: {address[0]} is not on this machine")
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    return fake


@pytest.fixture
def server():
    started = ProviderServer(respond=lambda request: Reply(200, json={}))
    yield started
    started.stop()


def webhook_to(url: str) -> tuple[SignedWebhook, OutboundMessage]:
    provider = SignedWebhook(key="hook", credentials={"signing_secret": "s"})
    message = OutboundMessage(id="m1", channel="webhook", to=url, content={"body": "{}"},
                              workflow_key="w", recipient_id="u1")
    return provider, message


# --- Addresses that carry an IPv4 one ------------------------------------------------------------

@pytest.mark.parametrize(("form", "address"), CARRIERS, ids=[c[0] for c in CARRIERS])
def test_an_address_carrying_a_private_ipv4_is_refused(strict, form, address):
    assert address_problem(ipaddress.ip_address(address))
    with pytest.raises(UnsafeURL, match="a private or reserved address|local-use NAT64"):
        check_public_url(f"https://[{address}]:8443/hook")


@pytest.mark.parametrize("address", ["64:ff9b::808:808", "2002:808:808::1", "::ffff:8.8.8.8",
                                     "2606:4700:4700::1111", "8.8.8.8"])
def test_nat64_and_6to4_of_a_public_ipv4_stay_allowed(address):
    # A DNS64 network answers 64:ff9b::/96 for every IPv4-only host: those are public.
    assert address_problem(ipaddress.ip_address(address)) == ""


@pytest.mark.parametrize(("form", "address"), CARRIERS, ids=[c[0] for c in CARRIERS])
def test_a_name_resolving_to_a_carrier_of_a_private_ipv4_is_refused_and_nothing_is_sent(
        strict, dns, server, form, address):
    port = server.url.rsplit(":", 1)[1]
    dns.answer("hooks.test", [address])
    provider, message = webhook_to(f"http://hooks.test:{port}/hook")
    shown = re.escape(str(ipaddress.ip_address(address)))
    with pytest.raises(PermanentError, match=f"'hooks.test' resolves to {shown}, "):
        provider.send(message)
    assert server.requests == []
    assert dns.refused == []  # refused before connecting


def test_a_name_with_one_private_answer_among_public_ones_is_refused(strict, dns, server):
    dns.answer("hooks.test", [PUBLIC, "127.0.0.1"])
    provider, message = webhook_to(f"http://hooks.test:{server.url.rsplit(':', 1)[1]}/hook")
    with pytest.raises(PermanentError, match="resolves to 127.0.0.1, a private or reserved"):
        provider.send(message)
    assert (server.requests, dns.refused) == ([], [])


# --- DNS rebinding ------------------------------------------------------------------------------

def test_a_name_that_rebinds_to_127_0_0_1_after_the_check_cannot_reach_it(strict, dns, server):
    port = int(server.url.rsplit(":", 1)[1])
    dns.answer("rebind.test", [PUBLIC], ["127.0.0.1"])
    provider, message = webhook_to(f"http://rebind.test:{port}/hook")
    with pytest.raises(TransientError, match="connection error"):
        provider.send(message)
    # One lookup, and the connection went to the address it checked, never to 127.0.0.1.
    assert dns.lookups == {"rebind.test": 1}
    assert dns.refused == [(PUBLIC, port)]
    assert server.requests == []


def test_a_rebinding_name_cannot_reach_127_0_0_1_through_the_async_client_either(strict, dns,
                                                                                server):
    port = int(server.url.rsplit(":", 1)[1])
    dns.answer("rebind.test", [PUBLIC], ["127.0.0.1"])
    provider, message = webhook_to(f"http://rebind.test:{port}/hook")

    async def send():
        try:
            return await provider.asend(message)
        finally:
            await provider.aclose()

    with pytest.raises(TransientError, match="connection error"):
        asyncio.run(send())
    assert dns.lookups == {"rebind.test": 1}
    assert dns.refused == [(PUBLIC, port)]
    assert server.requests == []


def test_a_rebinding_web_push_endpoint_cannot_reach_127_0_0_1(strict, dns, server):
    port = int(server.url.rsplit(":", 1)[1])
    dns.answer("push.test", [PUBLIC], ["127.0.0.1"])
    with ssrf.public_session() as session, pytest.raises(requests.ConnectionError):
        session.post(f"http://push.test:{port}/push/1", data=b"x", timeout=5)
    assert dns.lookups == {"push.test": 1}
    assert dns.refused == [(PUBLIC, port)]
    assert server.requests == []


def test_a_web_push_endpoint_resolving_to_a_private_address_is_refused(strict, dns, server):
    dns.answer("push.test", ["::ffff:127.0.0.1"])
    port = server.url.rsplit(":", 1)[1]
    with ssrf.public_session() as session, pytest.raises(UnsafeURL, match="::ffff:7f00:1"):
        session.post(f"http://push.test:{port}/push/1", data=b"x", timeout=5)
    assert server.requests == []


def test_with_private_urls_allowed_the_connection_still_goes_to_the_first_answer(
        clarion_settings, dns, server):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    port = int(server.url.rsplit(":", 1)[1])
    dns.answer("local.test", ["127.0.0.1"], [PUBLIC])
    provider, message = webhook_to(f"http://local.test:{port}/hook")
    provider.send(message)
    assert dns.lookups == {"local.test": 1}
    assert [request.headers["host"] for request in server.requests] == [f"local.test:{port}"]


# --- TLS: the host name is still the one verified, sent as SNI and as Host ----------------------

def certificate_for(name: str) -> tuple[str, str]:
    """(certificate file, key file): a self-signed certificate for DNS name `name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    folder = tempfile.mkdtemp(prefix="clarion-ssrf-")
    cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_file, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_server():
    """An HTTPS server on 127.0.0.1 with a certificate for hooks.test; it records the SNI name
    and the Host header of each request."""
    cert_file, key_file = certificate_for("hooks.test")
    seen: list[tuple[str | None, str]] = []
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((names[-1] if names else None, self.headers["Host"]))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    httpd.cert_file, httpd.seen = cert_file, seen
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_tls_is_verified_against_the_host_name_sent_as_sni_and_host(clarion_settings, dns,
                                                                   tls_server):
    clarion_settings(ALLOW_PRIVATE_URLS=True)
    port = tls_server.server_port
    dns.answer("hooks.test", ["127.0.0.1"])
    dns.answer("other.test", ["127.0.0.1"])
    trusted = ssl.create_default_context(cafile=tls_server.cert_file)
    with ssrf.public_client(timeout=5, verify=trusted) as client:
        assert client.post(f"https://hooks.test:{port}/hook", content=b"{}").status_code == 200
        # Same address, another name: the certificate does not name it.
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.post(f"https://other.test:{port}/hook", content=b"{}")
    with ssrf.public_session() as session:
        response = session.post(f"https://hooks.test:{port}/push", data=b"x",
                                verify=tls_server.cert_file, timeout=5)
        assert response.status_code == 200
        with pytest.raises(requests.exceptions.SSLError):
            session.post(f"https://other.test:{port}/push", data=b"x",
                         verify=tls_server.cert_file, timeout=5)
    assert tls_server.seen == [("hooks.test", f"hooks.test:{port}")] * 2


def test_the_web_push_provider_connects_to_the_endpoint_address_it_checked(strict, dns):
    from notifications.providers.webpush import WebPush

    from .fake_push import FakePushService, ec_key_pem

    service = FakePushService()
    try:
        subscription = service.subscribe()
        port = int(service.server.url.rsplit(":", 1)[1])
        subscription["endpoint"] = subscription["endpoint"].replace(
            service.server.url, f"https://push.test:{port}")
        dns.answer("push.test", [PUBLIC], ["127.0.0.1"])
        provider = WebPush(key="webpush", credentials={"vapid_private_key": ec_key_pem(),
                                                       "vapid_subject": "mailto:ops@example.test"})
        message = OutboundMessage(id="m1", channel="push", to="", content={"title": "t"},
                                  channel_data={"subscriptions": [subscription]})
        with pytest.raises(TransientError, match="connection error"):
            provider.send(message)
        provider.close()
        assert dns.lookups == {"push.test": 1}
        assert dns.refused == [(PUBLIC, port)]
        assert service.requests == []
    finally:
        service.stop()
