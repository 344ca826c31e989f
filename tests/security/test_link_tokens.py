"""Preference and unsubscribe links cannot be re-pointed: a token's payload (recipient, tenant,
workflow, category) rewritten to another person or category, with the original signature kept,
is refused (404) and changes nothing; a center token is no unsubscribe token and the reverse; an
expired token is refused; a valid one-click unsubscribe changes only its own recipient and
category. (Forged and stale links, lifetimes: tests/preferences/test_center.py, test_email.py.)"""

import base64
import json
import zlib

import pytest
from django.core import signing
from django.test import Client

from notifications.services import recipient_upsert
from preferences.models import PreferenceSet
from preferences.tokens import center_token, unsubscribe_token

pytestmark = pytest.mark.django_db


def rewritten(token: str, **changes) -> str:
    """`token` with its payload changed by `changes`, its signature kept (as an attacker can)."""
    payload, _, signature = token.partition(":")  # "payload:timestamp:signature"
    compressed = payload.startswith(".")
    raw = base64.urlsafe_b64decode(payload.lstrip(".") + "=" * (-len(payload.lstrip(".")) % 4))
    data = json.loads(zlib.decompress(raw) if compressed else raw)
    data.update(changes)
    body = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + ":" + signature


@pytest.fixture
def people(db):
    return (recipient_upsert(external_id="r1", name="One")[0],
            recipient_upsert(external_id="r2", name="Two")[0])


def one_click(token: str):
    return Client().post(f"/u/{token}/", "List-Unsubscribe=One-Click",
                         content_type="application/x-www-form-urlencoded")


def test_the_helper_really_rewrites_the_payload(people):
    one, two = people
    token = unsubscribe_token(recipient_id=one.pk, tenant_id=None, workflow_key="news",
                              category="marketing")
    assert signing.loads(token, salt="clarion.preferences.unsubscribe")["r"] == one.pk
    with pytest.raises(signing.BadSignature):
        signing.loads(rewritten(token, r=two.pk), salt="clarion.preferences.unsubscribe")


@pytest.mark.parametrize("changes", [{"r": "two"}, {"c": "billing"}, {"w": "other"},
                                     {"t": 1}])
def test_an_unsubscribe_token_cannot_be_repointed(people, changes):
    one, two = people
    token = unsubscribe_token(recipient_id=one.pk, tenant_id=None, workflow_key="news",
                              category="marketing")
    changes = {k: (two.pk if v == "two" else v) for k, v in changes.items()}
    assert one_click(rewritten(token, **changes)).status_code == 404
    assert Client().get(f"/u/{rewritten(token, **changes)}/").status_code == 404
    assert not PreferenceSet.objects.exists()


def test_a_center_token_cannot_be_repointed_to_another_person(people):
    one, two = people
    token = center_token(recipient_id=one.pk, tenant_id=None)
    forged = rewritten(token, r=two.pk)
    assert Client().get(f"/p/{forged}/").status_code == 404
    assert Client().post(f"/p/{forged}/", {"channel:email": "off"}).status_code == 404
    assert not PreferenceSet.objects.exists()


def test_tokens_of_one_kind_do_not_open_the_other(people):
    one, _ = people
    center = center_token(recipient_id=one.pk, tenant_id=None)
    unsubscribe = unsubscribe_token(recipient_id=one.pk, tenant_id=None, workflow_key="news",
                                    category="marketing")
    assert one_click(center).status_code == 404
    assert Client().get(f"/p/{unsubscribe}/").status_code == 404
    assert not PreferenceSet.objects.exists()


def test_an_expired_unsubscribe_token_is_refused(people, clarion_settings, settings):
    one, _ = people
    token = unsubscribe_token(recipient_id=one.pk, tenant_id=None, workflow_key="news",
                              category="marketing")
    key = next(k for k in settings.CLARION if "TOKEN" in k and "AGE" in k)
    clarion_settings(**{key: -1})
    assert one_click(token).status_code == 404
    assert not PreferenceSet.objects.exists()


def test_a_valid_one_click_changes_only_its_recipient_and_category(people):
    one, two = people
    token = unsubscribe_token(recipient_id=one.pk, tenant_id=None, workflow_key="news",
                              category="marketing")
    assert one_click(token).status_code == 200
    row = PreferenceSet.objects.get()
    assert row.recipient_id == one.pk and row.tenant_id is None
    assert set(row.categories) == {"marketing"} and not row.workflows
    assert not PreferenceSet.objects.filter(recipient=two).exists()


@pytest.mark.parametrize("make, payload, salt", [
    (lambda: center_token(recipient_id=7, tenant_id=None), {"r": 7, "t": None},
     "clarion.preferences.center"),
    (lambda: center_token(recipient_id=8, tenant_id=3), {"r": 8, "t": 3},
     "clarion.preferences.center"),
    (lambda: unsubscribe_token(recipient_id=7, tenant_id=2, workflow_key="wf-é",
                               category="billing"),
     {"r": 7, "t": 2, "w": "wf-é", "c": "billing"}, "clarion.preferences.unsubscribe"),
])
def test_tokens_are_byte_for_byte_those_of_signing_dumps(make, payload, salt, monkeypatch,
                                                         settings):
    """The links' signer (its HMAC keyed once per salt and SECRET_KEY) writes exactly the tokens
    Django's signing.dumps does, so links sent before and after it open the same pages; a
    changed SECRET_KEY signs with the new key."""
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: "1tK4Xb")
    assert make() == signing.dumps(payload, salt=salt)
    assert signing.loads(make(), salt=salt) == payload
    old = make()
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert make() != old
    assert make() == signing.dumps(payload, salt=salt)
    with pytest.raises(signing.BadSignature):
        signing.loads(old, salt=salt)
