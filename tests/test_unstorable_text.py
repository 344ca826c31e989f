"""Text no column can store — NUL (PostgreSQL's text and jsonb refuse it) and unpaired
surrogates (no UTF-8 form) — is refused by the JSON parser on every endpoint with a 400 that names
the field, and nothing is written; it used to reach the database as a 500 on PostgreSQL."""

import json

import pytest

from clarion.parsers import unstorable_text
from notifications.models import Recipient, Trigger

from .conftest import in_app_step

NUL = "Text cannot contain NUL (\\u0000)."
SURROGATE = ("Text cannot contain an unpaired surrogate (such as \\ud800 alone): it is not a "
             "character.")


@pytest.mark.parametrize(("document", "found"), [
    ({"data": {"note": "a\x00b"}}, ("data.note", NUL)),
    ({"recipients": ["ok", "x\ud800"]}, ("recipients[1]", SURROGATE)),
    ({"data": {"items": [{"n": 1}, {"note": ["fine", "\udfff"]}]}},
     ("data.items[1].note[1]", SURROGATE)),
    ("\x00", ("body", NUL)),
    ({"data": {"k\x00": 1}}, ("data.k\\u0000", "This key cannot contain NUL (\\u0000).")),
    ({"data": {"emoji": "😀", "é": ["ok"]}}, None),
])
def test_the_first_unstorable_text_is_found_with_its_path(document, found):
    assert unstorable_text(document) == found


def raw_post(client, path, text: str, key: str):
    # json.dumps escapes NUL and surrogates as \u0000 and \ud800: what a client sends.
    return client.post(path, data=text, content_type="application/json",
                       headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"recipients": ["ada"], "data": {"comment": "hi\x00"}}, "data.comment", NUL),
    ({"recipients": ["ada\ud83d"]}, "recipients[0]", SURROGATE),
    ({"recipients": [{"id": "ada", "name": "Ada \udc00"}]}, "recipients[0].name", SURROGATE),
    ({"recipients": ["ada"], "actor": {"id": "x", "data": {"bio": "\x00"}}}, "actor.data.bio",
     NUL),
])
def test_the_trigger_refuses_unstorable_text_naming_the_field(client, api_key, make_workflow,
                                                                body, field, message):
    make_workflow("ping", steps=[in_app_step(body="hi")])
    response = raw_post(client, "/api/v1/workflows/ping/trigger", json.dumps(body),
                        api_key[1])
    assert response.status_code == 400
    assert response.json()["fields"] == {field: [message]}
    assert not Trigger.objects.exists() and not Recipient.objects.exists()


def test_other_endpoints_refuse_it_too(client, api_key):
    response = client.put("/api/v1/recipients/ada", data=json.dumps({"name": "\x00"}),
                          content_type="application/json",
                          headers={"Authorization": f"Bearer {api_key[1]}"})
    assert (response.status_code, response.json()["fields"]) == (400, {"name": [NUL]})
    assert not Recipient.objects.exists()
