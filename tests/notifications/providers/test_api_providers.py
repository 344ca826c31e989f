"""PUT/GET/DELETE /api/v1/providers/{key}: credentials encrypted at rest, never shown whole."""

import pytest

from notifications.models import ProviderConfig

from ...conftest import client_for, invalid

TWILIO = {"channel": "sms", "kind": "twilio", "priority": 1, "active": True, "tenant": None,
          "credentials": {"account_sid": "AC0123456789abcdef", "auth_token": "tok-0123456789",
                          "from": "+15550001111"},
          "options": {"base_url": "http://127.0.0.1:9001"}}


def test_put_creates_then_get_shows_masked_credentials(api):
    response = api.put("/api/v1/providers/sms-main", TWILIO)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["credentials"] == {"account_sid": "••••cdef", "auth_token": "••••6789",
                                   "from": "+15550001111"}
    assert {k: body[k] for k in ("key", "channel", "kind", "priority", "active", "tenant",
                                 "options")} == {
        "key": "sms-main", "channel": "sms", "kind": "twilio", "priority": 1, "active": True,
        "tenant": None, "options": {"base_url": "http://127.0.0.1:9001"}}
    assert body["circuit"] == {"state": "closed", "consecutive_failures": 0, "open_until": None,
                               "last_error": ""}
    assert api.get("/api/v1/providers/sms-main").json() == body
    config = ProviderConfig.objects.get(key="sms-main")
    assert "tok-0123456789" not in config.credentials_encrypted
    assert config.credentials == TWILIO["credentials"]


def test_put_back_the_masked_body_keeps_the_secrets(api):
    api.put("/api/v1/providers/sms-main", TWILIO)
    shown = api.get("/api/v1/providers/sms-main").json()
    changed = {k: shown[k] for k in ("channel", "kind", "tenant", "credentials", "options")}
    response = api.put("/api/v1/providers/sms-main", {**changed, "priority": 7})
    assert response.status_code == 200
    config = ProviderConfig.objects.get(key="sms-main")
    assert config.priority == 7
    assert config.credentials == TWILIO["credentials"]


def test_a_tenants_vonage_provider_is_created_for_that_tenant(api, acme):
    body = {"channel": "sms", "kind": "vonage", "tenant": "acme",
            "credentials": {"api_key": "k", "api_secret": "s3cr3t-vonage", "from": "Acme"}}
    response = api.put("/api/v1/providers/acme-sms", body)
    assert response.status_code == 201
    assert response.json()["tenant"] == "acme"
    assert ProviderConfig.objects.get(key="acme-sms").tenant == acme


@pytest.mark.parametrize("change, fields", [
    ({"kind": "fax"}, {"kind": [
        "Unknown sms kind; expected one of: gupshup, messagebird, plivo, sinch, twilio, vonage."]}),
    ({"channel": "in_app"}, {"channel": ['"in_app" is not a valid choice.']}),
    ({"credentials": {"account_sid": "AC1", "from": "+15550001111"}},
     {"credentials.auth_token": ["This field is required."]}),
    ({"credentials": {**TWILIO["credentials"], "from": "555-0100"}},
     {"credentials.from": ["Expected an E.164 number, e.g. +15550001111."]}),
    ({"credentials": {**TWILIO["credentials"], "pin": "1"}},
     {"credentials.pin": ["Unknown field; twilio takes: account_sid, auth_token, from."]}),
    ({"options": {"region": "eu"}},
     {"options.region": ["Unknown option; twilio takes: base_url, timeout, "
                         "status_callback_url, cost_per_message, cost_by_country, "
                         "cost_currency."]}),
    ({"options": {"cost_per_message": "-1", "cost_by_country": {"usa": "0.01"}}},
     {"options.cost_per_message": ['Expected a non-negative decimal price, e.g. "0.0079".'],
      "options.cost_by_country": ["'usa' is not an ISO 3166-1 alpha-2 code such as \"US\"."]}),
    ({"tenant": "nope"}, {"tenant": ["Unknown tenant 'nope'."]}),
])
def test_bad_bodies_name_the_field(api, change, fields):
    response = api.put("/api/v1/providers/sms-main", {**TWILIO, **change})
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert not ProviderConfig.objects.exists()


def test_a_deleted_provider_is_gone_and_reads_as_a_404(api):
    api.put("/api/v1/providers/sms-main", TWILIO)
    assert api.delete("/api/v1/providers/sms-main").status_code == 204
    response = api.get("/api/v1/providers/sms-main")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No provider 'sms-main'."}


def test_a_tenant_key_sees_and_manages_only_its_own_providers(api, acme_api, acme, globex):
    api.put("/api/v1/providers/global-sms", TWILIO)
    api.put("/api/v1/providers/globex-sms", {**TWILIO, "tenant": "globex"})
    assert acme_api.get("/api/v1/providers/global-sms").status_code == 404
    assert acme_api.put("/api/v1/providers/globex-sms", TWILIO).status_code == 404
    response = acme_api.put("/api/v1/providers/acme-sms", {**TWILIO, "tenant": "globex"})
    assert response.status_code == 403
    # Without a base_url: where a provider connects is the operator's (see test_security.py).
    response = acme_api.put("/api/v1/providers/acme-sms", {**TWILIO, "options": {}})
    assert (response.status_code, response.json()["tenant"]) == (201, "acme")
    assert acme_api.get("/api/v1/providers/acme-sms").status_code == 200


def test_requires_an_api_key(db):
    assert client_for("wrong").get("/api/v1/providers/x").status_code == 401


def test_credentials_decrypt_after_key_rotation(api, clarion_settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    clarion_settings(ENCRYPTION_KEYS=[old])
    api.put("/api/v1/providers/sms-main", TWILIO)
    clarion_settings(ENCRYPTION_KEYS=[new, old])
    assert ProviderConfig.objects.get().credentials == TWILIO["credentials"]
    clarion_settings(ENCRYPTION_KEYS=[new])
    with pytest.raises(ValueError, match="cannot be decrypted"):
        ProviderConfig.objects.get().credentials  # noqa: B018
