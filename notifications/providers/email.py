"""Email: SMTP, and every ESP django-anymail ships a backend for (SendGrid, Mailgun, Postmark,
Amazon SES, Brevo, MailerSend, Mailjet, Mailtrap, Mandrill, Postal, Resend, Scaleway TEM,
SparkPost, Unisender Go).

Every kind builds the same Django EmailMultiAlternatives and sends it through a Django email
backend opened with that kind's credentials, so anymail maps it to each ESP's documented API and
its tracking webhooks find the message again (`metadata.clarion_message_id`). With no email
ProviderConfig at all, `SettingsEmail` sends through Django's EMAIL_BACKEND settings, as the
embedded mode and a plain SMTP setup expect.

Their delivery and engagement events come back through anymail's tracking webhooks (below).
"""

import functools
import json
import logging
import re
import selectors
import smtplib
import socket
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from anymail.exceptions import AnymailConfigurationError, AnymailWebhookValidationFailure
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.urls import URLPattern
from django.utils.encoding import punycode

from ..addresses import format_address, parse_mailbox
from .base import (
    ConfigurationError,
    Exchange,
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    SendResult,
    TransientError,
    parse_retry_after,
    transient_status,
)
from .callbacks import Kind, StatusEvent, error_response, jsonable
from .registry import register

logger = logging.getLogger(__name__)


def classify_email_error(exc: Exception) -> type[ProviderError]:
    """TransientError or PermanentError for an exception raised by an email backend."""
    from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

    if isinstance(exc, AnymailRecipientsRefused):
        return PermanentError
    if isinstance(exc, AnymailAPIError):
        status = getattr(exc, "status_code", None)
        transient = status is None or transient_status(status)
        return TransientError if transient else PermanentError
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return TransientError if codes and all(400 <= c < 500 for c in codes) else PermanentError
    if isinstance(exc, smtplib.SMTPResponseException):
        return TransientError if 400 <= exc.smtp_code < 500 else PermanentError
    if isinstance(exc, smtplib.SMTPServerDisconnected | OSError | TimeoutError):
        return TransientError
    return PermanentError


END_OF_DATA = b"\r\n.\r\n"  # RFC 5321 section 4.1.1.4: <CRLF>.<CRLF> ends the mail data


class CommitGatedSMTPBackend(DjangoSMTPBackend):
    """Django's SMTP backend whose DATA exchange stops just short of the end: after the server's
    354 it sends the message's data but its final "<CRLF>.<CRLF>" (`END_OF_DATA`, 5 bytes), then
    calls `before_end_of_data(send_end)` (if set), which records what it must and then calls
    `send_end()` to write those 5 bytes; then it reads the server's answer.

    A server takes a message only at the end of its data: the "<CRLF>.<CRLF>" line is the end
    of mail data indication, whose receipt makes the server process the transaction (RFC 5321
    section 4.1.1.4; section 3.3: it "confirms the mail transaction"), and a connection that
    closes before it ends the transaction unconfirmed, a failure the client is to treat as a
    451 and send again (section 3.8). So connecting, EHLO, STARTTLS, AUTH, MAIL FROM, RCPT TO,
    DATA and the message's data may all be redone: a worker killed before `send_end()` leaves
    a message the server never took. Only writing `END_OF_DATA` and waiting for the answer is
    of unknown outcome. An exception from `before_end_of_data` before it calls `send_end`
    closes the connection (the server drops the unfinished DATA) and is raised; so does one
    from `send_end` (smtplib closes a connection it cannot write to: the server has not the
    whole end of data).

    `send_end` may be called from another thread than the one sending (delivery's concurrent
    batch calls it from the thread that wrote the attempt): that thread waits meanwhile, and
    the socket can take the 5 bytes without waiting (the data is sent and the socket writable
    before the hook is called). The socket sends without Nagle's delay (TCP_NODELAY), so the
    5 bytes are not held back until the data is acknowledged.

    The end is not written ahead under TCP_CORK, to be let go once the attempt commits, with
    SO_LINGER (on, 0) so that a dead worker's connection is reset and its queue discarded
    (tcp(7), socket(7)): measured on Linux, corked bytes leave by themselves after ~205 ms
    (tcp(7)'s 200 ms ceiling), so a slow commit would let them out before it; and a worker killed
    while its COMMIT is in PostgreSQL loses the email all the same (PostgreSQL commits, the reset
    drops the DATA), so it would not narrow the window that remains. That window, between the
    COMMIT reaching PostgreSQL and the end leaving, is kept to a round trip by the attempt's
    transaction committing without its WAL flush (delivery.batch.commit_without_flush)."""

    before_end_of_data: Callable[[Callable[[], None]], None] | None = None

    def open(self) -> bool | None:
        opened = super().open()
        hook, smtp = self.before_end_of_data, self.connection
        if opened and hook is not None and smtp is not None:
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.data = functools.partial(gated_data, smtp, hook)
        return opened


