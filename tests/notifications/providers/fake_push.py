"""Real servers on 127.0.0.1 standing in for the push services, checking each request the way the
provider documents it and answering as it does (including its dead-token answers).

- `FakeGoogle`: Google's OAuth 2 token endpoint (JWT-bearer grant, RS256 assertion signed with
  the service account's key) and FCM's ``v1/projects/{project}/messages:send``.
- `FakeAPNs`: APNs over HTTP/2 + TLS (self-signed certificate for 127.0.0.1), checking the ES256
  provider token and the apns-* headers.
- `FakePushService`: a Web Push service (RFC 8030) that checks VAPID (RFC 8292) and decrypts the
  aes128gcm body (RFC 8291) with the subscription's private key.

Each records `requests` with their `problems`; a request with problems is refused the way the
provider would refuse it, so tests assert `server.problems == []`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cache

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .servers import ProviderServer, Reply, Request

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{12}$")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@cache
def rsa_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def ec_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(private_pem: str) -> bytes:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


# --- Google OAuth + FCM HTTP v1 -------------------------------------------------------------------

def fcm_error(status: int, code: str, message: str, fcm_code: str | None = None) -> Reply:
    details = [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": fcm_code}] if fcm_code else []
    return Reply(status, json={"error": {"code": status, "message": message, "status": code,
                                         "details": details}})


class FakeGoogle:
    """Google's token endpoint at /token and FCM at /v1/projects/{project}/messages:send."""

    def __init__(self, project_id: str = "clarion-test"):
        self.project_id = project_id
        self.client_email = f"fcm-sender@{project_id}.iam.gserviceaccount.com"
        self.private_key_id = uuid.uuid4().hex
        self.public_key = public_pem(rsa_key_pem())
        self.issued: list[str] = []  # access tokens handed out
        self.revoked: set[str] = set()
        self.unregistered: set[str] = set()  # device tokens FCM answers UNREGISTERED for
        self.token_answer: Reply | None = None
        self.server = ProviderServer(check=self.check, respond=self.respond)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def problems(self) -> list[str]:
        return self.server.problems

    def reset(self) -> None:
        """Forget requests and scripted answers (a server shared by a module's tests)."""
        self.issued.clear()
        self.revoked.clear()
        self.unregistered.clear()
        self.token_answer = None
        self.server.requests.clear()
        self.server._scripted.clear()

    def service_account(self) -> dict:
        """The JSON key file Google hands out, with `token_uri` pointing here."""
        return {"type": "service_account", "project_id": self.project_id,
                "private_key_id": self.private_key_id, "private_key": rsa_key_pem(),
                "client_email": self.client_email, "client_id": "109876543210987654321",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": f"{self.url}/token",
                "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
                "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x"}

    def token_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path == "/token"]

    def send_requests(self) -> list[Request]:
        return [r for r in self.server.requests if r.path != "/token"]

    def check(self, request: Request) -> list[str]:
        if request.path == "/token":
            return self._check_token_request(request)
        return self._check_send(request)

    def _check_token_request(self, request: Request) -> list[str]:
        """RFC 7523 JWT-bearer grant, as Google documents it for service accounts."""
        problems = []
        if request.method != "POST":
            problems.append(f"token: method {request.method}")
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            problems.append("token: content-type")
        form = request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problems.append(f"token: grant_type {form.get('grant_type')!r}")
        try:
            header = jwt.get_unverified_header(form.get("assertion", ""))
            claims = jwt.decode(form.get("assertion", ""), self.public_key, algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE, issuer=self.client_email,
                                options={"require": ["iat", "exp", "iss", "aud", "scope"]})
        except jwt.InvalidTokenError as exc:
            return [*problems, f"token: assertion {exc}"]
        if header.get("kid") != self.private_key_id:
            problems.append("token: kid is not the key's id")
        if FCM_SCOPE not in claims["scope"].split():
            problems.append(f"token: scope {claims['scope']!r}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            problems.append("token: lifetime over an hour")
        return problems

    def _check_send(self, request: Request) -> list[str]:
        problems = []
        if request.method != "POST":
            problems.append(f"send: method {request.method}")
        if request.path != f"/v1/projects/{self.project_id}/messages:send":
            problems.append(f"send: path {request.path}")
        if not request.headers.get("content-type", "").startswith("application/json"):
            problems.append("send: content-type")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.issued:
            problems.append("send: Authorization is not a Bearer token we issued")
        try:
            message = request.json()["message"]
        except (ValueError, KeyError, TypeError):
            return [*problems, "send: body is not {\"message\": {…}}"]
        targets = [k for k in ("token", "topic", "condition") if k in message]
        if targets != ["token"] or not isinstance(message["token"], str):
            problems.append(f"send: targets {targets}")
        notification = message.get("notification", {})
        if set(notification) - {"title", "body", "image"}:
            problems.append(f"send: notification fields {sorted(notification)}")
        if not all(isinstance(v, str) for v in notification.values()):
            problems.append("send: notification values must be strings")
        data = message.get("data", {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
            problems.append("send: data values must be strings")
        reserved = {"from", "notification", "message_type"} & set(data)
        reserved |= {k for k in data if k.startswith(("google.", "gcm."))}
        if reserved:
            problems.append(f"send: reserved data keys {sorted(reserved)}")
        ttl = message.get("android", {}).get("ttl")
        if ttl is not None and not re.fullmatch(r"\d+(\.\d{1,9})?s", ttl):
            problems.append(f"send: android.ttl {ttl!r}")
        return problems

    def respond(self, request: Request) -> Reply:
        if request.path == "/token":
            if self.token_answer is not None:
                return self.token_answer
            token = f"ya29.{uuid.uuid4().hex}"
            self.issued.append(token)
            return Reply(200, json={"access_token": token, "expires_in": 3599,
                                    "token_type": "Bearer"})
        access_token = request.headers["authorization"].partition(" ")[2]
        if access_token in self.revoked:
            return fcm_error(401, "UNAUTHENTICATED", "Request had invalid authentication "
                             "credentials. Expected OAuth 2 access token.")
        device = request.json()["message"]["token"]
        if device in self.unregistered:
            return fcm_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED")
        return Reply(200, json={"name": f"projects/{self.project_id}/messages/"
                                        f"0:{int(time.time() * 1000)}%{uuid.uuid4().hex[:16]}"})

    def stop(self) -> None:
        self.server.stop()


# --- APNs (HTTP/2 over TLS) -----------------------------------------------------------------------

@cache
def localhost_certificate() -> tuple[str, str]:
    """(certificate file, key file): a self-signed certificate for 127.0.0.1 and localhost."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="clarion-apns-")
    cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    with open(cert_file, "wb") as handle:
        handle.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return cert_file, key_file


@dataclass
class APNsRequest:
    headers: dict[str, str]
    body: bytes
    problems: list[str] = field(default_factory=list)
    status: int = 0
    reason: str = ""

    @property
    def token(self) -> str:
        return self.headers.get(":path", "").rpartition("/")[2]

    def json(self):
        return json.loads(self.body)


class FakeAPNs:
    """APNs' provider API: POST /3/device/<token> over HTTP/2 with TLS."""

    PUSH_TYPES = {"alert", "background", "location", "voip", "complication", "fileprovider",
                  "mdm", "liveactivity", "pushtotalk"}

    def __init__(self, *, team_id: str, key_id: str, topic: str, private_key: str):
        self.team_id, self.key_id, self.topic = team_id, key_id, topic
        self.public_key = public_pem(private_key)
        self.unregistered: set[str] = set()  # tokens answered 410 Unregistered
        self.bad_tokens: set[str] = set()  # tokens answered 400 BadDeviceToken
        self.scripted: list[tuple[int, str]] = []  # next answers: (status, reason)
        self.requests: list[APNsRequest] = []
        self.provider_tokens: set[str] = set()
        self.connections = 0
        self.cert_file, key_file = localhost_certificate()
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert_file, key_file)
        self._context.set_alpn_protocols(["h2"])
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._lock = threading.Lock()
        self._stopped = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    @property
    def problems(self) -> list[str]:
        return [p for r in self.requests for p in r.problems]

    def _accept(self) -> None:
        while not self._stopped:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        try:
            tls = self._context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self._lock:
            self.connections += 1
            self._sockets.append(tls)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, header_encoding="utf-8"))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
        streams: dict[int, APNsRequest] = {}
        try:
            while True:
                data = tls.recv(65535)
                if not data:
                    return
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        streams[event.stream_id] = APNsRequest(headers=dict(event.headers),
                                                               body=b"")
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id].body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        self._answer(conn, event.stream_id, streams.pop(event.stream_id))
                    elif isinstance(event, h2.events.ConnectionTerminated):
                        tls.sendall(conn.data_to_send())
                        return
                outgoing = conn.data_to_send()
                if outgoing:
                    tls.sendall(outgoing)
        except (OSError, ssl.SSLError):
            return
        finally:
            tls.close()

    def _check(self, request: APNsRequest) -> tuple[int, str]:
        """(status, reason) for a request that breaks Apple's documented rules, else (0, "")."""
        headers = request.headers
        if headers.get(":method") != "POST":
            return 405, "MethodNotAllowed"
        if not re.fullmatch(r"/3/device/[0-9a-fA-F]{64,200}", headers.get(":path", "")):
            return 404, "BadPath"
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return 403, "MissingProviderToken"
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, self.public_key, algorithms=["ES256"],
                                issuer=self.team_id, options={"require": ["iat", "iss"]})
        except jwt.InvalidTokenError as exc:
            request.problems.append(f"provider token: {exc}")
            return 403, "InvalidProviderToken"
        if header.get("kid") != self.key_id or header.get("alg") != "ES256":
            request.problems.append(f"provider token header {header}")
            return 403, "InvalidProviderToken"
        if time.time() - claims["iat"] > 3600:
            return 403, "ExpiredProviderToken"
        with self._lock:
            self.provider_tokens.add(token)
        if not headers.get("apns-topic"):
            return 400, "MissingTopic"
        if headers["apns-topic"] != self.topic:
            return 400, "TopicDisallowed"
        if headers.get("apns-push-type") not in self.PUSH_TYPES:
            return 400, "InvalidPushType"
        if headers.get("apns-priority", "10") not in ("1", "5", "10"):
            return 400, "BadPriority"
        if "apns-id" in headers and not UUID_RE.match(headers["apns-id"]):
            return 400, "BadMessageId"
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return 400, "BadCollapseId"
        if "apns-expiration" in headers and not headers["apns-expiration"].isdigit():
            return 400, "BadExpirationDate"
        if not request.body:
            return 400, "PayloadEmpty"
        if len(request.body) > 4096:
            return 413, "PayloadTooLarge"
        try:
            aps = request.json()["aps"]
        except (ValueError, KeyError, TypeError):
            request.problems.append("payload has no aps dictionary")
            return 400, "PayloadEmpty"
        if headers["apns-push-type"] == "alert" and not aps.get("alert"):
            request.problems.append("alert push without aps.alert")
            return 400, "PayloadEmpty"
        return 0, ""

    def _answer(self, conn, stream_id: int, request: APNsRequest) -> None:
        status, reason = self._check(request)
        if status and not request.problems:
            request.problems.append(f"{status} {reason}")
        if not status:
            with self._lock:
                scripted = self.scripted.pop(0) if self.scripted else None
            if scripted is not None:
                status, reason = scripted
            elif request.token in self.unregistered:
                status, reason = 410, "Unregistered"
            elif request.token in self.bad_tokens:
                status, reason = 400, "BadDeviceToken"
            else:
                status = 200
        request.status, request.reason = status, reason
        with self._lock:
            self.requests.append(request)
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4()).upper()
        headers = [(":status", str(status)), ("apns-id", apns_id)]
        if status == 200:
            conn.send_headers(stream_id, headers, end_stream=True)
            return
        body = {"reason": reason}
        if status == 410:
            body["timestamp"] = int(time.time() * 1000)
        payload = json.dumps(body).encode()
        conn.send_headers(stream_id, [*headers, ("content-type", "application/json"),
                                      ("content-length", str(len(payload)))])
        conn.send_data(stream_id, payload, end_stream=True)

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


