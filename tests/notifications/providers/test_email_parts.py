"""providers.email builds the text parts and the multipart boundary of an email without the email
package's parameter parsing (`text_part`, `_set_boundary`): the same objects and the same bytes as
Django's own EmailMultiAlternatives, over generated texts (line ends, dots, non-ASCII, lines over
RFC 5322's 998 bytes, which Django writes quoted-printable, Unicode line separators, a lone
surrogate) and emails (with and without a body, alternatives, attachments)."""

import itertools
import random
import uuid

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.message import SafeMIMEText

from notifications.providers import email as email_module
from notifications.providers.email import ONE_LINE_HEADERS, Email, text_part

PIECES = ["a", "b", " ", "\n", "\r", "\r\n", ".", "é", "€", "😀", "\x0b", "\u2028", "\x85",
          "=", "\t", "\x00", "x" * 50, "y" * 500]


def texts(seed: int, count: int, longest: int):
    rng = random.Random(seed)
    for _ in range(count):
        yield "".join(rng.choice(PIECES) for _ in range(rng.randint(0, longest)))


@pytest.mark.parametrize("subtype", ["plain", "html"])
def test_a_text_part_is_djangos_safemimetext(subtype):
    for text in [*texts(5, 5000, 60), "", "z" * 998, "z" * 999, "é" * 499 + "z"]:
        ours, django = text_part(text, subtype, "utf-8"), SafeMIMEText(text, subtype, "utf-8")
        assert type(ours) is type(django)
        assert vars(ours) == vars(django), text
        assert ours._charset is django._charset  # Django's utf8_charset, or its QP one
        assert ours.as_bytes(linesep="\r\n") == django.as_bytes(linesep="\r\n")


def test_a_lone_surrogate_or_another_charset_is_left_to_safemimetext():
    with pytest.raises(UnicodeEncodeError):
        SafeMIMEText("a\ud800b", "plain", "utf-8")
    with pytest.raises(UnicodeEncodeError):
        text_part("a\ud800b", "plain", "utf-8")
    ours, django = text_part("é", "plain", "iso-8859-1"), SafeMIMEText("é", "plain", "iso-8859-1")
    assert ours.as_bytes() == django.as_bytes()


class DjangoEmail(EmailMultiAlternatives):
    """What Email replaced: Django's message and its boundaries set by Message.set_boundary."""

    def message(self):
        msg = super().message()
        msg.policy = ONE_LINE_HEADERS
        return msg

    def _create_message(self, msg):
        msg = super()._create_message(msg)
        for part in msg.walk():
            if part.is_multipart() and part.get_boundary() is None:
                part.set_boundary(f"==============={uuid.uuid4().hex}==")
        return msg


def test_an_email_is_written_as_djangos_with_the_same_boundaries(monkeypatch):
    rng = random.Random(7)
    bodies, subjects = texts(8, 2000, 40), texts(9, 2000, 8)
    for i in range(2000):
        subject = "".join(c if c.isprintable() else " " for c in next(subjects))
        fields = {"subject": subject, "body": next(bodies) if rng.random() < 0.8 else "",
                  "from_email": "Clarion <noreply@clarion.local>", "to": [f"U{i} <u{i}@x.org>"],
                  "headers": {"Message-ID": f"<{i}@x>", "Date": "Thu, 03 Dec 2026 14:07:25 -0000",
                              "List-Unsubscribe": f"<https://x/{'a' * rng.randint(1, 120)}>"}}
        alternatives = [(next(texts(i, 1, 40)), "text/html")] if rng.random() < 0.8 else []
        attachments = [("f.txt", next(texts(-i, 1, 20)), "text/plain")] \
            if rng.random() < 0.2 else []
        written = []
        for cls in (DjangoEmail, Email):
            email = cls(**fields)
            for alternative in alternatives:
                email.attach_alternative(*alternative)
            for attachment in attachments:
                email.attach(*attachment)
            boundaries = (uuid.UUID(int=n) for n in itertools.count(i * 10))
            monkeypatch.setattr(email_module.uuid, "uuid4", lambda b=boundaries: next(b))
            written.append(email.message().as_bytes(linesep="\r\n"))
        assert written[0] == written[1], fields
