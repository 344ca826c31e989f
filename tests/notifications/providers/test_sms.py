"""SMS kinds against local servers that check each request the way Twilio, Vonage and Plivo
document it, and answer as they do."""

import base64
import json
import threading
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from notifications.delivery import deliver
from notifications.models import DeliveryAttempt, Message, ProviderConfig
from notifications.providers.twilio import twilio_signature

from ...conftest import queued_tasks
from .servers import Reply

SID, TOKEN = "AC0123456789abcdef0123456789abcdef", "twilio-auth-token-secret"
PHONE = "+15550002222"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# The Messages list's query parameters (read-multiple-message-resources in Twilio's docs).
TWILIO_LIST_PARAMETERS = {"To", "From", "DateSent", "DateSent<", "DateSent>", "PageSize", "Page",
                          "PageToken"}


def twilio_check(request) -> list[str]:
    """Twilio's create-a-Message request (POST, form To/From/Body, Basic auth), or its read
    of the Messages list (GET, only the documented query parameters)."""
    problems = []
    if request.headers.get("authorization") != basic(SID, TOKEN):
        problems.append("auth")
    if (request.method, request.path) == ("GET", f"/2010-04-01/Accounts/{SID}/Messages.json"):
        unknown = set(request.query) - TWILIO_LIST_PARAMETERS
        return problems + ([f"unknown list parameters {sorted(unknown)}"] if unknown else []) + (
            ["a body on a GET"] if request.body else [])
    if (request.method, request.path) != ("POST", f"/2010-04-01/Accounts/{SID}/Messages.json"):
        problems.append(f"{request.method} {request.path}")
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        problems.append("content-type")
    form = request.form()
    for name in ("To", "From", "Body"):
        if not form.get(name):
            problems.append(f"missing {name}")
    if not form.get("To", "").startswith("+"):
        problems.append("To is not E.164")
    return problems


def twilio_accepts(request) -> Reply:
    form = request.form()
    return Reply(201, json={"sid": "SM" + uuid.uuid4().hex, "status": "queued",
                            "to": form["To"], "from": form["From"], "body": form["Body"],
                            "num_segments": "1", "error_code": None})


class TwilioRecords:
    """A Twilio stand-in that keeps the Message resources it creates, as Twilio does: each
    create request (POST) makes one, before the answer (which comes after `delay` seconds), and
    the Messages list (GET, To/From filters, newest first, PageSize, `next_page_uri`) reads them.
    Use as a ProviderServer's `respond`; `created` are the POSTs' resources."""

    def __init__(self, delay: float = 0.0):
        self.delay, self.created, self._lock = delay, [], threading.Lock()

    def __call__(self, request) -> Reply:
        if request.method == "GET":
            return self.page(request)
        return Reply(201, json=self.keep(request), delay=self.delay)

    def keep(self, request, sid: str = "") -> dict:
        """The Message resource a create request makes (`sid`, else a new one), kept."""
        form = request.form()
        resource = {"sid": sid or "SM" + uuid.uuid4().hex, "status": "queued",
                    "to": form.get("To"), "from": form.get("From"), "body": form.get("Body"),
                    "num_segments": "1", "error_code": None,
                    "date_created": format_datetime(datetime.now(UTC))}
        with self._lock:
            self.created.append(resource)
        return resource

    def page(self, request) -> Reply:
        query = {name: values[-1] for name, values in request.query.items()}
        size, number = int(query.get("PageSize", 50)), int(query.get("Page", 0))
        with self._lock:
            listed = [m for m in reversed(self.created)
                      if all(m[field] == query[name] for name, field in (("To", "to"),
                                                                        ("From", "from"))
                             if name in query)]
        chunk = listed[number * size:(number + 1) * size]
        following = None
        if (number + 1) * size < len(listed):
            following = (f"/2010-04-01/Accounts/{SID}/Messages.json?" + urlencode(
                {**{k: v for k, v in query.items() if k != "Page"}, "PageSize": size,
                 "Page": number + 1}))
        return Reply(200, json={"messages": chunk, "page": number, "page_size": size,
                                "next_page_uri": following})


def twilio_keeping(reply):
    """`reply(request)` for Twilio's create requests, with what it accepted (201) kept as a
    Message resource (its sid from the answer), and the Messages list (GET) read from those."""
    records = TwilioRecords()

    def respond(request) -> Reply:
        if request.method == "GET":
            return records.page(request)
        answer = reply(request)
        if answer.status == 201:
            records.keep(request, sid=(answer.json or {}).get("sid") or "")
        return answer

    return respond


