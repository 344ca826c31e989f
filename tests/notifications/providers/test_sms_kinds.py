"""MessageBird (Bird), Sinch and Gupshup: each against a local server that checks the request
the way the provider documents it and answers as it does (errors included), and each one's
status callback with a valid and a forged signature."""

import json
import time
from urllib.parse import urlencode

import pytest

from notifications.delivery import deliver
from notifications.models import Message, MessageEvent
from notifications.providers.base import ConfigurationError
from notifications.providers.gupshup import Gupshup, from_gupshup
from notifications.providers.messagebird import from_messagebird, messagebird_signature
from notifications.providers.sinch import from_sinch, sinch_signature

from . import status_support
from .servers import Reply

sent_message = status_support.sent_message  # the fixture

PHONE = "+15550002222"


# --- MessageBird --------------------------------------------------------------------------------

MB_KEY = "live_mb_access_key"
MB_SIGNING = "mb-signing-key-0123456789"


def messagebird_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == ("POST", "/messages") else [
        f"{request.method} {request.path}"]
    if request.headers.get("authorization") != f"AccessKey {MB_KEY}":
        problems.append("auth")
    body = request.json()
    if body.get("recipients") != ["15550002222"]:
        problems.append(f"recipients {body.get('recipients')}")
    problems += [f"missing {f}" for f in ("originator", "body", "reference") if not body.get(f)]
    return problems


@pytest.fixture
def messagebird(provider_server, provider_config):
    def make(reply=None):
        server = provider_server(messagebird_check, reply or (lambda r: Reply(201, json={
            "id": "49e40bae0b374f1ca5e3d04d46edc7c1", "direction": "mt", "type": "sms",
            "originator": "Clarion", "body": r.json()["body"],
            "recipients": {"totalCount": 1, "totalSentCount": 1, "items": [
                {"recipient": 15550002222, "status": "sent", "messagePartCount": 1}]}})))
        provider_config("bird", "sms", "messagebird", {
            "access_key": MB_KEY, "from": "Clarion", "signing_key": MB_SIGNING},
            options={"base_url": server.url})
        return server
    return make


def test_messagebird_gets_the_documented_request_and_its_id_is_kept(messagebird,
                                                                    queue_message):
    server = messagebird()
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    assert server.problems == []
    body = server.requests[0].json()
    assert (body["originator"], body["body"], body["reference"]) == (
        "Clarion", "Your code is 1234", str(message.id))
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (
        Message.Status.SENT, "49e40bae0b374f1ca5e3d04d46edc7c1")
    assert MB_KEY not in json.dumps(message.delivery_attempts.get().request)


@pytest.mark.parametrize(("status", "code", "outcome"), [
    (401, 2, "permanent_error"), (422, 25, "permanent_error"), (500, 99, "transient_error")])
def test_messagebird_error_codes_are_mapped(messagebird, queue_message, clarion_settings,
                                            status, code, outcome):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    messagebird(lambda r: Reply(status, json={"errors": [
        {"code": code, "description": "refused", "parameter": None}]}))
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.status_code) == (outcome, status)
    assert f"MessageBird {code}" in attempt.error


def messagebird_report(client, params: dict, *, key: str = MB_SIGNING, url: str | None = None,
                       token: str | None = None):
    path = f"/webhooks/messagebird/bird/status/?{urlencode(params)}"
    if token is None:
        token = messagebird_signature(url or f"http://testserver{path}", b"", key,
                                      now=int(time.time()))
    return client.get(path, HTTP_MESSAGEBIRD_SIGNATURE_JWT=token)


def test_messagebird_signed_status_report_marks_the_message_delivered(messagebird, client,
                                                                       sent_message):
    messagebird()
    message = sent_message("bird", "mb-0001", channel="sms")
    response = messagebird_report(client, {
        "id": "mb-0001", "reference": str(message.id), "recipient": "15550001111",
        "status": "delivered", "statusDatetime": "2026-11-30T22:00:00+00:00"})
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("how", ["other key", "other url", "no jwt"])
def test_messagebird_forged_status_report_is_refused(messagebird, client, sent_message, how):
    messagebird()
    message = sent_message("bird", "mb-0002", channel="sms")
    params = {"id": "mb-0002", "status": "delivered"}
    if how == "other key":
        response = messagebird_report(client, params, key="not-the-signing-key")
    elif how == "other url":  # signed for another message's report
        response = messagebird_report(client, params, url="http://testserver/webhooks/"
                                      "messagebird/bird/status/?id=mb-9999&status=delivered")
    else:
        response = messagebird_report(client, params, token="")
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent" and not MessageEvent.objects.exists()


def test_messagebird_route_failure_fails_over_but_a_dead_number_does_not():
    assert from_messagebird({"id": "1", "status": "delivery_failed",
                             "statusErrorCode": "34"}).carrier_refused
    assert not from_messagebird({"id": "1", "status": "delivery_failed",
                                 "statusReason": "unknown subscriber",
                                 "statusErrorCode": "1"}).carrier_refused


