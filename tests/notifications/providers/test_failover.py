"""Retries, failover and the circuit breaker, with real servers and an injected clock."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery import deliver, deliver_batch
from notifications.models import DeliveryAttempt, Message, ProviderConfig

from .servers import Reply
from .test_sms import (
    AUTH_ID,
    PLIVO_TOKEN,
    SID,
    TOKEN,
    plivo_accepts,
    plivo_check,
    twilio_accepts,
    twilio_check,
)

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)


@pytest.fixture
def two_providers(twilio_then_plivo, clarion_settings):
    """Twilio (priority 1, answering 503) and Plivo (priority 2, accepting)."""
    clarion_settings(DELIVERY_MAX_ATTEMPTS=2, DELIVERY_BACKOFF_SECONDS=10, BREAKER_FAILURES=3,
                     BREAKER_COOLDOWN_SECONDS=60)
    return twilio_then_plivo(lambda r: Reply(503, json={
        "code": 20500, "message": "Service unavailable", "status": 503}))


def outcomes(message):
    return list(message.delivery_attempts.values_list("provider", "outcome"))


def breaker(key="primary"):
    config = ProviderConfig.objects.get(key=key)
    return config.consecutive_failures, config.circuit_open_until


def test_primary_failing_retries_then_fails_over_and_the_breaker_opens_then_probes(
        two_providers, queue_message):
    primary, secondary = two_providers
    first = queue_message("sms", {"text": "one"})
    deliver(str(first.id), now=T0)
    first.refresh_from_db()
    # A transient error: retried later on the same provider, with backoff.
    assert first.status == Message.Status.QUEUED
    assert T0 + timedelta(seconds=5) <= first.next_attempt_at <= T0 + timedelta(seconds=10)
    assert outcomes(first) == [("primary", "transient_error")]

    deliver(str(first.id), now=first.next_attempt_at)
    first.refresh_from_db()
    # Retries on the primary exhausted (2): failed over to the secondary in the same pass.
    assert (first.status, first.provider) == (Message.Status.SENT, "secondary")
    assert outcomes(first) == [("primary", "transient_error"), ("primary", "transient_error"),
                               ("secondary", "succeeded")]
    assert breaker() == (2, None)

    second = queue_message("sms", {"text": "two"})
    t1 = T0 + timedelta(seconds=30)
    deliver(str(second.id), now=t1)
    # The third failure in a row opens the circuit for the cool-down.
    assert breaker() == (3, t1 + timedelta(seconds=60))
    second.refresh_from_db()
    deliver(str(second.id), now=second.next_attempt_at)
    second.refresh_from_db()
    # While open, the primary is skipped: no call, straight to the secondary.
    assert (second.status, second.provider) == (Message.Status.SENT, "secondary")
    assert outcomes(second) == [("primary", "transient_error"), ("secondary", "succeeded")]
    assert len(primary.requests) == 3

    third = queue_message("sms", {"text": "three"})
    deliver(str(third.id), now=t1 + timedelta(seconds=59))
    assert outcomes(third) == [("secondary", "succeeded")]
    assert len(primary.requests) == 3

    # After the cool-down one message probes the primary, which has recovered.
    primary.respond = twilio_accepts
    fourth = queue_message("sms", {"text": "four"})
    deliver(str(fourth.id), now=t1 + timedelta(seconds=61))
    assert outcomes(fourth) == [("primary", "succeeded")]
    assert len(primary.requests) == 4
    assert breaker() == (0, None)
    assert primary.problems == secondary.problems == []


def test_a_failed_probe_keeps_the_circuit_open_for_another_cool_down(
        two_providers, queue_message):
    primary, _ = two_providers
    ProviderConfig.objects.filter(key="primary").update(consecutive_failures=3,
                                                        circuit_open_until=T0)
    message = queue_message("sms", {"text": "probe"})
    deliver(str(message.id), now=T0 + timedelta(seconds=1))
    assert len(primary.requests) == 1
    assert breaker() == (4, T0 + timedelta(seconds=61))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED  # retried later; the breaker decides where


def test_only_one_caller_gets_the_half_open_probe(two_providers):
    from notifications.providers.breaker import breaker_allows

    ProviderConfig.objects.filter(key="primary").update(circuit_open_until=T0)
    a, b = ProviderConfig.objects.get(key="primary"), ProviderConfig.objects.get(key="primary")
    now = T0 + timedelta(seconds=1)
    assert [breaker_allows(a, now=now), breaker_allows(b, now=now)] == [True, False]


def test_every_circuit_open_waits_for_the_first_cool_down_instead_of_failing(
        two_providers, queue_message):
    ProviderConfig.objects.filter(key="primary").update(circuit_open_until=T0 + timedelta(
        seconds=90))
    ProviderConfig.objects.filter(key="secondary").update(circuit_open_until=T0 + timedelta(
        seconds=30))
    message = queue_message("sms", {"text": "wait"})
    deliver(str(message.id), now=T0)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at == T0 + timedelta(seconds=30)
    assert not message.delivery_attempts.exists()
    assert "circuit is open" in message.error


def test_retry_after_is_honoured_when_longer_than_the_backoff(
        twilio_provider, queue_message, clarion_settings):
    clarion_settings(DELIVERY_BACKOFF_SECONDS=1)
    twilio_provider(lambda r: Reply(429, json={
        "code": 20429, "message": "Too Many Requests", "status": 429},
        headers={"Retry-After": "120"}), key="twilio")
    message = queue_message("sms", {"text": "slow down"})
    deliver(str(message.id), now=T0)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    assert message.next_attempt_at == T0 + timedelta(seconds=120)
    attempt = message.delivery_attempts.get()
    assert (attempt.outcome, attempt.status_code) == ("transient_error", 429)


def test_connection_refused_is_transient(provider_config, queue_message):
    from tests.conftest import free_port

    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": f"http://127.0.0.1:{free_port()}"})
    message = queue_message("sms", {"text": "nobody home"})
    deliver(str(message.id), now=T0)
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR
    assert attempt.error.startswith("connection error: ConnectError")
    assert TOKEN not in str(attempt.request)


def test_timeout_is_transient(provider_server, provider_config, queue_message):
    server = provider_server(twilio_check, lambda r: Reply(201, json={"sid": "SMx"}, delay=1))
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url, "timeout": 0.2})
    message = queue_message("sms", {"text": "too slow"})
    deliver(str(message.id), now=T0)
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR
    assert attempt.error.startswith("timeout: ReadTimeout")


def test_a_tenants_own_provider_is_tried_before_the_global_ones(
        provider_server, provider_config, queue_message, acme):
    global_server = provider_server(twilio_check, twilio_accepts)
    tenant_server = provider_server(plivo_check, plivo_accepts)
    provider_config("global", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": global_server.url}, priority=1)
    provider_config("acme-own", "sms", "plivo",
                    {"auth_id": AUTH_ID, "auth_token": PLIVO_TOKEN, "from": "+15550003333"},
                    options={"base_url": tenant_server.url}, priority=5, tenant=acme)
    acme_message = queue_message("sms", {"text": "acme"}, tenant=acme)
    other = queue_message("sms", {"text": "nobody's"})
    deliver(str(acme_message.id))
    deliver(str(other.id))
    acme_message.refresh_from_db()
    other.refresh_from_db()
    assert (acme_message.provider, other.provider) == ("acme-own", "global")
    assert len(tenant_server.requests) == len(global_server.requests) == 1


def test_inactive_providers_are_not_used(two_providers, queue_message):
    primary, secondary = two_providers
    ProviderConfig.objects.filter(key="primary").update(active=False)
    message = queue_message("sms", {"text": "hi"})
    deliver(str(message.id))
    assert outcomes(message) == [("secondary", "succeeded")]
    assert primary.requests == []


def test_a_batch_sends_its_messages_concurrently_each_once(
        provider_server, provider_config, queue_message):
    on_the_wire = []  # how many requests the server held when each arrived (itself included)

    def respond(request):
        on_the_wire.append(len(server.in_flight))
        return Reply(201, json={"sid": "SM" + request.form()["Body"]}, delay=0.3)

    server = provider_server(twilio_check, respond)
    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url})
    messages = [queue_message("sms", {"text": f"n{i}"}) for i in range(12)]

    claimed = deliver_batch(str(messages[0].id), size=50)
    assert claimed == 12
    # Concurrent, not one after the other: requests arrived while others (0.3 s each) were
    # still unanswered. Counted at the server rather than timed, so a loaded machine cannot
    # fail it.
    assert len(on_the_wire) == 12 and max(on_the_wire) >= 4
    assert server.problems == []
    for message in messages:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert message.provider_message_id == "SM" + message.content["text"]
        assert message.delivery_attempts.count() == 1
    # Their own tasks then find them claimed and do nothing.
    assert deliver_batch(str(messages[5].id), size=50) == 0
    assert len(server.requests) == 12


def test_a_task_always_claims_its_own_message_first(provider_server, provider_config,
                                                    queue_message):
    from notifications.delivery import claim_batch

    provider_config("twilio", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": "http://127.0.0.1:9"})
    messages = [queue_message("sms", {"text": f"n{i}"}) for i in range(5)]
    newest = messages[-1]
    claimed = claim_batch(now=timezone.now(), limit=3, first=str(newest.id))
    assert len(claimed) == 3
    assert newest.id in {m.id for m in claimed}
    assert Message.objects.filter(status=Message.Status.SENDING).count() == 3
    assert claim_batch(now=timezone.now(), limit=3, first=str(newest.id)) == []


def test_undecryptable_credentials_fail_the_message_rather_than_fall_back(
        provider_config, queue_message, clarion_settings, locmem):
    from cryptography.fernet import Fernet

    clarion_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    provider_config("postmark", "email", "postmark", {"server_token": "t"})
    clarion_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    message = queue_message("email", {"subject": "s", "text": "t"},
                            recipient={"id": "u1", "email": "ada@example.com"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.error) == (
        Message.Status.FAILED, "Provider postmark is unusable: The credentials cannot be "
        "decrypted with CLARION_ENCRYPTION_KEY.")
    assert locmem.outbox == []  # not sent through Django's EMAIL_BACKEND instead


# --- A resend is a new send ----------------------------------------------------------------

TWILIO_REFUSES = Reply(400, json={"code": 21211, "message": "Invalid 'To' Phone Number",
                                  "status": 400})
PLIVO_DOWN = Reply(503, json={"error": "service unavailable"})


def test_a_resend_gives_the_providers_its_first_send_excluded_a_fresh_chance(
        twilio_then_plivo, queue_message, clarion_settings):
    from notifications.services import message_resend

    clarion_settings(DELIVERY_MAX_ATTEMPTS=2, DELIVERY_BACKOFF_SECONDS=10,
                     BREAKER_FAILURES=100)
    primary, secondary = twilio_then_plivo(twilio_accepts)
    primary.script(TWILIO_REFUSES)
    secondary.script(PLIVO_DOWN, PLIVO_DOWN)
    message = queue_message("sms", {"text": "again"})
    deliver(str(message.id), now=T0)  # the primary refuses for good; the secondary is down
    message.refresh_from_db()
    deliver(str(message.id), now=message.next_attempt_at)
    message.refresh_from_db()
    # Within one send the primary stays excluded: its second pass called the secondary only.
    assert (message.status, len(primary.requests), len(secondary.requests)) == (
        Message.Status.FAILED, 1, 2)

    assert message_resend(message=message)
    message.refresh_from_db()
    assert (message.status, message.attempts, message.send_number) == ("queued", 0, 2)
    primary.script(Reply(503, json={"code": 20500, "message": "Service unavailable",
                                    "status": 503}))
    deliver(str(message.id), now=T0 + timedelta(minutes=5))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED  # a transient error: this send retries
    deliver(str(message.id), now=message.next_attempt_at)

    message.refresh_from_db()
    # The second pass of the new send reads only its own attempts: the primary's refusal in
    # the first send does not exclude it now, and it takes the message.
    assert (message.status, message.provider, message.attempts) == (
        Message.Status.SENT, "primary", 2)
    assert len(primary.requests) == 3 and len(secondary.requests) == 2
    assert list(message.delivery_attempts.values_list("send_number", "provider", "outcome")) == [
        (1, "primary", "permanent_error"), (1, "secondary", "transient_error"),
        (1, "secondary", "transient_error"), (2, "primary", "transient_error"),
        (2, "primary", "succeeded")]
    assert primary.problems == secondary.problems == []


def test_a_resend_whose_worker_died_before_its_call_is_sent_again_not_taken_for_the_first(
        twilio_provider, queue_message):
    """The first send was accepted, then the carrier reported it failed; the resend's worker
    died after claiming it, before any call: the first send's success must not pass for the
    resend's (the sweeper would mark it sent and it would never go out)."""
    from notifications.models import StepLog
    from notifications.services import message_resend
    from notifications.tasks import sweep

    server = twilio_provider()
    message = queue_message("sms", {"text": "once more"})
    deliver(str(message.id))
    message.refresh_from_db()
    first_id = message.provider_message_id
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED,
                                                 error="30003: Unreachable destination handset")
    assert message_resend(message=message, by="support@example.com")
    (resent,) = StepLog.objects.filter(run_id=message.run_id, event=StepLog.Event.QUEUED,
                                       detail__resent=True)
    assert resent.detail == {"message_id": str(message.id), "resent": True, "send_number": 2,
                             "by": "support@example.com"}
    # A worker claims it, then dies before its provider call starts.
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, attempts=1, updated_at=timezone.now() - timedelta(hours=1))

    sweep()

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.QUEUED, 0)
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.provider_message_id != first_id
    assert len(server.requests) == 2
    assert list(message.delivery_attempts.values_list("send_number", "outcome")) == [
        (1, "succeeded"), (2, "succeeded")]