def smtp_data_bytes(msg: str | bytes) -> bytes:
    """What smtplib.SMTP.data sends after the server's 354 for `msg` (Python 3.11 to 3.13, step
    for step): a str's line endings made CRLF (smtplib's _fix_eols; bytes are sent as they are),
    each line's leading period doubled (_quote_periods; RFC 5321 section 4.5.2, transparency),
    a CRLF added unless the data ends with one, then the "." line. Ends with `END_OF_DATA`.
    UnicodeEncodeError for a str that is not ASCII, as smtplib."""
    if isinstance(msg, str):
        msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
    data = re.sub(rb"(?m)^\.", b"..", msg)
    if data[-2:] != b"\r\n":
        data += b"\r\n"
    return data + b".\r\n"


def gated_data(smtp: smtplib.SMTP, hook: Callable[[Callable[[], None]], None],
               msg: str | bytes) -> tuple[int, bytes]:
    """smtplib.SMTP.data (the DATA command, its 354, `smtp_data_bytes(msg)`, the final reply)
    with its data sent in two parts: all but `END_OF_DATA`, then `hook(send_end)`, where
    `send_end()` sends `END_OF_DATA`. The hook must call it once (from any thread) unless it
    raises; an exception before that closes the connection, nothing of the message taken.
    SMTPDataError for an answer to DATA other than 354."""
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    data = smtp_data_bytes(msg)
    sent = False

    def send_end() -> None:
        nonlocal sent
        smtp.send(data[-len(END_OF_DATA):])  # an OSError closes the connection (smtplib)
        sent = True

    try:
        smtp.send(data[:-len(END_OF_DATA)])
        _wait_writable(smtp.sock)
        hook(send_end)
    except BaseException:
        if not sent:
            smtp.close()  # the server drops the transaction: nothing of it was taken
        raise
    if not sent:
        smtp.close()
        raise RuntimeError("before_end_of_data returned without sending the end of the data.")
    return smtp.getreply()