# --- Web Push -------------------------------------------------------------------------------------

@dataclass
class Subscriber:
    """A browser's push subscription: what it hands the site, and the keys only it holds."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    def subscription(self) -> dict:
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}


class FakePushService:
    """A push service: POST /push/<id> with VAPID and an aes128gcm-encrypted body."""

    def __init__(self):
        self.subscribers: dict[str, Subscriber] = {}
        self.gone: set[str] = set()  # subscription ids answered 410 Gone
        self.expired: set[str] = set()  # subscription ids answered 404 Not Found
        self.delivered: list[dict] = []  # decrypted payloads
        self.server = ProviderServer(check=self.check, respond=self.respond)

    @property
    def problems(self) -> list[str]:
        return self.server.problems

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def reset(self) -> None:
        self.gone.clear()
        self.expired.clear()
        self.delivered.clear()
        self.server.requests.clear()
        self.server._scripted.clear()

    def subscribe(self) -> dict:
        push_id = uuid.uuid4().hex
        subscriber = Subscriber(endpoint=f"{self.server.url}/push/{push_id}",
                                private_key=ec.generate_private_key(ec.SECP256R1()),
                                auth=os.urandom(16))
        self.subscribers[push_id] = subscriber
        return subscriber.subscription()

    @staticmethod
    def push_id(request: Request) -> str:
        return request.path.rpartition("/")[2]

    def check(self, request: Request) -> list[str]:
        problems = []
        if request.method != "POST" or not request.path.startswith("/push/"):
            return [f"{request.method} {request.path}"]
        subscriber = self.subscribers.get(self.push_id(request))
        if subscriber is None:
            return ["unknown subscription"]
        auth = request.headers.get("authorization", "")
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", auth)
        if not match:
            return [*problems, f"Authorization is not 'vapid t=…, k=…': {auth[:40]!r}"]
        token, key = match.groups()
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(),
                                                                  b64url_decode(key))
            claims = jwt.decode(token, public, algorithms=["ES256"],
                                audience=self.server.url, options={"require": ["exp", "sub"]})
        except (ValueError, jwt.InvalidTokenError) as exc:
            return [*problems, f"VAPID: {exc}"]
        if not 0 < claims["exp"] - time.time() <= 24 * 3600:
            problems.append("VAPID: exp more than 24 hours ahead")
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            problems.append(f"VAPID: sub {claims['sub']!r}")
        if request.headers.get("content-encoding") != "aes128gcm":
            problems.append(f"Content-Encoding {request.headers.get('content-encoding')!r}")
        if not request.headers.get("ttl", "").isdigit():
            problems.append(f"TTL {request.headers.get('ttl')!r}")
        if request.headers.get("urgency", "normal") not in ("very-low", "low", "normal", "high"):
            problems.append(f"Urgency {request.headers.get('urgency')!r}")
        topic = request.headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            problems.append(f"Topic {topic!r}")
        if len(request.body) > 4096:
            problems.append("body over 4096 bytes")
        try:
            request.decrypted = self._decrypt(subscriber, request.body)
        except Exception as exc:  # http_ece raises several kinds
            problems.append(f"body does not decrypt: {type(exc).__name__}: {exc}")
        return problems

    @staticmethod
    def _decrypt(subscriber: Subscriber, body: bytes) -> dict:
        """RFC 8188 header (salt 16, record size 4, key id length 1, key id = the sender's
        public key), then the record, decrypted with the subscriber's keys (RFC 8291)."""
        import http_ece

        if len(body) < 21 + 65 or body[20] != 65 or body[21] != 0x04:
            raise ValueError("aes128gcm header must carry the 65-byte sender key")
        plain = http_ece.decrypt(body, private_key=subscriber.private_key,
                                 auth_secret=subscriber.auth, version="aes128gcm")
        return json.loads(plain)

    def respond(self, request: Request) -> Reply:
        push_id = self.push_id(request)
        if push_id in self.gone:
            return Reply(410, body=b"push subscription has unsubscribed or expired.")
        if push_id in self.expired:
            return Reply(404, body=b"Not Found")
        self.delivered.append(request.decrypted)
        return Reply(201, headers={"Location": f"{self.server.url}/m/{uuid.uuid4().hex}"})

    def stop(self) -> None:
        self.server.stop()
