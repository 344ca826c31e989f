"""Status events move a message forward only, keep each first time, and are stored once."""

from datetime import UTC, datetime, timedelta

import pytest

from notifications.delivery.status import (
    STATUS_RANK,
    message_event_record,
    message_events_replay,
)
from notifications.models import Message, MessageEvent
from notifications.providers.callbacks import StatusEvent
from notifications.providers.twilio import from_twilio
from notifications.providers.vonage import from_vonage_message_status, from_vonage_receipt

from . import status_support

sent_message = status_support.sent_message  # the fixture

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def report(message, kind, *, minutes=0, event_id="", description="", provider_kind="postmark"):
    return message_event_record(event=StatusEvent(
        provider_kind=provider_kind, kind=kind, provider_message_id=message.provider_message_id,
        occurred_at=T0 + timedelta(minutes=minutes), event_id=event_id,
        description=description, raw={"kind": kind, "minutes": minutes, "id": event_id}))


def test_the_rank_orders_every_status_a_provider_event_can_reach():
    assert [s for s, _ in sorted(STATUS_RANK.items(), key=lambda item: item[1])][-5:] == [
        "bounced", "failed", "opened", "clicked", "complained"]
    assert STATUS_RANK["sent"] < STATUS_RANK["delivered"] < STATUS_RANK["bounced"]


def test_delivered_sets_status_and_time_and_keeps_the_raw_event(sent_message):
    message = sent_message("postmark", "pm-1")
    event = report(message, "delivered", minutes=1)
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == ("delivered", T0 + timedelta(minutes=1))
    assert (event.message_id, event.kind, event.raw) == (
        message.id, "delivered", {"kind": "delivered", "minutes": 1, "id": ""})


def test_a_late_delivered_after_opened_stays_opened_but_records_when_it_was_delivered(
        sent_message):
    message = sent_message("postmark", "pm-2")
    report(message, "opened", minutes=5)
    report(message, "delivered", minutes=1)
    message.refresh_from_db()
    assert message.status == "opened"
    assert (message.opened_at, message.delivered_at) == (T0 + timedelta(minutes=5),
                                                         T0 + timedelta(minutes=1))
    assert list(message.events.values_list("kind", flat=True)) == ["delivered", "opened"]


def test_opened_twice_keeps_the_first_open_time(sent_message):
    message = sent_message("postmark", "pm-3")
    report(message, "opened", minutes=2)
    report(message, "opened", minutes=9)
    message.refresh_from_db()
    assert message.opened_at == T0 + timedelta(minutes=2)
    assert message.events.count() == 2


def test_a_bounce_after_delivered_wins_and_a_delivered_after_the_bounce_does_not(sent_message):
    message = sent_message("postmark", "pm-4")
    report(message, "delivered", minutes=1)
    report(message, "bounced", minutes=2, description="550 mailbox unavailable")
    message.refresh_from_db()
    assert (message.status, message.error) == ("bounced", "550 mailbox unavailable")
    assert message.bounced_at == T0 + timedelta(minutes=2)
    report(message, "delivered", minutes=3)
    message.refresh_from_db()
    assert message.status == "bounced"


def test_a_bounce_after_the_person_opened_does_not_undo_the_open(sent_message):
    message = sent_message("postmark", "pm-5")
    report(message, "clicked", minutes=1)
    report(message, "bounced", minutes=2, description="late DSN")
    message.refresh_from_db()
    assert (message.status, message.error) == ("clicked", "")
    assert message.bounced_at == T0 + timedelta(minutes=2)


def test_a_complaint_is_the_last_word(sent_message):
    message = sent_message("postmark", "pm-6")
    report(message, "clicked", minutes=1)
    report(message, "complained", minutes=2)
    report(message, "opened", minutes=3)
    message.refresh_from_db()
    assert message.status == "complained"
    assert message.complained_at == T0 + timedelta(minutes=2)


@pytest.mark.parametrize("kind", ["queued", "deferred", "unsubscribed", "unknown"])
def test_events_that_say_nothing_about_delivery_are_recorded_without_changing_the_message(
        sent_message, kind):
    message = sent_message("postmark", f"pm-{kind}")
    assert report(message, kind) is not None
    message.refresh_from_db()
    assert message.status == "sent"
    assert list(message.events.values_list("kind", flat=True)) == [kind]


