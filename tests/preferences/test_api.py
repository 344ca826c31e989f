"""Server API: GET/PUT/PATCH of a recipient's (and a tenant's) PreferenceSet, in Knock's shape."""

import pytest

from notifications.services import recipient_upsert
from preferences.models import PreferenceSet

from ..conftest import invalid

URL = "/api/v1/recipients/u1/preferences"
KNOCK = {
    "channel_types": {"email": False},
    "categories": {"marketing": False, "account": {"channel_types": {"sms": False}}},
    "workflows": {"welcome": {"channel_types": {"email": False}}},
}
EMPTY = {"tenant": None, "channel_types": {}, "categories": {}, "workflows": {},
         "quiet_hours": None}


@pytest.fixture
def ada(db):
    return recipient_upsert(external_id="u1", name="Ada")[0]


def test_get_of_a_person_who_decided_nothing_is_an_empty_set(api, ada):
    response = api.get(URL)
    assert response.status_code == 200
    assert response.json() == EMPTY


def test_put_stores_knocks_preference_set_and_get_returns_it(api, ada):
    response = api.put(URL, KNOCK)
    assert response.status_code == 200, response.content
    assert response.json() == {**EMPTY, **KNOCK}
    assert api.get(URL).json() == {**EMPTY, **KNOCK}


def test_a_set_exported_from_knock_is_accepted_with_its_channel_names(api, ada):
    exported = {"__typename": "PreferenceSet", "id": "default",
                "channel_types": {"in_app_feed": False, "http": True}, "categories": {},
                "workflows": {}}
    response = api.put(URL, exported)
    assert response.status_code == 200, response.content
    assert response.json()["channel_types"] == {"in_app": False, "webhook": True}


def test_put_replaces_the_whole_set(api, ada):
    api.put(URL, {**KNOCK, "quiet_hours": {"start": "22:00", "end": "08:00"}})
    response = api.put(URL, {"categories": {"marketing": True}})
    assert response.json() == {**EMPTY, "categories": {"marketing": True}}


def test_patch_merges_section_by_section_and_entry_by_entry(api, ada):
    api.put(URL, KNOCK)
    response = api.patch(URL, {
        "channel_types": {"sms": False},
        "categories": {"account": {"channel_types": {"email": False}},
                       "marketing": {"channel_types": {"push": True}}},
        "quiet_hours": {"start": "21:30", "end": "07:00"},
    })
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["channel_types"] == {"email": False, "sms": False}
    assert body["categories"]["account"] == {"channel_types": {"sms": False, "email": False}}
    # Merging a channel into `false` keeps every other channel off.
    marketing = body["categories"]["marketing"]["channel_types"]
    assert marketing["push"] is True
    assert {c: v for c, v in marketing.items() if c != "push"} == {
        "email": False, "sms": False, "chat": False, "whatsapp": False, "in_app": False,
        "webhook": False}
    assert body["workflows"] == KNOCK["workflows"]
    assert body["quiet_hours"] == {"start": "21:30", "end": "07:00"}


def test_a_get_body_can_be_put_back_unchanged(api, ada, acme):
    api.put(f"{URL}?tenant=acme", KNOCK)
    body = api.get(f"{URL}?tenant=acme").json()
    assert body["tenant"] == "acme"
    assert api.put(f"{URL}?tenant=acme", body).json() == body


def test_the_tenant_parameter_writes_the_persons_set_for_that_tenant(api, ada, acme):
    api.put(URL, {"channel_types": {"email": False}})
    api.put(f"{URL}?tenant=acme", {"channel_types": {"email": True}})
    assert api.get(URL).json()["channel_types"] == {"email": False}
    assert api.get(f"{URL}?tenant=acme").json()["channel_types"] == {"email": True}
    assert PreferenceSet.objects.filter(recipient=ada).count() == 2