def _wait_writable(sock: socket.socket) -> None:
    """Wait (at most the socket's timeout) until `sock` can take a few bytes at once: the
    message's data may still fill its send buffer. TimeoutError if it cannot."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE)
        if not selector.select(sock.gettimeout()):
            raise TimeoutError("The SMTP server did not read the message's data in time.")


class EmailProvider(Provider):
    """The email channel's base: builds the email, opens `backend` with `connection_kwargs()`,
    sends, and maps the backend's exceptions to Transient/PermanentError."""

    channel = "email"
    backend: ClassVar[str] = ""
    public_credential_fields = frozenset({"from_email", "host", "port", "username", "use_tls",
                                          "use_ssl", "region", "sender_domain"})

    def connection_kwargs(self) -> dict[str, Any]:
        return {}

    @property
    def name(self) -> str:
        return self.kind

    @classmethod
    def validate_config(cls, credentials: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        """Also refuses a `from_email` that is not exactly one address (a name with a comma
        must be quoted), so a bad sender is refused when the provider is saved, not at send."""
        super().validate_config(credentials, options)
        if credentials.get("from_email"):
            try:
                parse_mailbox(str(credentials["from_email"]))
            except ValueError as exc:
                raise ConfigurationError({"credentials.from_email": [str(exc)]}) from exc

    def sender(self, message: OutboundMessage) -> tuple[str, str]:
        """(address, display name) of the From header: the tenant's sender first, then the
        provider's `from_email`, then DEFAULT_FROM_EMAIL."""
        if message.sender_email:
            return message.sender_email, message.sender_name
        configured = str(self.credentials.get("from_email") or settings.DEFAULT_FROM_EMAIL)
        name, address = parse_mailbox(configured)
        return address, name

    def build_email(self, message: OutboundMessage) -> EmailMultiAlternatives:
        """The Django email of `message`. Its address headers are made by
        email.headerregistry.Address (addresses.format_address), never by formatting text;
        ValueError for an address no mail standard accepts."""
        sender_address, sender_name = self.sender(message)
        from_email = format_address(sender_address, sender_name)
        to = format_address(message.to, message.recipient_name)
        domain = punycode(sender_address.rpartition("@")[2]) or "clarion.local"
        content = message.content
        email = EmailMultiAlternatives(
            subject=content.get("subject", ""),
            body=content.get("text", ""),
            from_email=from_email,
            to=[to],
            headers={
                # Deterministic, so the message can be recognised if it is ever presented twice.
                "Message-ID": f"<{message.id}@{domain}>",
                "X-Clarion-Message-Id": message.id,
                **dict(message.headers),
            },
        )
        if content.get("html"):
            email.attach_alternative(content["html"], "text/html")
        # Read by django-anymail ESP backends (tracking webhooks map events back to the message).
        email.metadata = {"clarion_message_id": message.id}
        if message.workflow_key:
            email.tags = [message.workflow_key]
        return email

    def send(self, message: OutboundMessage, *,
             before_commit: Callable[[Callable[[], None]], None] | None = None) -> SendResult:
        """Send `message` through the kind's backend. `before_commit` (kinds with
        `commits_late`) is called once with `hand_over`, just before the step that hands the
        message over, and must call `hand_over()` to take that step: for SMTP once the message's
        data is sent but its end, `hand_over` sending the end ("<CRLF>.<CRLF>"); for other
        backends just before their send, `hand_over` doing nothing. An exception it raises
        before `hand_over()` stops the send there, nothing handed over."""
        exchange = Exchange(request={"to": message.to,
                                     "subject": message.content.get("subject", "")})
        try:
            email = self.build_email(message)
        except ValueError as exc:
            raise PermanentError(f"Cannot address this email: {exc}", exchange=exchange) from exc
        try:
            connection = get_connection(self.backend or None, fail_silently=False,
                                        **self.connection_kwargs())
            gated = before_commit is not None and isinstance(connection, CommitGatedSMTPBackend)
            if gated:
                connection.before_end_of_data = before_commit
            with connection:
                if before_commit is not None and not gated:
                    before_commit(_nothing)
                connection.send_messages([email])
        except ProviderError:
            raise
        except Exception as exc:
            status = getattr(exc, "status_code", None) or getattr(exc, "smtp_code", None)
            response = getattr(exc, "response", None)
            retry_after = parse_retry_after(
                getattr(response, "headers", {}).get("Retry-After")) if response is not None \
                else None
            error = classify_email_error(exc)(
                f"{type(exc).__name__}: {exc}", retry_after=retry_after,
                status_code=status if isinstance(status, int) and status < 1000 else None,
                exchange=exchange)
            raise error from exc
        status = getattr(email, "anymail_status", None)
        if status is not None and status.message_id:
            return SendResult(provider_message_id=str(status.message_id), exchange=exchange)
        return SendResult(provider_message_id=email.extra_headers["Message-ID"],
                          exchange=exchange)


def _nothing() -> None:
    """The `hand_over` of a backend that hands the message over in one step: its send."""


GATED_SMTP_BACKEND = "notifications.providers.email.CommitGatedSMTPBackend"


class SettingsEmail(EmailProvider):
    """Not selectable: Django's own EMAIL_BACKEND settings, used when no email provider is
    configured. Named after the backend: smtp, console, locmem, sendgrid, postmark… Django's
    SMTP backend is replaced by `CommitGatedSMTPBackend` (the same, with the end of its DATA
    gated), so that it `commits_late` as the SMTP kind does."""

    kind = "settings"

    @property
    def backend(self) -> str:  # type: ignore[override]  (read from the settings at send)
        path = settings.EMAIL_BACKEND
        return GATED_SMTP_BACKEND if path == "django.core.mail.backends.smtp.EmailBackend" \
            else path

    @property
    def commits_late(self) -> bool:  # type: ignore[override]
        return self.backend == GATED_SMTP_BACKEND

    @property
    def name(self) -> str:
        path = settings.EMAIL_BACKEND
        if path.startswith("anymail.backends."):
            return path.split(".")[2]
        return path.rsplit(".", 2)[-2]


@register
class SMTP(EmailProvider):
    kind, label = "smtp", "SMTP"
    backend = GATED_SMTP_BACKEND
    commits_late = True
    credential_fields = ("host",)
    optional_credential_fields = ("port", "username", "password", "use_tls", "use_ssl",
                                  "from_email")
    option_fields = ("timeout",)

    def connection_kwargs(self) -> dict[str, Any]:
        c = self.credentials
        return {"host": c["host"], "port": int(c.get("port") or 25),
                "username": c.get("username") or "", "password": c.get("password") or "",
                "use_tls": bool(c.get("use_tls")), "use_ssl": bool(c.get("use_ssl")),
                "timeout": float(self.options.get("timeout") or 20)}


class AnymailProvider(EmailProvider):
    """An ESP through django-anymail, declared rather than coded: `backend` (anymail's
    EmailBackend path), `credential_fields`/`optional_credential_fields` (the backend's own
    setting names, e.g. anymail's MAILJET_API_KEY → `api_key`: they are passed to the backend as
    keyword settings), `tracking_esp` (the ESP's segment in anymail's tracking webhook URL,
    `/webhooks/anymail/<tracking_esp>/tracking/`; "" where anymail has none) and
    `tracking_settings` (the ANYMAIL_* settings that authenticate that webhook).

    options["base_url"] becomes the backend's `api_url` as anymail documents it (SendGrid
    https://api.sendgrid.com/v3/, Mailgun https://api.eu.mailgun.net/v3 for the EU region…); kinds
    whose API has no fixed address (Postal is self-hosted, Unisender Go's depends on the data
    centre) list it in `required_options`."""

    option_fields = ("base_url",)
    required_options: ClassVar[tuple[str, ...]] = ()
    tracking_esp: ClassVar[str] = ""
    tracking_settings: ClassVar[tuple[str, ...]] = ("ANYMAIL_WEBHOOK_SECRET",)

    @classmethod
    def validate_config(cls, credentials, options) -> None:
        problems: dict[str, list[str]] = {}
        try:
            super().validate_config(credentials, options)
        except ConfigurationError as exc:
            problems = dict(exc.fields)
        for name in cls.required_options:
            if not options.get(name):
                problems.setdefault(f"options.{name}", []).append(
                    f"This option is required: {cls.label}'s API address depends on the account.")
        if problems:
            raise ConfigurationError(problems)

    @classmethod
    def tracking_path(cls) -> str:
        """The path (under PUBLIC_URL) of this ESP's tracking webhook; "" when it has none."""
        return f"/webhooks/anymail/{cls.tracking_esp}/tracking/" if cls.tracking_esp else ""

    def connection_kwargs(self) -> dict[str, Any]:
        kwargs = {name: value for name, value in self.credentials.items()
                  if name != "from_email"}
        if self.options.get("base_url"):
            kwargs["api_url"] = str(self.options["base_url"]).rstrip("/") + "/"
        return kwargs


@register
class SendGrid(AnymailProvider):
    kind, label = "sendgrid", "SendGrid"
    backend = "anymail.backends.sendgrid.EmailBackend"
    tracking_esp = "sendgrid"
    tracking_settings = ("ANYMAIL_SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY",
                         "ANYMAIL_WEBHOOK_SECRET")
    credential_fields = ("api_key",)
    optional_credential_fields = ("from_email",)


@register
class Mailgun(AnymailProvider):
    kind, label = "mailgun", "Mailgun"
    backend = "anymail.backends.mailgun.EmailBackend"
    tracking_esp = "mailgun"
    tracking_settings = ("ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY",)
    credential_fields = ("api_key",)
    optional_credential_fields = ("sender_domain", "from_email")


@register
class Postmark(AnymailProvider):
    kind, label = "postmark", "Postmark"
    backend = "anymail.backends.postmark.EmailBackend"
    tracking_esp = "postmark"
    credential_fields = ("server_token",)
    optional_credential_fields = ("from_email",)


@register
class AmazonSES(AnymailProvider):
    """Amazon SES v2 through anymail and boto3; options["base_url"] becomes boto3's
    endpoint_url."""

    kind, label = "amazon_ses", "Amazon SES"
    backend = "anymail.backends.amazon_ses.EmailBackend"
    tracking_esp = "amazon_ses"
    credential_fields = ("access_key_id", "secret_access_key", "region")
    optional_credential_fields = ("configuration_set_name", "from_email")

    def connection_kwargs(self) -> dict[str, Any]:
        c = self.credentials
        client_params: dict[str, Any] = {"region_name": c["region"]}
        if self.options.get("base_url"):
            client_params["endpoint_url"] = str(self.options["base_url"])
        kwargs: dict[str, Any] = {
            "session_params": {"aws_access_key_id": c["access_key_id"],
                               "aws_secret_access_key": c["secret_access_key"]},
            "client_params": client_params,
        }
        if c.get("configuration_set_name"):
            kwargs["configuration_set_name"] = c["configuration_set_name"]
        return kwargs


def _anymail_kind(kind: str, label: str, credentials: tuple[str, ...],
                  optional: tuple[str, ...] = (), *, tracking: str | None = None,
                  tracking_settings: tuple[str, ...] = ("ANYMAIL_WEBHOOK_SECRET",),
                  required_options: tuple[str, ...] = (),
                  public: frozenset[str] = frozenset()) -> type[AnymailProvider]:
    """Declare and register the anymail ESP `kind` (its backend is
    anymail.backends.<kind>.EmailBackend; its tracking webhook anymail's `<tracking>/tracking/`,
    by default the kind's name, "" for none)."""
    cls = type(label.replace(" ", ""), (AnymailProvider,), {
        "__module__": __name__,
        "__doc__": f"{label} through django-anymail ({kind} backend).",
        "kind": kind, "label": label,
        "backend": f"anymail.backends.{kind}.EmailBackend",
        "credential_fields": credentials,
        "optional_credential_fields": (*optional, "from_email"),
        "public_credential_fields": AnymailProvider.public_credential_fields | public,
        "tracking_esp": kind if tracking is None else tracking,
        "tracking_settings": tracking_settings,
        "required_options": required_options,
    })
    return register(cls)


# The rest of anymail's backends (anymail/backends/), each with the settings its backend reads
# (get_anymail_setting calls in anymail 15) and what authenticates its tracking webhook
# (anymail/webhooks/). `sendinblue` is anymail's old name for Brevo: not a kind of its own.
Brevo = _anymail_kind("brevo", "Brevo", ("api_key",))
MailerSend = _anymail_kind("mailersend", "MailerSend", ("api_token",), ("batch_send_mode",),
                           tracking_settings=("ANYMAIL_MAILERSEND_SIGNING_SECRET",),
                           public=frozenset({"batch_send_mode"}))
Mailjet = _anymail_kind("mailjet", "Mailjet", ("api_key", "secret_key"))
Mailtrap = _anymail_kind("mailtrap", "Mailtrap", ("api_token",), ("sandbox_id",),
                         tracking_settings=("ANYMAIL_MAILTRAP_WEBHOOK_SIGNING_SECRET",
                                            "ANYMAIL_WEBHOOK_SECRET"),
                         public=frozenset({"sandbox_id"}))
Mandrill = _anymail_kind("mandrill", "Mandrill", ("api_key",),
                         tracking_settings=("ANYMAIL_MANDRILL_WEBHOOK_KEY",
                                            "ANYMAIL_MANDRILL_WEBHOOK_URL"))
Postal = _anymail_kind("postal", "Postal", ("api_key",), required_options=("base_url",),
                       tracking_settings=("ANYMAIL_POSTAL_WEBHOOK_KEY",))
Resend = _anymail_kind("resend", "Resend", ("api_key",),
                       tracking_settings=("ANYMAIL_RESEND_SIGNING_SECRET",
                                          "ANYMAIL_WEBHOOK_SECRET"))
Scaleway = _anymail_kind("scaleway", "Scaleway TEM", ("secret_key", "project_id"), ("region",),
                         tracking="", tracking_settings=(),
                         public=frozenset({"project_id", "region"}))
SparkPost = _anymail_kind("sparkpost", "SparkPost", ("api_key",), ("subaccount",),
                          public=frozenset({"subaccount"}))
UnisenderGo = _anymail_kind("unisender_go", "Unisender Go", ("api_key",),
                            required_options=("base_url",),
                            tracking_settings=("ANYMAIL_UNISENDER_GO_API_KEY",))


# --- Tracking webhooks (django-anymail's views) -------------------------------------------------

ANYMAIL_KINDS = {
    "queued": Kind.QUEUED, "sent": Kind.SENT, "rejected": Kind.REJECTED, "failed": Kind.FAILED,
    "bounced": Kind.BOUNCED, "deferred": Kind.DEFERRED, "delivered": Kind.DELIVERED,
    "autoresponded": Kind.UNKNOWN, "opened": Kind.OPENED, "clicked": Kind.CLICKED,
    "complained": Kind.COMPLAINED, "unsubscribed": Kind.UNSUBSCRIBED,
}


def from_anymail(event, esp_name: str) -> StatusEvent:
    """An anymail AnymailTrackingEvent → StatusEvent (of the email channel). Our emails carry
    their Message id in anymail metadata (EmailProvider), so ESPs that echo metadata match it
    exactly."""
    metadata = event.metadata or {}
    description = " ".join(str(part) for part in (event.description, event.mta_response) if part)
    if event.click_url:
        description = description or event.click_url
    return StatusEvent(
        provider_kind=esp_name.lower().replace(" ", "_"),
        kind=ANYMAIL_KINDS.get(event.event_type, Kind.UNKNOWN),
        provider_message_id=str(event.message_id or ""),
        message_id=str(metadata.get("clarion_message_id", "")),
        occurred_at=event.timestamp,
        event_id=str(event.event_id or ""),
        description=description,
        raw=jsonable(event.esp_event),
        channel="email",
    )


class _UnreadablePayload(Exception):
    pass


# What anymail's parsing raises on a body its ESP would never send.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
               RecursionError)