def test_the_same_event_sent_twice_is_stored_once(sent_message):
    message = sent_message("mailgun", "<mg-1@example>")
    first = report(message, "opened", event_id="token-1", provider_kind="mailgun")
    again = report(message, "opened", minutes=4, event_id="token-1", provider_kind="mailgun")
    assert again.pk == first.pk
    assert MessageEvent.objects.filter(message=message).count() == 1


def test_an_event_without_an_id_is_identified_by_its_payload(sent_message):
    message = sent_message("postmark", "pm-7")
    report(message, "opened", minutes=1)
    report(message, "opened", minutes=1)
    report(message, "opened", minutes=2)
    assert message.events.count() == 2


def test_an_event_for_an_unknown_message_is_ignored_and_logged(sent_message, caplog):
    sent_message("postmark", "pm-8")
    assert message_event_record(event=StatusEvent(
        provider_kind="postmark", kind="delivered", provider_message_id="nobody")) is None
    assert MessageEvent.objects.count() == 0
    assert "unknown message ignored: postmark delivered nobody" in caplog.text


def test_clarions_own_message_id_finds_the_message_when_the_provider_echoes_it(sent_message):
    message = sent_message("postmark", "pm-9")
    message_event_record(event=StatusEvent(provider_kind="postmark", kind="delivered",
                                           provider_message_id="other-id",
                                           message_id=str(message.id)))
    message.refresh_from_db()
    assert message.status == "delivered"


def test_twilio_statuses_map_to_clarions_words():
    undelivered = from_twilio({"MessageSid": "SM1", "MessageStatus": "undelivered",
                               "ErrorCode": "30003"}, event_id="idem-1")
    assert (undelivered.kind, undelivered.provider_message_id, undelivered.description,
            undelivered.event_id) == ("failed", "SM1", "undelivered (Twilio error 30003)",
                                      "idem-1")
    assert from_twilio({"MessageSid": "SM1", "MessageStatus": "delivered"}).kind == "delivered"
    assert from_twilio({"MessageSid": "SM1", "MessageStatus": "sent"}).kind == "sent"
    assert from_twilio({"MessageSid": "SM1", "MessageStatus": "read"}).kind == "opened"


def test_vonage_receipts_and_message_statuses_map_to_clarions_words():
    receipt = from_vonage_receipt({"messageId": "0A1", "status": "expired", "err-code": "27",
                                   "message-timestamp": "2026-11-22 03:04:05"})
    assert (receipt.kind, receipt.provider_message_id, receipt.description, receipt.occurred_at) \
        == ("failed", "0A1", "expired (err-code 27)", datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC))
    assert from_vonage_receipt({"messageId": "0A1", "status": "rejected"}).kind == "rejected"
    status = from_vonage_message_status({
        "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "status": "rejected",
        "timestamp": "2026-11-22T03:04:05Z", "error": {"title": "Throttled"}})
    assert (status.kind, status.description, status.occurred_at) == (
        "rejected", "rejected: Throttled", datetime(2026, 11, 22, 3, 4, 5, tzinfo=UTC))


def test_a_failure_reported_after_sent_fails_the_message_with_the_reason(sent_message):
    message = sent_message("twilio", "SM2", channel="sms")
    message_event_record(event=from_twilio({"MessageSid": "SM2", "MessageStatus": "undelivered",
                                            "ErrorCode": "30005"}))
    message.refresh_from_db()
    assert (message.status, message.error) == (Message.Status.FAILED,
                                               "undelivered (Twilio error 30005)")


def test_an_event_that_beats_the_senders_own_write_keeps_its_time_and_is_replayed_after(
        sent_message):
    message = sent_message("postmark", "pm-race")
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENDING)
    message_event_record(event=StatusEvent(provider_kind="postmark", kind="delivered",
                                           message_id=str(message.id), occurred_at=T0))
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == ("sending", T0)
    Message.objects.filter(pk=message.pk).update(status=Message.Status.SENT)  # the sender
    message_events_replay(message_id=message.pk)
    message.refresh_from_db()
    assert message.status == "delivered"