def message_id_of(request) -> str:
    """Clarion's message id in a recorded Twilio request (its StatusCallback URL's)."""
    return parse_qs(urlsplit(request.form()["StatusCallback"]).query)["message_id"][0]


def twilio_reports(client, requests, status: str = "sent") -> None:
    """Twilio's status callback for each of `requests` (the Messages.json requests a
    ProviderServer recorded): MessageStatus `status` and a fresh MessageSid, signed as Twilio
    signs, POSTed through the Django test `client` to the request's StatusCallback URL (which
    names Clarion's message); AssertionError unless each is answered 204."""
    for request in requests:
        url, form = request.form()["StatusCallback"], request.form()
        params = {"AccountSid": SID, "MessageSid": "SM" + uuid.uuid4().hex,
                  "MessageStatus": status, "To": form["To"], "From": form["From"]}
        signature = twilio_signature(url, {k: [v] for k, v in params.items()}, TOKEN)
        path = urlsplit(url)
        response = client.post(f"{path.path}?{path.query}", data=urlencode(params),
                               content_type="application/x-www-form-urlencoded",
                               HTTP_X_TWILIO_SIGNATURE=signature)
        assert response.status_code == 204, response.content


@pytest.fixture
def twilio(twilio_provider):
    return twilio_provider()


def test_twilio_gets_the_documented_request_and_its_sid_is_kept(twilio, queue_message):
    message = queue_message("sms", {"text": "Hi {{ recipient.name }}, code 1234"},
                            recipient={"id": "u1", "name": "Ada", "phone": PHONE})
    deliver(str(message.id))
    [request] = twilio.requests
    assert twilio.problems == []
    assert request.form() == {"To": PHONE, "From": "+15550001111",
                              "Body": "Hi Ada, code 1234"}
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.provider == "twilio-main"
    assert message.provider_message_id.startswith("SM")
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.status_code, attempt.provider_kind) == (
        "succeeded", 201, "twilio")
    ledger = json.dumps([attempt.request, attempt.response])
    assert TOKEN not in ledger and "[redacted]" in ledger
    assert attempt.request["data"]["Body"] == "Hi Ada, code 1234"
    assert message.provider_message_id in attempt.response["body"]


def test_sms_queued_step_log_counts_segments(twilio, queue_message):
    message = queue_message("sms", {"text": "é" * 100 + "😀"})
    log = message.run.step_logs.get(event="queued")
    assert (log.detail["encoding"], log.detail["segments"]) == ("UCS-2", 2)