def test_a_stalled_worker_of_the_first_send_does_not_write_over_the_resends_outcome(
        twilio_provider, queue_message):
    """A worker stalled in a call of the first send (the sweeper failed the message meanwhile,
    support resent it, another worker is sending it) ends: its call goes in the ledger under
    the first send, and the message stays the resend's."""
    from notifications.delivery import deliver_claimed

    server = twilio_provider()
    message = queue_message("sms", {"text": "slow"})
    stalled = Message.objects.get(pk=message.pk)  # as the first send's worker read it
    stalled.status, stalled.attempts = Message.Status.SENDING, 1
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING, attempts=1,
                                                 send_number=2)
    deliver_claimed([stalled], now=timezone.now())
    message.refresh_from_db()
    assert (message.status, message.send_number, message.provider_message_id) == (
        Message.Status.SENDING, 2, "")
    assert list(message.delivery_attempts.values_list("send_number", "outcome")) == [
        (1, "succeeded")]
    assert len(server.requests) == 1


def test_a_resend_whose_worker_died_during_its_call_is_not_called_twice(
        plivo_provider, queue_message):
    """Exactly once per send: the resend's call was on the wire when its worker died and no
    report names it, and Plivo cannot be asked what it holds, so its outcome is unknown: the
    resend is failed, never called again (the first send's success does not pass for it
    either)."""
    from notifications.services import message_resend
    from notifications.tasks import sweep

    server = plivo_provider()
    message = queue_message("sms", {"text": "on the wire"})
    deliver(str(message.id))
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED)
    assert message_resend(message=message)
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, attempts=1, updated_at=timezone.now() - timedelta(hours=1))
    DeliveryAttempt.objects.create(message=message, provider="plivo", provider_kind="plivo",
                                   send_number=2, started_at=timezone.now())

    sweep()

    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.error == ("Delivery outcome unknown: the worker stopped during the provider "
                             "call.")
    deliver(str(message.id))
    assert len(server.requests) == 1  # the first send's only
    assert list(message.delivery_attempts.values_list("send_number", "outcome")) == [
        (1, "succeeded"), (2, "unknown")]


