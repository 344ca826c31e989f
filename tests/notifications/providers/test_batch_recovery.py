"""A batch's worker stopping between rounds, and a message sent again after a carrier's refusal:
nothing is sent twice, nothing is left behind."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery import batch, calls, claim_batch, deliver_batch, deliver_claimed
from notifications.delivery.status import message_event_record
from notifications.models import DeliveryAttempt, Message
from notifications.providers.twilio import from_twilio
from notifications.tasks import sweep

from .servers import Reply
from .test_sms import twilio_accepts

T0 = timezone.now().replace(microsecond=0) + timedelta(days=1)


class WorkerStopped(BaseException):
    """The worker process dies here (SIGKILL, or django-q's task timeout)."""


@pytest.fixture
def two(twilio_then_plivo):
    """Twilio first (refusing any "bravo" with a 400), Plivo second."""
    def primary_reply(request):
        if "bravo" in request.form()["Body"]:
            return Reply(400, json={"code": 21211, "message": "Invalid 'To'", "status": 400})
        return twilio_accepts(request)

    return twilio_then_plivo(primary_reply)


def bodies(server, text):
    return [r for r in server.requests if r.method == "POST" and text in r.form()["Body"]]


def test_a_message_accepted_before_the_worker_stopped_in_a_later_round_is_never_resent(
        two, queue_message, monkeypatch):
    primary, secondary = two
    alpha = queue_message("sms", {"text": "alpha"})
    queue_message("sms", {"text": "bravo"})  # refused: fails over in a second round
    perform, rounds = batch._perform, []

    def stop_in_round_two(calls, **kwargs):
        rounds.append(calls)
        if len(rounds) == 2:
            raise WorkerStopped()
        return perform(calls, **kwargs)

    monkeypatch.setattr(batch, "_perform", stop_in_round_two)
    with pytest.raises(WorkerStopped):
        deliver_claimed(claim_batch(now=T0, limit=10), now=T0)
    monkeypatch.setattr(batch, "_perform", perform)
    alpha.refresh_from_db()
    assert alpha.status == Message.Status.SENDING  # accepted, not yet recorded as sent
    assert len(bodies(primary, "alpha")) == 1

    later = T0 + timedelta(minutes=5)
    counts = sweep(now=later)
    deliver_batch(str(alpha.id), now=later)

    alpha.refresh_from_db()
    assert counts["recovered"] == 1
    assert alpha.status == Message.Status.SENT
    assert alpha.provider == "primary" and alpha.provider_message_id.startswith("SM")
    assert len(bodies(primary, "alpha")) == 1  # never twice
    assert list(alpha.delivery_attempts.values_list("outcome", flat=True)) == [
        DeliveryAttempt.Outcome.SUCCEEDED]


def test_a_carrier_refusal_is_sent_again_even_by_the_worker_that_sent_it_first(
        two, queue_message):
    primary, secondary = two
    message = queue_message("sms", {"text": "charlie"})
    deliver_batch(str(message.id), now=T0)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT and message.provider == "primary"

    message_event_record(event=from_twilio(
        {"MessageSid": message.provider_message_id, "MessageStatus": "undelivered",
         "ErrorCode": "30008"}, event_id="refused-1"))
    message.refresh_from_db()
    assert message.status == Message.Status.QUEUED

    # Its task runs in the same worker thread that sent it the first time.
    assert deliver_batch(str(message.id), now=T0 + timedelta(seconds=1)) == 1
    message.refresh_from_db()
    assert message.status == Message.Status.SENT and message.provider == "secondary"
    assert len(secondary.requests) == 1


def test_a_call_that_ended_while_the_last_calls_of_a_batch_ran_is_recorded_before_they_end(
        twilio_provider, queue_message, monkeypatch):
    """The worker dies while a batch's last call is on the wire: the calls that ended before it
    are in the ledger already, so the sweeper takes alpha as accepted (not of unknown outcome,
    which would fail a message the provider has); bravo, on the wire, had reached Twilio, whose
    Messages list says so: sent, never twice."""
    def reply(request):
        answer = twilio_accepts(request)
        answer.delay = 1.0 if "bravo" in request.form()["Body"] else 0.0
        return answer

    server = twilio_provider(reply)
    alpha = queue_message("sms", {"text": "alpha"})
    bravo = queue_message("sms", {"text": "bravo"})
    record = calls._record

    def stop_when_bravo_ends(calls, now, unwritten):
        if any(call.delivery.message.pk == bravo.pk for call in calls):
            raise WorkerStopped()
        return record(calls, now, unwritten)

    monkeypatch.setattr(calls, "_record", stop_when_bravo_ends)
    with pytest.raises(WorkerStopped):
        deliver_claimed(claim_batch(now=T0, limit=10), now=T0)
    monkeypatch.setattr(calls, "_record", record)
    assert alpha.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.SUCCEEDED

    counts = sweep(now=T0 + timedelta(minutes=5))
    alpha.refresh_from_db()
    bravo.refresh_from_db()
    assert (counts["recovered"], counts["unknown"]) == (2, 0)
    assert alpha.status == Message.Status.SENT and alpha.provider_message_id.startswith("SM")
    assert bravo.status == Message.Status.SENT and bravo.provider_message_id.startswith("SM")
    assert len(bodies(server, "alpha")) == len(bodies(server, "bravo")) == 1