# --- Sinch --------------------------------------------------------------------------------------

SINCH_PLAN = "jd63jf88477ll123ab4567cd89012ef3"
SINCH_TOKEN = "sinch-api-token"
SINCH_SECRET = "sinch-callback-secret"


def sinch_check(request) -> list[str]:
    problems = [] if request.path == f"/xms/v1/{SINCH_PLAN}/batches" else [
        f"path {request.path}"]
    if request.headers.get("authorization") != f"Bearer {SINCH_TOKEN}":
        problems.append("auth")
    body = request.json()
    if body.get("to") != [PHONE]:
        problems.append(f"to {body.get('to')}")
    problems += [f"missing {f}" for f in ("from", "body", "client_reference") if not body.get(f)]
    if len(body.get("body", "")) > 2000:
        problems.append("body longer than 2000")
    return problems


@pytest.fixture
def sinch(provider_server, provider_config):
    def make(reply=None):
        server = provider_server(sinch_check, reply or (lambda r: Reply(201, json={
            "id": "01FC66621XXXXX119Z8PMV1QPQ", "to": [PHONE], "from": "+15550001111",
            "canceled": False, "body": r.json()["body"], "type": "mt_text"})))
        provider_config("sinch", "sms", "sinch", {
            "service_plan_id": SINCH_PLAN, "api_token": SINCH_TOKEN, "from": "+15550001111",
            "callback_secret": SINCH_SECRET}, options={"base_url": server.url})
        return server
    return make


def test_sinch_gets_the_documented_request_and_its_batch_id_is_kept(sinch, queue_message):
    server = sinch()
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    assert server.problems == []
    body = server.requests[0].json()
    assert (body["client_reference"], body["delivery_report"]) == (str(message.id),
                                                                   "per_recipient")
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                             "01FC66621XXXXX119Z8PMV1QPQ")
    assert SINCH_TOKEN not in json.dumps(message.delivery_attempts.get().request)


@pytest.mark.parametrize(("status", "outcome"), [(400, "permanent_error"),
                                                 (403, "permanent_error"),
                                                 (429, "transient_error"),
                                                 (503, "transient_error")])
def test_sinch_errors_are_mapped(sinch, queue_message, clarion_settings, status, outcome):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    sinch(lambda r: Reply(status, json={"code": "syntax_invalid_parameter_format",
                                        "text": "refused"}))
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    assert message.delivery_attempts.get().outcome == outcome


def test_a_text_longer_than_sinch_takes_is_refused_before_sending(sinch, queue_message):
    server = sinch()
    message = queue_message("sms", {"text": "x" * 2001})
    deliver(str(message.id))
    assert server.requests == []
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED and "2000" in message.error


def post_sinch(client, report: dict, *, secret: str = SINCH_SECRET, body: bytes | None = None,
               timestamp: str | None = None):
    raw = body if body is not None else json.dumps(report).encode()
    nonce, stamp = "01FJA8B4A7BM43YGWSG9GBV067", timestamp or str(int(time.time()))
    signature = sinch_signature(json.dumps(report).encode(), nonce, stamp, secret)
    return client.post("/webhooks/sinch/sinch/status/", data=raw,
                       content_type="application/json",
                       HTTP_X_SINCH_WEBHOOK_SIGNATURE_NONCE=nonce,
                       HTTP_X_SINCH_WEBHOOK_SIGNATURE_TIMESTAMP=stamp,
                       HTTP_X_SINCH_WEBHOOK_SIGNATURE_ALGORITHM="HmacSHA256",
                       HTTP_X_SINCH_WEBHOOK_SIGNATURE=signature)


def sinch_report(batch_id: str, message_id: str, status: str, code: int) -> dict:
    return {"type": "recipient_delivery_report_sms", "batch_id": batch_id,
            "recipient": "15550001111", "code": code, "status": status,
            "at": "2026-11-30T22:00:00.000Z", "client_reference": message_id}


def test_sinch_signed_delivery_report_marks_the_message_delivered(sinch, client, sent_message):
    sinch()
    message = sent_message("sinch", "01FC0001", channel="sms")
    response = post_sinch(client, sinch_report("01FC0001", str(message.id), "Delivered", 0))
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("how", ["other secret", "tampered body", "old timestamp"])
def test_sinch_forged_delivery_report_is_refused(sinch, client, sent_message, how):
    sinch()
    message = sent_message("sinch", "01FC0002", channel="sms")
    report = sinch_report("01FC0002", str(message.id), "Delivered", 0)
    if how == "other secret":
        response = post_sinch(client, report, secret="someone-else")
    elif how == "tampered body":
        response = post_sinch(client, report, body=json.dumps(
            {**report, "status": "Failed"}).encode())
    else:
        response = post_sinch(client, report, timestamp=str(int(time.time()) - 3600))
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent" and not MessageEvent.objects.exists()


