"""What a tenant's key, a view-only admin or a forged callback must not be able to do."""

import time
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Permission, User

from notifications.models import MessageEvent, ProviderConfig
from notifications.providers.twilio import twilio_signature
from notifications.providers.vonage import vonage_signature

from .status_support import sent_message  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

TWILIO = {"account_sid": "AC123", "auth_token": "SUPER-SECRET-TOKEN-9999", "from": "+15550001111"}


@pytest.mark.parametrize("option", ["base_url", "api_url", "endpoint_url", "token_uri",
                                    "ca_file"])
def test_a_tenant_key_cannot_choose_where_a_provider_connects(acme_api, option):
    response = acme_api.put("/api/v1/providers/acme-sms", {
        "channel": "sms", "kind": "twilio", "credentials": TWILIO,
        "options": {option: "http://169.254.169.254/latest/meta-data"}})
    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {f"options.{option}": [
        "A tenant-restricted API key cannot set where a provider connects; ask an operator to "
        "set this option."]}
    assert not ProviderConfig.objects.filter(key="acme-sms").exists()


def test_a_tenant_key_may_resend_the_address_an_operator_set(api, acme_api):
    body = {"channel": "sms", "kind": "twilio", "tenant": "acme", "credentials": TWILIO,
            "options": {"base_url": "https://api.twilio.example"}}
    assert api.put("/api/v1/providers/acme-sms", body).status_code == 201
    body["priority"] = 2
    assert acme_api.put("/api/v1/providers/acme-sms", body).status_code == 200
    assert ProviderConfig.objects.get(key="acme-sms").priority == 2


def test_an_unrestricted_key_sets_any_option(api):
    response = api.put("/api/v1/providers/main-sms", {
        "channel": "sms", "kind": "twilio", "credentials": TWILIO,
        "options": {"base_url": "http://127.0.0.1:9001"}})
    assert response.status_code == 201, response.content


def test_view_only_staff_see_a_provider_with_its_credentials_masked(client, provider_config):
    config = provider_config("twilio-main", "sms", "twilio", TWILIO)
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_providerconfig"))
    client.force_login(user)
    response = client.get(f"/admin/notifications/providerconfig/{config.pk}/change/")
    assert response.status_code == 200
    assert b"twilio-main" in response.content
    assert b"SUPER-SECRET-TOKEN-9999" not in response.content


def test_a_providers_callback_cannot_move_a_message_another_provider_sent(
        client, acme, provider_config, sent_message):  # noqa: F811
    provider_config("acme-vonage", "sms", "vonage",
                    {"api_key": "k", "api_secret": "s", "signature_secret": "acme-own-secret"},
                    tenant=acme)
    victim = sent_message("postmark", "pm-1", channel="email")
    params = {"messageId": "whatever", "status": "rejected", "err-code": "99",
              "client-ref": str(victim.pk), "timestamp": str(int(time.time())), "nonce": "n1"}
    params["sig"] = vonage_signature(params, "acme-own-secret")
    response = client.get("/webhooks/vonage/acme-vonage/receipt/", params)
    assert response.status_code == 204  # answered, so Vonage stops retrying; nothing moved
    victim.refresh_from_db()
    assert victim.status == "sent"
    assert not MessageEvent.objects.filter(message=victim).exists()


def test_a_replayed_twilio_callback_is_recorded_once(client, provider_config,
                                                     sent_message):  # noqa: F811
    provider_config("twilio-main", "sms", "twilio", TWILIO)
    message = sent_message("twilio-main", "SM1", channel="sms")
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    path = "/webhooks/twilio/twilio-main/status/"
    signature = twilio_signature("http://testserver" + path,
                                 {k: [v] for k, v in params.items()}, TWILIO["auth_token"])
    for attempt in range(3):  # the idempotency header is not signed: a replayer may change it
        response = client.post(path, data=urlencode(params),
                               content_type="application/x-www-form-urlencoded",
                               HTTP_X_TWILIO_SIGNATURE=signature,
                               HTTP_I_TWILIO_IDEMPOTENCY_TOKEN=f"replay-{attempt}")
        assert response.status_code == 204
    assert MessageEvent.objects.filter(message=message).count() == 1
    message.refresh_from_db()
    assert message.status == "delivered"


def test_a_non_ascii_inbox_hmac_is_a_401_not_a_500(client):
    response = client.get("/api/v1/inbox/", HTTP_X_CLARION_RECIPIENT="ada",
                          HTTP_X_CLARION_HMAC="\u00e9")
    assert response.status_code == 401