def test_a_resend_cut_short_before_twilio_had_it_is_sent_once_not_taken_for_the_first_send(
        twilio_provider, queue_message):
    """Twilio's list holds the first send (same text, same number): that is not the resend, so
    the resend, which never reached Twilio, is queued again and sent once."""
    from notifications.services import message_resend
    from notifications.tasks import sweep

    server = twilio_provider()
    message = queue_message("sms", {"text": "on the wire"})
    deliver(str(message.id))
    message.refresh_from_db()
    first_sid = message.provider_message_id
    Message.objects.filter(pk=message.pk).update(status=Message.Status.FAILED)
    assert message_resend(message=message)
    Message.objects.filter(pk=message.pk).update(
        status=Message.Status.SENDING, attempts=1, updated_at=timezone.now() - timedelta(hours=1))
    DeliveryAttempt.objects.create(message=message, provider="twilio-main",
                                   provider_kind="twilio", send_number=2,
                                   started_at=timezone.now())

    sweep()

    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert message.provider_message_id not in ("", first_sid)
    assert len([r for r in server.requests if r.method == "POST"]) == 2  # each send once
    assert server.problems == []
    assert list(message.delivery_attempts.order_by("id").values_list("send_number", "outcome")) \
        == [(1, "succeeded"), (2, "transient_error"), (2, "succeeded")]