def test_sinch_route_failure_fails_over_but_a_blocked_number_does_not():
    assert from_sinch(sinch_report("b", "m", "Failed", 402)).carrier_refused
    assert not from_sinch(sinch_report("b", "m", "Failed", 413)).carrier_refused


# --- Gupshup ------------------------------------------------------------------------------------

GS_PASSWORD = "gupshup-password"
GS_TOKEN = "gupshup-callback-token"


def gupshup_check(request) -> list[str]:
    problems = [] if (request.method, request.path) == ("POST", "/GatewayAPI/rest") else [
        f"{request.method} {request.path}"]
    form = request.form()
    expected = {"method": "SendMessage", "userid": "2000012345", "password": GS_PASSWORD,
                "auth_scheme": "plain", "v": "1.1", "format": "json",
                "send_to": "15550002222"}
    problems += [f"{k}={form.get(k)}" for k, v in expected.items() if form.get(k) != v]
    problems += [f"missing {f}" for f in ("msg", "msg_type") if not form.get(f)]
    return problems


@pytest.fixture
def gupshup(provider_server, provider_config):
    def make(reply=None):
        server = provider_server(gupshup_check, reply or (lambda r: Reply(200, json={
            "response": {"id": "3562707498794989059", "phone": "15550002222",
                         "details": "", "status": "success"}})))
        provider_config("gupshup", "sms", "gupshup", {
            "userid": "2000012345", "password": GS_PASSWORD, "from": "CLARION",
            "callback_token": GS_TOKEN}, options={"base_url": server.url})
        return server
    return make


def test_gupshup_gets_the_documented_request_and_unicode_type(gupshup, queue_message):
    server = gupshup()
    message = queue_message("sms", {"text": "Код 1234"})
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].form()["msg_type"] == "UNICODE_TEXT"
    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT,
                                                             "3562707498794989059")
    assert GS_PASSWORD not in json.dumps(message.delivery_attempts.get().request)


@pytest.mark.parametrize(("code", "outcome"), [("105", "permanent_error"),
                                               ("102", "permanent_error"),
                                               ("100", "transient_error")])
def test_gupshup_error_codes_in_a_200_are_mapped(gupshup, queue_message, clarion_settings,
                                                 code, outcome):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=1)
    gupshup(lambda r: Reply(200, json={"response": {"id": code, "phone": "",
                                                    "details": "refused", "status": "error"}}))
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == outcome and f"Gupshup {code}" in attempt.error


def test_gupshup_report_with_its_token_marks_the_message_delivered(gupshup, client,
                                                                   sent_message):
    gupshup()
    message = sent_message("gupshup", "3562707498794989059", channel="sms")
    response = client.get("/webhooks/gupshup/gupshup/status/?" + urlencode({
        "token": GS_TOKEN, "externalId": "3562707498794989059", "deliveredTS": "1764540000000",
        "status": "SUCCESS", "cause": "SUCCESS", "phoneNo": "15550001111", "errCode": "000"}))
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "delivered"


@pytest.mark.parametrize("token", ["", "guessed-token"])
def test_gupshup_report_without_its_token_is_refused(gupshup, client, sent_message, token):
    gupshup()
    message = sent_message("gupshup", "356270", channel="sms")
    response = client.post(f"/webhooks/gupshup/gupshup/status/?token={token}",
                           data=json.dumps([{"externalId": "356270", "eventType": "DELIVERED",
                                             "eventTs": 1764540000000, "cause": "SUCCESS"}]),
                           content_type="application/json")
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == "sent" and not MessageEvent.objects.exists()


def test_gupshup_posted_failure_event_fails_the_message_with_its_cause(gupshup, client,
                                                                       sent_message):
    gupshup()
    message = sent_message("gupshup", "356271", channel="sms")
    response = client.post(f"/webhooks/gupshup/gupshup/status/?token={GS_TOKEN}",
                           data=json.dumps([{"externalId": "356271", "eventType": "FAILED",
                                             "eventTs": 1764540000000,
                                             "cause": "UNKNOWN_SUBSCRIBER", "errCode": "001"}]),
                           content_type="application/json")
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == "failed" and "UNKNOWN_SUBSCRIBER" in message.error
    assert not from_gupshup({"externalId": "1", "eventType": "FAILED"}).carrier_refused


def test_an_sms_sender_that_is_neither_e164_nor_alphanumeric_is_refused_naming_the_field():
    with pytest.raises(ConfigurationError) as refused:
        Gupshup.validate_config({"userid": "1", "password": "p", "from": "not a sender!"}, {})
    assert list(refused.value.fields) == ["credentials.from"]