@pytest.mark.parametrize(("body", "fields"), [
    ({"channel_types": {"email": "no"}}, {"channel_types.email": ["Expected true or false."]}),
    ({"channel_types": {"fax": False}}, {"channel_types.fax": [
        "Unknown channel; expected one of email, sms, push, chat, whatsapp, in_app, webhook."]}),
    ({"channel_types": []}, {"channel_types": ["Expected an object of channel: true/false."]}),
    ({"categories": {"marketing": {"channel_types": {"sms": 1}}}},
     {"categories.marketing.channel_types.sms": ["Expected true or false."]}),
    ({"categories": {"marketing": {"conditions": []}}},
     {"categories.marketing.conditions": ["Unknown field; expected one of: channel_types."]}),
    ({"workflows": {"welcome": "off"}},
     {"workflows.welcome": ['Expected true, false or {"channel_types": {…}}.']}),
    ({"workflows": {"bad key!": False}}, {"workflows.bad key!": ["Not a valid workflow key."]}),
    ({"quiet_hours": {"start": "25:00", "end": "08:00"}},
     {"quiet_hours.start": ["Expected a 24-hour time like 22:00."]}),
    ({"quiet_hours": {"start": "08:00", "end": "08:00"}},
     {"quiet_hours.end": ["The end must differ from the start."]}),
    ({"quiet_hours": "night"},
     {"quiet_hours": ['Expected null, false or {"start": "22:00", "end": "08:00"}.']}),
    ({"colour": "blue"}, {"colour": [
        "Unknown field; expected one of: channel_types, categories, workflows, quiet_hours."]}),
    ({"tenant": "globex"}, {"tenant": [
        "Does not match the ?tenant= query parameter, which chooses the set to write."]}),
    ([], {"body": ["Expected a JSON object."]}),
])
def test_bad_bodies_are_400s_naming_the_field_and_change_nothing(api, ada, body, fields):
    api.put(URL, KNOCK)
    for method in (api.put, api.patch):
        response = method(URL, body)
        assert response.status_code == 400, response.content
        assert response.json() == invalid(fields)
    assert api.get(URL).json() == {**EMPTY, **KNOCK}


def test_malformed_json_is_a_400_parse_error(api, ada):
    response = api.generic("PATCH", URL, "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_unknown_recipient_is_404_and_unknown_tenant_is_400(api, ada):
    response = api.get("/api/v1/recipients/nobody/preferences")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No recipient 'nobody'."}
    response = api.put(f"{URL}?tenant=nope", {})
    assert response.status_code == 400
    assert response.json() == invalid({"tenant": ["Unknown tenant 'nope'."]})


def test_a_tenant_restricted_key_reads_and_writes_only_its_tenants_sets(acme_api, ada, acme,
                                                                        globex):
    response = acme_api.patch(URL, {"categories": {"marketing": False}})
    assert response.status_code == 200
    assert response.json()["tenant"] == "acme"  # its own tenant, not the person's own set
    assert PreferenceSet.objects.get(recipient=ada).tenant == acme
    response = acme_api.get(f"{URL}?tenant=globex")
    assert response.status_code == 403
    assert acme_api.get("/api/v1/tenants/globex/preferences").status_code == 404


def test_a_tenants_default_preferences_are_put_and_stored_as_its_default_set(api, acme):
    url = "/api/v1/tenants/acme/preferences"
    response = api.put(url, {"categories": {"marketing": False},
                             "quiet_hours": {"start": "22:00", "end": "07:00"}})
    assert response.status_code == 200, response.content
    assert response.json() == {**EMPTY, "tenant": "acme", "categories": {"marketing": False},
                               "quiet_hours": {"start": "22:00", "end": "07:00"}}
    row = PreferenceSet.objects.get()
    assert (row.recipient, row.tenant, row.scope) == (None, acme, "tenant_default")
    assert api.get("/api/v1/tenants/nope/preferences").status_code == 404


def test_without_a_key_there_are_no_preferences(client, ada):
    assert client.get(URL).status_code == 401


def test_erasing_a_recipient_erases_their_preferences(api, ada, acme):
    api.put(URL, KNOCK)
    api.put(f"{URL}?tenant=acme", KNOCK)
    api.put("/api/v1/tenants/acme/preferences", {"categories": {"marketing": False}})
    assert api.delete("/api/v1/recipients/u1").status_code == 204
    assert list(PreferenceSet.objects.values_list("recipient", "tenant__key")) == [(None, "acme")]
