"""The sending thread's shortcuts give what the standard library and Django give: the folding
of a long one-word header and of a multipart Content-Type (OneLineHeaders against compat32),
the headers set without Django's `forbid_multi_line_headers` (email.set_header against
`msg[name] = value`), and the wait for a writable socket (smtp_data._wait_writable). Whole
sessions and whole emails are compared byte for byte in test_smtp_data.py and
test_email_parts.py."""

import random
import socket
import uuid
from email._policybase import compat32
from email.header import Header

import pytest
from django.core.mail.message import SafeMIMEMultipart, SafeMIMEText

from notifications.providers.email import ONE_LINE_HEADERS, set_header
from notifications.providers.smtp_data import _wait_writable


def test_one_word_and_multipart_headers_are_folded_as_compat32_folds_them():
    """A word longer than its line (any printable ASCII but the space, "," and ";"), and a
    multipart Content-Type with Email's boundary, at several line separators and names long and
    short: the same text as compat32's."""
    rng = random.Random(7)
    alphabet = "abc:/.-_=?<>!~\"'()@#%&*+"
    compared = 0
    for linesep in ("\r\n", "\n"):
        fast, slow = ONE_LINE_HEADERS.clone(linesep=linesep), compat32.clone(linesep=linesep)
        for _ in range(10000):
            name = rng.choice(["List-Unsubscribe", "Content-Type",
                               "X-" + "h" * rng.choice([1, 70, 76, 77, 80])])
            if rng.random() < 0.5:
                value = "".join(rng.choice(alphabet) for _ in range(
                    rng.choice([1, 50, 59, 60, 61, 62, 77, 78, 79, 100, 300, 1000])))
            else:
                token = uuid.UUID(int=rng.getrandbits(128)).hex
                subtype = rng.choice(["alternative", "mixed", "related", "x1"])
                value = f'multipart/{subtype}; boundary="==============={token}=="'
            assert fast.fold_binary(name, value) == slow.fold_binary(name, value), (name, value)
            assert fast.fold(name, value) == slow.fold(name, value), (name, value)
            compared += 1
    assert compared == 20000


def test_a_header_is_set_as_djangos_safemime_sets_it():
    """Subjects and other values around Header's 76 characters, with spaces at either end,
    runs of spaces, encoded-word look-alikes, non-ASCII and line breaks (which Django refuses):
    the same headers, or the same error, as `msg[name] = value`."""
    rng = random.Random(9)
    alphabet = "ab =?:;,\"()<>@.-"
    for i in range(20000):
        name = rng.choice(["Subject", "subject", "From", "List-Unsubscribe", "X-Tag"])
        value = "".join(rng.choice(alphabet if rng.random() < 0.5 else "ab  ")
                        for _ in range(rng.choice([0, 1, 10, 70, 75, 76, 77, 78, 120])))
        if i % 50 == 0:
            value += rng.choice(["é", "\n", "\r", "\t", "😀"])
        ours, theirs = SafeMIMEText("x", "plain", "utf-8"), SafeMIMEText("x", "plain", "utf-8")
        if i % 2:
            ours, theirs = SafeMIMEMultipart(encoding="utf-8"), SafeMIMEMultipart(encoding="utf-8")
        try:
            theirs[name] = value
        except Exception as exc:  # noqa: BLE001  (Django refuses it: so must set_header)
            with pytest.raises(type(exc)):
                set_header(ours, name, value)
            continue
        set_header(ours, name, value)
        assert ours._headers == theirs._headers, (name, value)


def test_an_ascii_subject_of_76_characters_is_what_header_encodes():
    for subject in ["Your invoice is ready", "x" * 76, "a  b", "=?utf-8?q?x?=", "a ;b, c"]:
        msg = SafeMIMEText("x", "plain", "utf-8")
        set_header(msg, "Subject", subject)
        assert msg["Subject"] == Header(subject).encode() == subject


def test_a_writable_socket_is_waited_for_once_and_a_full_one_times_out():
    ours, theirs = socket.socketpair()
    try:
        ours.settimeout(0.2)
        _wait_writable(ours)  # an empty send buffer: at once
        ours.setblocking(False)
        try:
            while True:
                ours.send(b"x" * 65536)
        except BlockingIOError:
            pass
        ours.settimeout(0.2)
        with pytest.raises(TimeoutError, match="did not read the message's data in time"):
            _wait_writable(ours)
        while theirs.recv(1 << 20, socket.MSG_DONTWAIT) if _readable(theirs) else b"":
            pass
        _wait_writable(ours)  # read on the other side: writable again
    finally:
        ours.close()
        theirs.close()


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])