def _guarded(view_class):
    """A subclass of anymail's tracking view `view_class` that refuses with 403 (not anymail's
    400) what fails its authentication, refuses outright when the ESP is authenticated by basic
    auth only and no ANYMAIL_WEBHOOK_SECRET is set (anymail would only warn, and accept anyone's
    events) or when the ESP's signing setting is missing (anymail would raise: a 500), and answers
    400 (not 500) a body the ESP would never send.

    Whether basic auth is needed is the view *instance's* say: SendGrid's view drops the need
    (`warn_if_no_basic_auth`) in its __init__ once its ECDSA verification key is configured."""

    class Guarded(view_class):
        def __init__(self, **kwargs):
            self.unconfigured = ""
            try:
                super().__init__(**kwargs)
            except AnymailConfigurationError as exc:  # e.g. no ANYMAIL_POSTAL_WEBHOOK_KEY
                self.unconfigured = str(exc).splitlines()[0]

        def dispatch(self, request, *args, **kwargs):
            if self.unconfigured:
                logger.warning("anymail webhook not configured: %s", self.unconfigured)
                return error_response(403, "forbidden", "This ESP's tracking webhook is not "
                                      f"configured: {self.unconfigured}")
            if (getattr(self, "warn_if_no_basic_auth", False)
                    and not getattr(self, "basic_auth", None)):
                return error_response(403, "forbidden", "Set ANYMAIL_WEBHOOK_SECRET: this ESP's "
                                      "webhooks are authenticated by basic auth only.")
            try:
                return super().dispatch(request, *args, **kwargs)
            except AnymailWebhookValidationFailure as exc:
                logger.warning("anymail webhook refused: %s", exc)
                return error_response(403, "forbidden", str(exc))
            except _UnreadablePayload:
                return error_response(400, "invalid_request",
                                      f"The body is not a {self.esp_name} tracking payload.")

        def parse_events(self, request):
            try:
                return super().parse_events(request)
            except _UNREADABLE as exc:
                events = self.parse_each(request)
                if events is None:
                    logger.warning("unreadable %s tracking payload: %s: %s", self.esp_name,
                                   type(exc).__name__, exc)
                    raise _UnreadablePayload from exc
                return events

        def parse_each(self, request) -> list | None:
            """A batch (a JSON list, as SendGrid posts) with unreadable events among readable
            ones: the readable ones, each unreadable one logged and skipped, so one bad event
            does not refuse the others (the ESP would retry the whole batch). None when the
            body is not such a list."""
            convert = getattr(self, "esp_to_anymail_event", None)
            try:
                batch = json.loads(request.body)
            except (ValueError, RecursionError):
                return None
            if convert is None or not isinstance(batch, list):
                return None
            events = []
            for index, item in enumerate(batch):
                try:
                    events.append(convert(item))
                except _UNREADABLE as exc:
                    logger.warning("unreadable %s tracking event %d of %d skipped: %s: %s",
                                   self.esp_name, index + 1, len(batch),
                                   type(exc).__name__, exc)
            return events

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{view_class.__name__}"
    return Guarded


def anymail_tracking_patterns() -> list[URLPattern]:
    """anymail's tracking webhook URLs (``<esp>/tracking/``), each view guarded as above. Their
    events reach anymail's `tracking` signal, whose receiver records them."""
    from anymail import urls as anymail_urls

    return [URLPattern(pattern.pattern,
                       _guarded(pattern.callback.view_class).as_view(
                           **pattern.callback.view_initkwargs),
                       pattern.default_args, pattern.name)
            for pattern in anymail_urls.urlpatterns
            if pattern.name and "tracking" in pattern.name]
