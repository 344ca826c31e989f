"""The ProviderConfig admin: credentials typed once, shown masked, kept encrypted; send test."""

import json

import pytest
from django.urls import reverse

from notifications.models import ProviderConfig

from .fake_push import FakePushService, ec_key_pem
from .servers import Reply
from .test_sms import SID, TOKEN, twilio_accepts, twilio_check

CREDENTIALS = {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"}


def form_data(**changes) -> dict:
    data = {"key": "sms-main", "channel": "sms", "kind": "twilio", "tenant": "", "priority": 1,
            "active": "on", "credentials": json.dumps(CREDENTIALS), "options": "{}"}
    return {**data, **changes}


def test_add_then_edit_keeps_masked_secrets(admin_client):
    response = admin_client.post(reverse("admin:notifications_providerconfig_add"), form_data())
    assert response.status_code == 302, response.context["adminform"].form.errors
    config = ProviderConfig.objects.get()
    assert config.credentials == CREDENTIALS
    change = reverse("admin:notifications_providerconfig_change", args=[config.pk])
    page = admin_client.get(change).content.decode()
    assert TOKEN not in page and SID not in page
    shown = admin_client.get(change).context["adminform"].form.initial["credentials"]
    assert shown["auth_token"] == "••••" + TOKEN[-4:]
    response = admin_client.post(change, form_data(credentials=json.dumps(shown), priority=3))
    assert response.status_code == 302
    config.refresh_from_db()
    assert (config.priority, config.credentials) == (3, CREDENTIALS)


def test_bad_credentials_are_shown_on_the_form(admin_client):
    response = admin_client.post(reverse("admin:notifications_providerconfig_add"),
                                 form_data(credentials=json.dumps({"account_sid": SID})))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["credentials"]
    assert "credentials.auth_token: This field is required." in errors
    assert not ProviderConfig.objects.exists()


def test_send_test_goes_through_that_provider(admin_client, provider_server, provider_config):
    server = provider_server(twilio_check, twilio_accepts)
    config = provider_config("sms-main", "sms", "twilio", CREDENTIALS,
                             options={"base_url": server.url})
    page = reverse("admin:notifications_providerconfig_send_test", args=[config.pk])
    assert admin_client.get(page).status_code == 200
    response = admin_client.post(page, {"to": "+15550002222", "text": "ping"})
    assert response.context["result"]["ok"] is True
    assert "Accepted, provider message id SM" in response.content.decode()
    assert server.requests[0].form()["Body"] == "ping"
    assert TOKEN not in response.content.decode()

    server.script(Reply(401, json={"code": 20003, "message": "Authenticate", "status": 401}))
    response = admin_client.post(page, {"to": "+15550002222"})
    assert response.context["result"]["text"] == "Refused (permanent): Twilio 20003: Authenticate"


def test_send_test_action_opens_the_page_for_one_provider(admin_client, provider_config):
    one = provider_config("a", "sms", "twilio", CREDENTIALS)
    provider_config("b", "sms", "twilio", CREDENTIALS)
    changelist = reverse("admin:notifications_providerconfig_changelist")
    response = admin_client.post(changelist, {"action": "send_test",
                                              "_selected_action": [one.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:notifications_providerconfig_send_test",
                                           args=[one.pk])
    response = admin_client.post(changelist, {"action": "send_test",
                                              "_selected_action": [p.pk for p in
                                                                   ProviderConfig.objects.all()]},
                                 follow=True)
    assert "Select one provider to send a test message through." in response.content.decode()


def test_the_close_circuit_action_resets_the_failure_count(admin_client, provider_config):
    config = provider_config("a", "sms", "twilio", CREDENTIALS, consecutive_failures=7)
    admin_client.post(reverse("admin:notifications_providerconfig_changelist"),
                      {"action": "close_circuit", "_selected_action": [config.pk]})
    config.refresh_from_db()
    assert config.consecutive_failures == 0


@pytest.fixture
def push_service(clarion_settings):
    clarion_settings(ALLOW_PRIVATE_URLS=True)  # it is on 127.0.0.1
    service = FakePushService()
    yield service
    service.stop()


def test_send_test_through_web_push_takes_the_subscription_json(admin_client, provider_config,
                                                                 push_service):
    config = provider_config("webpush-main", "push", "webpush",
                             {"vapid_private_key": ec_key_pem(),
                              "vapid_subject": "mailto:ops@example.test"})
    subscription = push_service.subscribe()
    page = reverse("admin:notifications_providerconfig_send_test", args=[config.pk])
    response = admin_client.post(page, {"to": json.dumps(subscription), "text": "ping"})
    assert response.context["result"]["ok"] is True, response.context["result"]
    assert push_service.problems == []
    (payload,) = push_service.delivered  # decrypted with the subscriber's own keys
    assert (payload["title"], payload["body"], payload["data"]) == ("Clarion", "ping", {})
    assert "Accepted, provider message id http://127.0.0.1:" in response.content.decode()
    exchange = response.context["result"]["exchange"]  # the redacted request, as shown
    assert subscription["endpoint"] in exchange and subscription["keys"]["auth"] not in exchange


@pytest.mark.parametrize("to, reason", [
    ("not json", "Not sent: Expected the subscription's JSON (PushSubscription.toJSON()): "
                 "Expecting value: line 1 column 1 (char 0)"),
    ('["a"]', "Not sent: Expected the subscription's JSON object, with endpoint and keys."),
    ('{"endpoint": "https://push.example.test/x"}',
     "Refused (permanent): https://push…st/x: A Web Push subscription needs endpoint and "
     "keys.p256dh/auth."),
])
def test_send_test_through_web_push_explains_a_subscription_it_cannot_use(
        admin_client, provider_config, push_service, to, reason):
    config = provider_config("webpush-main", "push", "webpush",
                             {"vapid_private_key": ec_key_pem(),
                              "vapid_subject": "mailto:ops@example.test"})
    page = reverse("admin:notifications_providerconfig_send_test", args=[config.pk])
    response = admin_client.post(page, {"to": to})
    assert response.context["result"]["text"] == reason
    assert push_service.requests == []
