"""WhatsApp: Meta's Cloud API and Twilio's WhatsApp sender against local servers that check the
documented request, their signed status webhooks (a read is engagement: `opened`), and failover
between the two kinds."""

import json
from urllib.parse import urlencode

import pytest

from notifications.delivery import deliver
from notifications.models import Message, MessageEvent
from notifications.providers.twilio import twilio_signature
from notifications.providers.whatsapp import meta_signature

from . import status_support
from .servers import Reply

sent_message = status_support.sent_message  # the fixture

PNID, META_TOKEN, APP_SECRET = "106540352242922", "EAAG-meta-access-token", "meta-app-secret"
SID, TWILIO_TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-wa-auth-token"
TEMPLATE = {"text": "", "parameters": '["{{ recipient.name }}", "{{ data.order }}"]'}
STEP = {"template": "order_update", "language": "en_US"}
RECIPIENT = {"id": "ada", "name": "Ada", "phone": "+15550002222"}


def meta_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == ("POST", f"/v21.0/{PNID}/messages") \
        else [f"{request.method} {request.path}"]
    if request.headers.get("authorization") != f"Bearer {META_TOKEN}":
        problems.append("auth")
    body = request.json()
    if (body.get("messaging_product"), body.get("to")) != ("whatsapp", "15550002222"):
        problems.append("messaging_product/to")
    if body.get("type") not in ("template", "text") or body["type"] not in body:
        problems.append("type")
    return problems


def meta_accepts(request) -> Reply:
    return Reply(200, json={"messaging_product": "whatsapp",
                            "contacts": [{"input": "15550002222", "wa_id": "15550002222"}],
                            "messages": [{"id": "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI"}]})


@pytest.fixture
def meta(provider_server, provider_config):
    def make(reply=meta_accepts, priority=1):
        server = provider_server(meta_check, reply)
        provider_config("wa-meta", "whatsapp", "whatsapp_cloud", {
            "phone_number_id": PNID, "access_token": META_TOKEN, "app_secret": APP_SECRET,
            "verify_token": "verify-me"}, options={"base_url": f"{server.url}/v21.0"},
            priority=priority)
        return server
    return make


def twilio_wa_check(request) -> list[str]:
    problems = [] if request.path == f"/2010-04-01/Accounts/{SID}/Messages.json" else [
        f"path {request.path}"]
    form = request.form()
    if (form.get("To"), form.get("From")) != ("whatsapp:+15550002222", "whatsapp:+15550001111"):
        problems.append(f"To/From {form.get('To')} {form.get('From')}")
    if not form.get("ContentSid") and not form.get("Body"):
        problems.append("ContentSid or Body")
    return problems


@pytest.fixture
def twilio_wa(provider_server, provider_config):
    def make(priority=1):
        server = provider_server(twilio_wa_check, lambda r: Reply(201, json={
            "sid": "SMwa0001", "status": "queued"}))
        provider_config("wa-twilio", "whatsapp", "twilio_whatsapp", {
            "account_sid": SID, "auth_token": TWILIO_TOKEN, "from": "+15550001111"},
            options={"base_url": server.url}, priority=priority)
        return server
    return make


def test_meta_gets_the_approved_template_with_its_language_and_parameters(meta, queue_message,
                                                                          make_workflow):
    server = meta()
    message = queue_message("whatsapp", TEMPLATE, recipient=RECIPIENT, config=STEP)
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json()["template"] == {
        "name": "order_update", "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Ada"}, {"type": "text", "text": ""}]}]}
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (
        Message.Status.SENT, "wamid.HBgLMTU1NTAwMDIyMjIVAgARGBI")
    assert META_TOKEN not in json.dumps(message.delivery_attempts.get().request)


def test_without_a_template_meta_gets_free_text(meta, queue_message):
    server = meta()
    message = queue_message("whatsapp", {"text": "Your table is ready"}, recipient=RECIPIENT)
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json()["text"] == {"preview_url": False,
                                                 "body": "Your table is ready"}


@pytest.mark.parametrize(("status", "code", "outcome"), [
    (400, 131047, "permanent_error"),  # outside the 24-hour window: needs a template
    (400, 132001, "permanent_error"),  # template does not exist
    (400, 130429, "transient_error"),  # rate limit hit
])
def test_meta_error_codes_are_mapped(meta, queue_message, clarion_settings, status, code,
                                     outcome):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    meta(lambda r: Reply(status, json={"error": {
        "message": "(#131047) Re-engagement message", "type": "OAuthException", "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": "more than 24 hours"},
        "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam"}}))
    message = queue_message("whatsapp", {"text": "hi"}, recipient=RECIPIENT)
    deliver(str(message.id))
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == outcome and f"WhatsApp {code}" in attempt.error


def test_a_failing_whatsapp_kind_fails_over_to_the_other(meta, twilio_wa, queue_message,
                                                         clarion_settings):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    meta(lambda r: Reply(503, json={"error": {"code": 131016, "message": "unavailable"}}),
         priority=1)
    twilio = twilio_wa(priority=2)
    message = queue_message("whatsapp", TEMPLATE, recipient=RECIPIENT, config={
        **STEP, "content_sid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"})
    deliver(str(message.id))
    assert twilio.problems == []
    form = twilio.requests[0].form()
    assert form["ContentSid"] == "HXb5b62575e6e4ff6129ad7c8efe1f983e"
    assert json.loads(form["ContentVariables"]) == {"1": "Ada", "2": ""}
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "wa-twilio")
    assert list(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("wa-meta", "transient_error"), ("wa-twilio", "succeeded")]


