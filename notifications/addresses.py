"""Email addresses built from people's data: a tenant's sender, a recipient's name.

A header value is always made by the standard library's address object
(`email.headerregistry.Address`, RFC 5322 §3.4), which quotes and escapes a display name with
`,` `(` `)` `"` `\\` `<` `>` and the like; it is never assembled as text. Non-ASCII stays Unicode in
the value: Django's SMTP backend encodes it as RFC 2047 words, anymail hands it to the ESP's API
as a JSON or form string.

What could not arrive as given is refused when it is saved (the validators below, used by the
models, the API serializers and the admin forms), never at send time.
"""

import functools
import re
import unicodedata
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.utils import unquote

from django.conf import settings
from django.core.checks import Error
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

# Unicode categories that cannot be in a one-line header: controls (CR, LF, NUL, TAB…) and the
# line and paragraph separators.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def _control_problem(text: str) -> str:
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return (f"must be one line of text without control characters "
                    f"(found U+{ord(char):04X})")
    return ""


def display_name_problem(name: str) -> str:
    """Why `name` cannot be an email display name exactly as given, or "" when it can.

    Refused: control characters and line breaks (a header is one line; RFC 5322 §2.2), and
    `=?` (mail programs would decode it as an RFC 2047 encoded word and show something else).
    """
    problem = _control_problem(name)
    if problem:
        return problem
    if "=?" in name:
        return "cannot contain '=?' (mail programs would read it as an encoded word)"
    return ""


def _address(email: str, name: str = "") -> Address:
    # Address(addr_spec=…) mishandles a non-ASCII addr-spec (python/cpython#81074): split it.
    username, at, domain = email.rpartition("@")
    if not at or not username or not domain:
        raise ValueError(f"{email!r} is not an email address (user@domain)")
    try:
        return Address(display_name=name, username=unquote(username), domain=domain)
    except (HeaderParseError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(f"{email!r} is not an email address: {exc}") from exc


# An addr-spec made of dot-atoms of letters, digits and `_ + -` (RFC 5322 §3.4.1, a subset of
# atext): the header parser reads it back unchanged and without defects, so it needs no parse
# (which costs a trigger request about 0.2 ms a recipient). Anything else takes the full check.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
                            r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*", re.ASCII)


def email_address_problem(email: str) -> str:
    """Why `email` cannot be used as the address of an email header, or "" when it can."""
    if _PLAIN_ADDRESS.fullmatch(email):
        return ""
    problem = _control_problem(email)
    if problem:
        return problem
    try:
        address = _address(email)
        # The header parser must read back exactly one mailbox with this address.
        parsed = policy.default.header_factory("To", str(address))
    except (HeaderParseError, IndexError, ValueError) as exc:
        return f"is not an email address the mail standards accept ({exc})"
    if parsed.defects or len(parsed.addresses) != 1 or \
            parsed.addresses[0].addr_spec != address.addr_spec:
        return "is not an email address the mail standards accept"
    return ""


def envelope_address(email: str) -> str:
    """`email` when it is a plain address (a dot-atom of letters, digits and `_ + -` at a
    domain of ASCII labels under 64 characters), else "". A plain address is what Django's SMTP
    backend would put in the envelope (MAIL FROM, RCPT TO) for any header value naming it, so
    the email need not be parsed again for it (`sanitize_address`, ~0.13 ms an address):
    smtplib keeps only the address of what it is given, and Django's IDNA encoding leaves such
    a domain as it is."""
    if not _PLAIN_ADDRESS.fullmatch(email):
        return ""
    if any(len(label) > 63 for label in email.rpartition("@")[2].split(".")):
        return ""  # the IDNA codec refuses it: Django's backend raises
    return email


def format_address(email: str, name: str = "") -> str:
    """The header value of one mailbox: `"Support, Inc. (EU)" <help@example.com>`, or the bare
    address when there is no name.

    `email` must pass `email_address_problem` (ValueError otherwise). A `name` that
    `display_name_problem` refuses is left out rather than failing the send, for rows saved
    before that rule.
    """
    problem = email_address_problem(email)
    if problem:
        raise ValueError(f"{email!r} {problem}")
    if display_name_problem(name):
        name = ""
    return str(_address(email, name))


@functools.lru_cache(maxsize=256)
def parse_mailbox(value: str) -> tuple[str, str]:
    """(display name, address) of a header value that holds exactly one mailbox, as an admin
    types it (`Acme <hello@acme.test>`, `"Acme, Inc." <hello@acme.test>`); ValueError otherwise.
    Remembered for the last 256 values: every email without a tenant's sender parses the same
    configured one (~0.15 ms a parse)."""
    problem = _control_problem(value)
    if problem:
        raise ValueError(problem)
    header = policy.default.header_factory("From", value)
    if header.defects or len(header.addresses) != 1:
        raise ValueError("expected one address, like hello@example.com or "
                         '"Acme, Inc." <hello@example.com> (quote a name holding , ; : ( ) < > '
                         '@ " \\ [ ] or .)')
    mailbox = header.addresses[0]
    problem = email_address_problem(mailbox.addr_spec) or display_name_problem(
        mailbox.display_name)
    if problem:
        raise ValueError(problem)
    return mailbox.display_name, mailbox.addr_spec


def validate_display_name(value: str) -> None:
    """Django/DRF field validator: a name that is shown as an email display name."""
    problem = display_name_problem(value or "")
    if problem:
        raise ValidationError(f"This name {problem}.", code="invalid")


def validate_email_address(value: str) -> None:
    """Django/DRF field validator, on top of EmailValidator: usable in an email header. What
    EmailValidator refuses is left to it, so each problem is reported once."""
    if not value:
        return
    try:
        validate_email(value)
    except ValidationError:
        return
    problem = email_address_problem(value)
    if problem:
        raise ValidationError(f"This address {problem}.", code="invalid")


def check_default_from_email(app_configs=None, **kwargs) -> list[Error]:
    """System check: DEFAULT_FROM_EMAIL, the sender when neither tenant nor provider names one,
    is exactly one address, so a bad value stops the server from starting instead of failing
    every email."""
    try:
        parse_mailbox(str(settings.DEFAULT_FROM_EMAIL))
    except ValueError as exc:
        return [Error(f"DEFAULT_FROM_EMAIL {settings.DEFAULT_FROM_EMAIL!r}: {exc}",
                      hint='Quote a name holding punctuation: "Acme, Inc." <hello@acme.com>',
                      id="notifications.E001")]
    return []
