"""JSON has types: a scalar of the wrong type in a request body is a 400 naming the field, not
coerced (DRF alone stores {"name": 5} as "5" and {"urgent": "yes"} as true)."""

import pytest

from .conftest import in_app_step, invalid

NOT_TEXT = "Not a valid string."
NOT_BOOLEAN = "Must be a valid boolean."
NOT_INTEGER = "A valid integer is required."


@pytest.mark.parametrize(("body", "fields"), [
    ({"name": 5}, {"name": [NOT_TEXT]}),
    ({"name": True}, {"name": [NOT_TEXT]}),
    ({"name": "Ada", "email": ["ada@example.com"]}, {"email": ["Enter a valid email address."]}),
    ({"name": "Ada", "locale": 1.5}, {"locale": [NOT_TEXT]}),
])
def test_recipient_text_fields_refuse_other_types(api, body, fields):
    response = api.put("/api/v1/recipients/ada", body)
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert api.get("/api/v1/recipients/ada").status_code == 404


def test_a_numeric_recipient_id_is_still_text(api, make_workflow):
    make_workflow("ping", steps=[in_app_step(body="hi")])
    response = api.post("/api/v1/workflows/ping/trigger",
                        {"recipients": [{"id": 42, "name": "Ada"}]})
    assert response.status_code == 202
    assert response.json()["runs"][0]["recipient"] == "42"


@pytest.mark.parametrize(("step", "field", "message"), [
    ({"ref": "a", "type": "in_app", "urgent": "yes"}, "steps[0].urgent", NOT_BOOLEAN),
    ({"ref": "a", "type": "in_app", "urgent": 1}, "steps[0].urgent", NOT_BOOLEAN),
    ({"ref": 7, "type": "in_app"}, "steps[0].ref", NOT_TEXT),
])
def test_workflow_steps_refuse_coercible_values(api, step, field, message):
    step = {**step, "templates": {"en": {"body": "hi"}}}
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [step]})
    assert response.status_code == 400
    assert response.json()["fields"][field] == [message]


TWILIO = {"channel": "sms", "kind": "twilio", "credentials": {
    "account_sid": "AC0123456789abcdef0123456789abcdef", "auth_token": "0123456789",
    "from": "+15550001111"}}


@pytest.mark.parametrize("priority", ["5", 5.5, True])
def test_integers_refuse_text_fractions_and_booleans(api, priority):
    response = api.put("/api/v1/providers/sms-main", {**TWILIO, "priority": priority})
    assert response.status_code == 400
    assert response.json()["fields"] == {"priority": [NOT_INTEGER]}
    response = api.put("/api/v1/providers/sms-main", {**TWILIO, "priority": 5})
    assert response.status_code == 201, response.json()