def meta_status(wamid: str, status: str) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages", "value": {"messaging_product": "whatsapp",
                                       "metadata": {"phone_number_id": PNID},
                                       "statuses": [{"id": wamid, "status": status,
                                                     "timestamp": "1764540000",
                                                     "recipient_id": "15550001111"}]}}]}]}


def post_meta(client, payload: dict, secret: str = APP_SECRET):
    body = json.dumps(payload).encode()
    return client.post("/webhooks/whatsapp/wa-meta/status/", data=body,
                       content_type="application/json",
                       HTTP_X_HUB_SIGNATURE_256=meta_signature(body, secret))


def test_a_signed_meta_read_status_counts_as_engagement(meta, client, sent_message):
    meta()
    message = sent_message("wa-meta", "wamid.1", channel="whatsapp")
    assert post_meta(client, meta_status("wamid.1", "delivered")).status_code == 204
    assert post_meta(client, meta_status("wamid.1", "read")).status_code == 204
    message.refresh_from_db()
    assert message.status == "opened" and message.delivered_at and message.opened_at


def test_a_meta_status_with_a_forged_signature_is_refused(meta, client, sent_message):
    meta()
    message = sent_message("wa-meta", "wamid.2", channel="whatsapp")
    assert post_meta(client, meta_status("wamid.2", "read"), secret="guess").status_code == 403
    message.refresh_from_db()
    assert message.status == "sent" and not MessageEvent.objects.exists()


def test_meta_subscription_check_echoes_the_challenge_only_with_the_verify_token(meta, client):
    meta()
    url = "/webhooks/whatsapp/wa-meta/status/?"
    ok = client.get(url + urlencode({"hub.mode": "subscribe", "hub.verify_token": "verify-me",
                                     "hub.challenge": "1158201444"}))
    assert (ok.status_code, ok.content) == (200, b"1158201444")
    wrong = client.get(url + urlencode({"hub.mode": "subscribe", "hub.verify_token": "nope",
                                        "hub.challenge": "1158201444"}))
    assert wrong.status_code == 403


def post_twilio_wa(client, params: dict, token: str = TWILIO_TOKEN):
    path = "/webhooks/twilio_whatsapp/wa-twilio/status/"
    signature = twilio_signature(f"http://testserver{path}", {k: [v] for k, v in params.items()},
                                 token)
    return client.post(path, data=urlencode(params),
                       content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature)


def test_a_signed_twilio_whatsapp_read_status_counts_as_engagement(twilio_wa, client,
                                                                    sent_message):
    twilio_wa()
    message = sent_message("wa-twilio", "SMwa0002", channel="whatsapp")
    response = post_twilio_wa(client, {"MessageSid": "SMwa0002", "MessageStatus": "read",
                                       "To": "whatsapp:+15550001111"})
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "opened"
    assert MessageEvent.objects.get().provider_kind == "twilio_whatsapp"


def test_a_twilio_whatsapp_status_with_a_forged_signature_is_refused(twilio_wa, client,
                                                                     sent_message):
    twilio_wa()
    message = sent_message("wa-twilio", "SMwa0003", channel="whatsapp")
    response = post_twilio_wa(client, {"MessageSid": "SMwa0003", "MessageStatus": "read"},
                              token="someone-elses")
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent"


def test_a_whatsapp_step_whose_template_is_not_a_string_is_refused_naming_the_config(api):
    response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
        {"ref": "wa", "type": "whatsapp", "config": {"template": 5},
         "templates": {"en": {"text": "hi"}}}]})
    assert response.status_code == 400
    assert response.json()["fields"] == {
        "steps[0].config": ['"template" must be a string, e.g. "order_update".']}


@pytest.mark.parametrize(("config", "tried", "reason"), [
    # Only a Meta template name: Meta sends it; Twilio, which sends templates by Content SID,
    # refuses without a request.
    (STEP, "wa-meta", 'names only the Meta template \'order_update\'; add "content_sid"'),
    # Only a Content SID: Twilio sends it; Meta refuses without a request.
    ({"content_sid": "HXb5b62575e6e4ff6129ad7c8efe1f983e"}, "wa-twilio",
     "Meta's Cloud API needs the template's name"),
])
def test_a_kind_that_cannot_name_the_steps_template_fails_over_without_a_request(
        meta, twilio_wa, queue_message, clarion_settings, config, tried, reason):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    first_is_meta = tried == "wa-twilio"  # the kind that cannot send goes first
    meta_server = meta(priority=1 if first_is_meta else 2)
    twilio_server = twilio_wa(priority=2 if first_is_meta else 1)
    message = queue_message("whatsapp", TEMPLATE, recipient=RECIPIENT, config=config)
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, tried)
    refused = message.delivery_attempts.exclude(provider=tried).get()
    assert refused.outcome == "permanent_error" and reason in refused.error
    idle = meta_server if first_is_meta else twilio_server
    assert idle.requests == []


def test_a_whatsapp_step_with_an_unknown_key_or_a_bad_content_sid_is_refused(api):
    for config, problem in (
            ({"template": "t", "contentSid": "HX1"}, "Unknown key 'contentSid'"),
            ({"content_sid": "MG0123"}, '"content_sid" must be a Twilio Content SID')):
        response = api.put("/api/v1/workflows/w", {"name": "W", "steps": [
            {"ref": "wa", "type": "whatsapp", "config": config,
             "templates": {"en": {"text": "hi"}}}]})
        assert response.status_code == 400
        assert problem in response.json()["fields"]["steps[0].config"][0]
