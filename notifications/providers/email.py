"""Email: SMTP, and every ESP django-anymail ships a backend for (SendGrid, Mailgun, Postmark,
Amazon SES, Brevo, MailerSend, Mailjet, Mailtrap, Mandrill, Postal, Resend, Scaleway TEM,
SparkPost, Unisender Go).

Every kind builds the same Django EmailMultiAlternatives and sends it through a Django email
backend opened with that kind's credentials, so anymail maps it to each ESP's documented API and
its tracking webhooks find the message again (`metadata.clarion_message_id`). With no email
ProviderConfig at all, `SettingsEmail` sends through Django's EMAIL_BACKEND settings, as the
embedded mode and a plain SMTP setup expect.

SMTP's DATA exchange, gated at its end, is smtp_data.py's; delivery and engagement events come
back through anymail's tracking webhooks (anymail_tracking.py).
"""

import logging
import re
import smtplib
import uuid
from collections.abc import Callable, Mapping
from email.message import Message
from email.policy import Compat32, compat32
from email.utils import formatdate, make_msgid
from typing import Any, ClassVar

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.message import RFC5322_EMAIL_LINE_LENGTH_LIMIT, SafeMIMEText, utf8_charset
from django.core.mail.utils import DNS_NAME
from django.utils.encoding import punycode

from ..addresses import envelope_address, format_address, parse_mailbox
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
from .registry import register
from .smtp_data import GATED_SMTP_BACKEND, CommitGatedSMTPBackend
from .smtp_sessions import session_send

logger = logging.getLogger(__name__)


# One word for compat32's folding: printable ASCII but the space and its split characters
# (email.header.Header.encode's ";, \t").
_ONE_WORD = re.compile(r"[\x21-\x2b\x2d-\x3a\x3c-\x7e]+")
# A multipart part's Content-Type with the boundary `Email` gives it.
_MULTIPART = re.compile(r'(multipart/[a-z0-9]+; boundary=")(={15}[0-9a-f]{32}==)"')
_TEMPLATE_BOUNDARY = "=" * 15 + "0" * 32 + "=="


class OneLineHeaders(Compat32):
    """The standard library's compat32 policy (Django's, for every message it builds), except
    that a header whose value is printable ASCII with no space at either end and fits on one line
    (`max_line_length`) is written as it is, without the `email.header.Header` machinery, which
    returns it unchanged for such a value (~25 µs a header, 10–15 a message); so are two longer
    values every email has, as compat32 folds them: one word too long for the header's line
    (List-Unsubscribe's link), on a line of its own; a multipart Content-Type with `Email`'s
    boundary, folded as the same value with another boundary of the same length was (the fold
    depends on the lengths and on where the spaces and split characters are, none of which a
    boundary's hex digits change). ~16 and ~11 µs a message. Anything else is folded by compat32
    as before."""

    _folded_multipart: ClassVar[dict[tuple, str | None]] = {}

    def _fold(self, name, value, sanitize):
        if isinstance(value, str):
            width = self.max_line_length or 1000000
            if (value.isascii() and value.isprintable() and value[:1] != " "
                    and value[-1:] != " " and len(name) + 2 + len(value) <= width):
                return f"{name}: {value}{self.linesep}"
            if _ONE_WORD.fullmatch(value):
                return f"{name}: {self.linesep} {value}{self.linesep}"
            if (multipart := _MULTIPART.fullmatch(value)) is not None:
                folded = self._multipart_fold(name, multipart.group(1), sanitize)
                if folded is not None:
                    return folded.replace(_TEMPLATE_BOUNDARY, multipart.group(2))
        return super()._fold(name, value, sanitize)

    def _multipart_fold(self, name: str, start: str, sanitize) -> str | None:
        """compat32's fold of `start` + the template boundary + '"' (None when that boundary is
        not in it once, whole), kept per header name, start, line length and line separator."""
        key = (name, start, self.max_line_length, self.linesep, sanitize)
        if key not in self._folded_multipart:
            folded = super()._fold(name, f'{start}{_TEMPLATE_BOUNDARY}"', sanitize)
            self._folded_multipart[key] = (folded if folded.count(_TEMPLATE_BOUNDARY) == 1
                                           else None)
        return self._folded_multipart[key]


ONE_LINE_HEADERS = OneLineHeaders()