def test_invalid_number_error_is_permanent_and_fails_over_without_retry(
        twilio_provider, plivo_provider, queue_message):
    refusing = twilio_provider(lambda r: Reply(400, json={
        "code": 21211, "message": "The 'To' number is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}), priority=1)
    plivo = plivo_provider(key="plivo-backup", priority=2)
    message = queue_message("sms", {"text": "Hello"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.provider == "plivo-backup"
    assert len(refusing.requests) == 1 and len(plivo.requests) == 1
    assert list(message.delivery_attempts.values_list("provider", "outcome", "status_code")) == [
        ("twilio-main", "permanent_error", 400), ("plivo-backup", "succeeded", 202)]
    assert "21211" in message.delivery_attempts.first().error
    assert queued_tasks("notifications.tasks.deliver_message") == []
    assert message.run.step_logs.get(event="sent").detail["tried"] == [
        "twilio-main", "plivo-backup"]


API_KEY, API_SECRET = "vonage-key", "vonage-api-secret"


def vonage_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", "/sms/json"):
        problems.append(f"{request.method} {request.path}")
    form = request.form()
    if (form.get("api_key"), form.get("api_secret")) != (API_KEY, API_SECRET):
        problems.append("credentials")
    for name in ("from", "to", "text"):
        if not form.get(name):
            problems.append(f"missing {name}")
    if not form.get("to", "").isdigit():
        problems.append("to must be digits in international format, without +")
    return problems


def vonage_answers(status="0"):
    def respond(request) -> Reply:
        part = {"to": request.form()["to"], "status": status}
        if status == "0":
            part.update({"message-id": uuid.uuid4().hex[:16].upper(),
                         "remaining-balance": "3.14", "message-price": "0.0333",
                         "network": "12345"})
        else:
            part["error-text"] = {"1": "Throttled", "4": "Bad Credentials"}.get(status, "Error")
        return Reply(200, json={"message-count": "1", "messages": [part]})

    return respond


@pytest.fixture
def vonage(provider_server, provider_config):
    def start(status="0"):
        server = provider_server(vonage_check, vonage_answers(status))
        provider_config("vonage", "sms", "vonage",
                        {"api_key": API_KEY, "api_secret": API_SECRET, "from": "Acme"},
                        options={"base_url": server.url})
        return server

    return start


def test_vonage_gets_the_documented_request_and_unicode_type(vonage, queue_message):
    server = vonage()
    message = queue_message("sms", {"text": "Olá 😀"})
    deliver(str(message.id))
    assert server.problems == []
    form = server.requests[0].form()
    assert (form["to"], form["from"], form["text"], form["type"]) == (
        "15550002222", "Acme", "Olá 😀", "unicode")
    assert form["client-ref"] == str(message.id)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    attempt = message.delivery_attempts.get()
    assert API_SECRET not in json.dumps(attempt.request)
    assert attempt.request["data"]["api_secret"] == "[redacted]"


def test_vonage_throttled_status_is_transient_even_with_http_200(vonage, queue_message):
    vonage(status="1")
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR
    assert "Vonage status 1: Throttled" in message.error


def test_vonage_bad_credentials_status_is_permanent(vonage, queue_message):
    vonage(status="4")
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == "Vonage status 4: Bad Credentials"


AUTH_ID, PLIVO_TOKEN = "MAXXXXXXXXXXXXXXXXXX", "plivo-auth-token"


def plivo_check(request) -> list[str]:
    problems = []
    if (request.method, request.path) != ("POST", f"/v1/Account/{AUTH_ID}/Message/"):
        problems.append(f"{request.method} {request.path}")
    if request.headers.get("authorization") != basic(AUTH_ID, PLIVO_TOKEN):
        problems.append("auth")
    if request.headers.get("content-type") != "application/json":
        problems.append("content-type")
    body = request.json()
    for name in ("src", "dst", "text"):
        if not body.get(name):
            problems.append(f"missing {name}")
    return problems


def plivo_accepts(request) -> Reply:
    return Reply(202, json={"message": "message(s) queued",
                            "message_uuid": [str(uuid.uuid4())], "api_id": str(uuid.uuid4())})


def test_plivo_gets_the_documented_request(plivo_provider, queue_message):
    server = plivo_provider()
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json() == {"src": "+15550003333", "dst": PHONE, "text": "Hi"}
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert uuid.UUID(message.provider_message_id)


def test_plivo_is_given_its_status_callback_url_naming_the_message(
        provider_server, provider_config, queue_message):
    server = provider_server(plivo_check, plivo_accepts)
    provider_config("plivo", "sms", "plivo",
                    {"auth_id": AUTH_ID, "auth_token": PLIVO_TOKEN, "from": "+15550003333"},
                    options={"base_url": server.url,
                             "status_callback_url": "https://hooks.example.test/plivo?x=1"})
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    assert server.problems == []
    assert server.requests[0].json()["url"] == \
        f"https://hooks.example.test/plivo?x=1&message_id={message.id}"


@pytest.mark.parametrize("phone, reason", [
    ("", "The recipient has no phone number."),
    ("555-0100", "The recipient's phone '555-0100' is not an E.164 number."),
])
def test_sms_step_without_a_valid_phone_is_undeliverable(queue_message, phone, reason):
    message = queue_message("sms", {"text": "Hi"}, recipient={"id": "u1", "phone": phone})
    assert (message.status, message.error) == (Message.Status.UNDELIVERABLE, reason)


def test_sms_without_any_provider_fails_with_the_reason(queue_message):
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == "No provider is configured for the sms channel."


def test_trigger_to_sms_through_the_real_queue(twilio, make_workflow, run_tasks):
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow

    workflow = make_workflow("otp", steps=[StepSpec(
        ref="text", type="sms", templates={"en": {"text": "Code {{ data.code }}"}})])
    trigger_workflow(TriggerRequest(workflow=workflow, data={"code": "4321"}, recipients=[
        {"id": "u1", "phone": PHONE}, {"id": "u2", "phone": "+15550003333"}]))
    # One task advances the trigger's runs, one delivers the batch's two messages.
    assert run_tasks() == ["notifications.tasks.advance_lane",
                           "notifications.tasks.deliver_messages"]
    assert sorted(r.form()["To"] for r in twilio.requests) == [PHONE, "+15550003333"]
    assert {r.form()["Body"] for r in twilio.requests} == {"Code 4321"}
    assert set(Message.objects.values_list("status", flat=True)) == {"sent"}
    assert DeliveryAttempt.objects.filter(outcome="succeeded").count() == 2


# --- Status callback URLs -----------------------------------------------------------------------

def test_twilio_is_given_its_status_webhook_on_public_url_as_status_callback(
        twilio, queue_message, settings, client):
    settings.PUBLIC_URL = "https://notify.example.test"
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    form = twilio.requests[0].form()
    callback = ("https://notify.example.test/webhooks/twilio/twilio-main/status/"
                f"?message_id={message.id}")
    assert form["StatusCallback"] == callback
    # Twilio then calls that URL, signed for it: the real route takes it.
    message.refresh_from_db()
    params = {"MessageSid": message.provider_message_id, "MessageStatus": "delivered",
              "AccountSid": SID}
    parts = urlsplit(callback)
    response = client.post(f"{parts.path}?{parts.query}", data=urlencode(params),
                           content_type="application/x-www-form-urlencoded",
                           HTTP_X_TWILIO_SIGNATURE=twilio_signature(
                               callback, {k: [v] for k, v in params.items()}, TOKEN))
    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED


def test_an_explicit_status_callback_url_wins_over_public_url(twilio, queue_message, settings,
                                                              provider_config):
    settings.PUBLIC_URL = "https://notify.example.test"
    ProviderConfig.objects.filter(key="twilio-main").update(options={
        "base_url": twilio.url, "status_callback_url": "https://hooks.example.test/twilio"})
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    assert twilio.requests[0].form()["StatusCallback"] == \
        f"https://hooks.example.test/twilio?message_id={message.id}"


@pytest.mark.parametrize("public_url", ["http://localhost:8000", "http://127.0.0.1:8000"])
def test_no_status_callback_is_sent_for_a_public_url_no_provider_can_reach(
        twilio, queue_message, settings, public_url):
    settings.PUBLIC_URL = public_url
    deliver(str(queue_message("sms", {"text": "Hi"}).id))
    assert "StatusCallback" not in twilio.requests[0].form()


def test_vonage_is_given_its_receipt_webhook_on_public_url_as_callback(vonage, queue_message,
                                                                       settings):
    settings.PUBLIC_URL = "https://notify.example.test/"
    server = vonage()
    deliver(str(queue_message("sms", {"text": "Your code is 1234"}).id))
    assert server.problems == []
    assert server.requests[0].form()["callback"] == \
        "https://notify.example.test/webhooks/vonage/vonage/receipt/"


# --- Per-recipient SMS rate limit ---------------------------------------------------------------

def test_sms_beyond_the_per_number_limit_are_suppressed_with_the_reason_and_never_sent(
        twilio, make_workflow, run_tasks, clarion_settings):
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow

    clarion_settings(SMS_RATE_LIMIT_PER_RECIPIENT=2, SMS_RATE_LIMIT_WINDOW_SECONDS=3600)
    workflow = make_workflow("otp", steps=[StepSpec(
        ref="text", type="sms", templates={"en": {"text": "Code {{ data.code }}"}})])
    # Three triggers to one number (under two recipient ids), one to another number.
    for recipient in ({"id": "u1", "phone": PHONE}, {"id": "u1", "phone": PHONE},
                      {"id": "u1-alias", "phone": PHONE}, {"id": "u2", "phone": "+15550003333"}):
        trigger_workflow(TriggerRequest(workflow=workflow, data={"code": "1"},
                                        recipients=[recipient]))
    run_tasks()
    assert sorted(r.form()["To"] for r in twilio.requests) == [PHONE, PHONE, "+15550003333"]
    limited = Message.objects.get(status=Message.Status.SUPPRESSED)
    reason = (f"Rate limited: more than 2 SMS to {PHONE} within 3600 seconds "
              "(CLARION_SMS_RATE_LIMIT_PER_RECIPIENT).")
    assert (limited.to, limited.error) == (PHONE, reason)
    assert not limited.delivery_attempts.exists()
    log = limited.run.step_logs.get(event="rate_limited")
    assert log.detail == {"message_id": str(limited.id), "reason": reason, "limit": 2,
                          "window_seconds": 3600}
    assert Message.objects.filter(status=Message.Status.SENT).count() == 3


# --- Failover after a carrier's late refusal ----------------------------------------------------

@pytest.fixture
def two_twilios(twilio_provider):
    return {key: twilio_provider(key=key, priority=priority)
            for key, priority in (("twilio-main", 1), ("twilio-backup", 2))}


def post_status(client, key: str, sid: str, status: str, error_code: str = "",
                token: str = "") -> int:
    path = f"/webhooks/twilio/{key}/status/"
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": SID}
    if error_code:
        params["ErrorCode"] = error_code
    signature = twilio_signature(f"http://testserver{path}",
                                 {k: [v] for k, v in params.items()}, TOKEN)
    return client.post(path, data=urlencode(params),
                       content_type="application/x-www-form-urlencoded",
                       HTTP_X_TWILIO_SIGNATURE=signature, HTTP_I_TWILIO_IDEMPOTENCY_TOKEN=token
                       or f"{sid}-{status}").status_code


def test_an_undelivered_callback_with_a_route_error_fails_over_to_the_next_provider_once(
        two_twilios, queue_message, run_tasks, client):
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    message.refresh_from_db()
    first_sid = message.provider_message_id
    assert (message.status, message.provider) == ("sent", "twilio-main")

    # Twilio 30008 "unknown error": the route failed, not the number. Twilio retries it too.
    for _ in range(2):
        assert post_status(client, "twilio-main", first_sid, "undelivered", "30008") == 204
    assert run_tasks() == ["notifications.tasks.deliver_message"]
    message.refresh_from_db()
    assert (message.status, message.provider) == ("sent", "twilio-backup")
    assert message.provider_message_id != first_sid and message.error == ""
    assert [len(s.requests) for s in two_twilios.values()] == [1, 1]
    assert list(message.delivery_attempts.values_list("provider", "outcome")) == [
        ("twilio-main", "succeeded"), ("twilio-main", "carrier_refused"),
        ("twilio-backup", "succeeded")]
    refused = message.delivery_attempts.get(outcome="carrier_refused")
    assert refused.error == ("Accepted, then not delivered by the carrier: "
                             "undelivered (Twilio error 30008)")
    retry = message.run.step_logs.get(event="retrying")
    assert (retry.detail["provider"], retry.detail["next"], retry.detail["error"]) == (
        "twilio-main", "twilio-backup", "undelivered (Twilio error 30008)")
    # A late "delivered" about the first send changes nothing; the second send's does.
    assert post_status(client, "twilio-main", first_sid, "delivered") == 204
    message.refresh_from_db()
    assert message.status == "sent"

    # The backup's carrier refuses too: no third send, the message stays failed.
    assert post_status(client, "twilio-backup", message.provider_message_id, "undelivered",
                       "30008") == 204
    assert run_tasks() == []
    message.refresh_from_db()
    assert (message.status, message.error) == ("failed", "undelivered (Twilio error 30008)")
    assert [len(s.requests) for s in two_twilios.values()] == [1, 1]


@pytest.mark.parametrize("code", ["21610", "30003", "30005", ""])
def test_a_refusal_that_is_permanent_for_the_number_never_fails_over(
        two_twilios, queue_message, run_tasks, client, code):
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert post_status(client, "twilio-main", message.provider_message_id, "undelivered",
                       code) == 204
    assert run_tasks() == []
    message.refresh_from_db()
    assert (message.status, message.provider) == ("failed", "twilio-main")
    assert not message.delivery_attempts.filter(outcome="carrier_refused").exists()
    assert len(two_twilios["twilio-backup"].requests) == 0


def test_a_route_error_with_no_provider_left_leaves_the_message_failed(
        twilio, queue_message, run_tasks, client):
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert post_status(client, "twilio-main", message.provider_message_id, "failed",
                       "30008") == 204
    assert run_tasks() == []
    message.refresh_from_db()
    assert message.status == "failed" and len(twilio.requests) == 1


# --- A status callback faster than Twilio's own answer ------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_a_twilio_callback_that_arrives_before_twilios_answer_leaves_the_sms_delivered(
        live_server, provider_server, provider_config, queue_message):
    callbacks, sids = [], []

    def call_back_then_answer(request):
        # Twilio has the message: its StatusCallback reaches Clarion (a real HTTP call to the
        # URL it was given, signed as Twilio signs) before Twilio's 201 reaches the sender.
        form, sid = request.form(), "SM" + uuid.uuid4().hex
        sids.append(sid)
        url = form["StatusCallback"]
        params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": SID,
                  "To": form["To"], "From": form["From"]}
        signature = twilio_signature(url, {k: [v] for k, v in params.items()}, TOKEN)
        callbacks.append(httpx.post(url, data=params, headers={"X-Twilio-Signature": signature}))
        return Reply(201, json={"sid": sid, "status": "queued"})

    server = provider_server(twilio_check, call_back_then_answer)
    provider_config("twilio-main", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url, "status_callback_url":
                             f"{live_server.url}/webhooks/twilio/twilio-main/status/"})
    message = queue_message("sms", {"text": "Your code is 1234"})
    deliver(str(message.id))
    assert server.problems == []
    assert [response.status_code for response in callbacks] == [204]
    message.refresh_from_db()
    assert message.status == Message.Status.DELIVERED
    assert message.provider_message_id == sids[0]
    event = message.events.get()
    assert (event.kind, event.provider_message_id) == ("delivered", message.provider_message_id)