class Email(EmailMultiAlternatives):
    """Django's EmailMultiAlternatives whose multipart boundaries are chosen when the message is
    built: a random 128-bit token between the standard library's own '=' runs, so its generator
    does not make one itself (it compiles a regular expression for each message's random
    boundary, to check the boundary against the parts' text: ~40 µs a message). A token drawn
    after the parts were rendered cannot be in them. Its message is written with
    `OneLineHeaders` (the same bytes, less work); `envelope` maps the header values of its
    sender and recipients to their plain addresses (addresses.envelope_address), which
    smtp_data.CommitGatedSMTPBackend puts in the SMTP envelope without parsing them again."""

    envelope: dict[str, str] | None = None

    def message(self):
        """Django 5.2's EmailMessage.message(), its body part built by `text_part`."""
        encoding = self.encoding or settings.DEFAULT_CHARSET
        msg = self._create_message(text_part(self.body, self.content_subtype, encoding))
        set_header(msg, "Subject", self.subject)
        set_header(msg, "From", self.extra_headers.get("From", self.from_email))
        self._set_list_header_if_not_empty(msg, "To", self.to)
        self._set_list_header_if_not_empty(msg, "Cc", self.cc)
        self._set_list_header_if_not_empty(msg, "Reply-To", self.reply_to)
        header_names = [key.lower() for key in self.extra_headers]
        if "date" not in header_names:
            set_header(msg, "Date", formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
        if "message-id" not in header_names:
            set_header(msg, "Message-ID", make_msgid(domain=DNS_NAME))
        for name, value in self.extra_headers.items():
            if name.lower() not in {"from", "to", "cc", "reply-to"}:
                set_header(msg, name, value)
        msg.policy = ONE_LINE_HEADERS
        return msg

    def _create_mime_attachment(self, content, mimetype):
        """Django's, a text alternative built by `text_part`."""
        basetype, _, subtype = mimetype.partition("/")
        if basetype == "text" and isinstance(content, str):
            return text_part(content, subtype, self.encoding or settings.DEFAULT_CHARSET)
        return super()._create_mime_attachment(content, mimetype)

    def _create_message(self, msg):
        msg = super()._create_message(msg)
        for part in msg.walk():
            if part.is_multipart():
                _set_boundary(part, f"==============={uuid.uuid4().hex}==")
        return msg


def set_header(msg: Message, name: str, value: Any) -> None:
    """`msg[name] = value` for Django's SafeMIMEText / SafeMIMEMultipart, whose `__setitem__`
    passes the value through `forbid_multi_line_headers` first: a str of printable ASCII (no
    line break) comes out of it as it is, except a Subject, which it gives to
    `email.header.Header(value).encode()`, itself the same value when it has no space at either
    end and at most 76 characters (Header's line). Such values are set directly, without either
    (~10 µs for a Subject, ~2 for another header); anything else through Django as before."""
    if isinstance(value, str) and value.isascii() and value.isprintable() and (
            name.lower() != "subject"
            or (len(value) <= 76 and value[:1] != " " and value[-1:] != " ")):
        Message.__setitem__(msg, name, value)
    else:
        msg[name] = value


def _set_boundary(part: Message, boundary: str) -> None:
    """`part.set_boundary(boundary)` unless it has one: the same Content-Type header, written
    directly for a part as MIMEMultipart makes it (one Content-Type, "multipart/<subtype>"
    without parameters), which Message.set_boundary would parse and rebuild (~25 µs)."""
    found = [i for i, (name, _) in enumerate(part._headers) if name.lower() == "content-type"]
    if len(found) == 1:
        name, value = part._headers[found[0]]
        if isinstance(value, str) and value.startswith("multipart/") and value.isascii() \
                and value[10:].isalnum():
            part._headers[found[0]] = (name, f'{value}; boundary="{boundary}"')
            return
    if part.get_boundary() is None:
        part.set_boundary(boundary)


def text_part(text: str, subtype: str, encoding: str) -> SafeMIMEText:
    """Django's `SafeMIMEText(text, subtype, encoding)` (a text/`subtype` part), the same object
    (headers, payload, charset) built without the email package's parameter parsing when
    `encoding` is "utf-8" and no line of `text` is over RFC 5322's 998 bytes: its
    Content-Type `text/<subtype>; charset="utf-8"`, MIME-Version 1.0, and a
    Content-Transfer-Encoding of 7bit for ASCII text, 8bit otherwise (email.encoders.
    encode_7or8bit, Django's `utf8_charset` having no body encoding); the payload is the text's
    UTF-8 bytes as surrogate-escaped ASCII (email.message.Message.set_payload). ~55 → ~10 µs a
    part. Any other part (another charset, long lines, which Django quotes-printable, text that
    is not valid Unicode) is built by SafeMIMEText as before."""
    try:
        data = text.encode("utf-8") if encoding == "utf-8" else None
    except UnicodeEncodeError:  # a lone surrogate: SafeMIMEText raises it as before
        data = None
    if data is None or any(len(line) > RFC5322_EMAIL_LINE_LENGTH_LIMIT
                           for line in data.splitlines()):
        return SafeMIMEText(text, subtype, encoding)
    part = SafeMIMEText.__new__(SafeMIMEText)
    Message.__init__(part, compat32)
    part.encoding = encoding
    part._headers = [("Content-Type", f'text/{subtype}; charset="utf-8"'),
                     ("MIME-Version", "1.0"),
                     ("Content-Transfer-Encoding", "7bit" if data.isascii() else "8bit")]
    part._payload = data.decode("ascii", "surrogateescape")
    part._charset = utf8_charset
    return part


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

    def build_email(self, message: OutboundMessage) -> Email:
        """The Django email of `message`. Its address headers are made by
        email.headerregistry.Address (addresses.format_address), never by formatting text;
        ValueError for an address no mail standard accepts."""
        sender_address, sender_name = self.sender(message)
        from_email = format_address(sender_address, sender_name)
        to = format_address(message.to, message.recipient_name)
        domain = punycode(sender_address.rpartition("@")[2]) or "clarion.local"
        content = message.content
        email = Email(
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
        email.envelope = {value: address for value, address in (
            (from_email, envelope_address(sender_address)), (to, envelope_address(message.to)))
            if address}
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
        data is sent but its end, `hand_over` sending the end ("<CRLF>.<CRLF>"), over a
        connection kept open across messages (smtp_sessions.py); for other backends just
        before their send, `hand_over` doing nothing. An exception it raises before
        `hand_over()` stops the send there, nothing handed over."""
        exchange = Exchange(request={"to": message.to,
                                     "subject": message.content.get("subject", "")})
        try:
            email = self.build_email(message)
        except ValueError as exc:
            raise PermanentError(f"Cannot address this email: {exc}", exchange=exchange) from exc
        try:
            connection = get_connection(self.backend or None, fail_silently=False,
                                        **self.connection_kwargs())
            if before_commit is not None and isinstance(connection, CommitGatedSMTPBackend):
                # Over a connection kept open for this server and these credentials.
                session_send(connection, email, before_commit)
            else:
                with connection:
                    if before_commit is not None:
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
