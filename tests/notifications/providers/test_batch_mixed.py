"""A delivery batch's messages of several tenants and workflows, and the ones it must leave out.

The claim reads each relation (tenant, workflow, recipient, step) once per batch for the
distinct rows (delivery.claim.with_relations), and the runs' creation with the messages, so
each message must still get its own; and the rows it writes (clarion.db.rows_create and
rows_update, server-bound) must hold what the ORM would have stored.
"""

import json
import logging
import threading
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.utils import timezone

from analytics.models import RollupDelta
from clarion.db import rows_create, rows_update
from notifications.delivery import deliver_batch
from notifications.delivery.claim import locked, with_relations
from notifications.delivery.status import message_event_record
from notifications.models import DeliveryAttempt, Message, MessageEvent, Recipient, StepLog
from notifications.providers.base import PROVIDER_MESSAGE_ID_MAX_LENGTH
from notifications.providers.callbacks import StatusEvent

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


def test_a_batch_of_several_tenants_and_workflows_sends_each_message_its_own_way(
        provider_server, provider_config, queue_message, acme, globex):
    global_server = provider_server(twilio_check, twilio_accepts)
    acme_server = provider_server(plivo_check, plivo_accepts)
    provider_config("global", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": global_server.url}, priority=1)
    provider_config("acme-own", "sms", "plivo",
                    {"auth_id": AUTH_ID, "auth_token": PLIVO_TOKEN, "from": "+15550003333"},
                    options={"base_url": acme_server.url}, priority=5, tenant=acme)
    tenants = [acme, None, globex, acme, None, globex]
    messages = [queue_message("sms", {"text": f"n{i}"}, tenant=tenant,
                              recipient={"id": f"r{i}", "phone": f"+1555000{i:04d}"})
                for i, tenant in enumerate(tenants)]

    assert deliver_batch([str(m.pk) for m in messages], size=10) == 6

    for message, tenant in zip(messages, tenants, strict=True):
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert message.provider == ("acme-own" if tenant == acme else "global")
    # Each request carried its own message's text to its own recipient.
    acme_sent = sorted((r.json()["dst"], r.json()["text"]) for r in acme_server.requests)
    assert acme_sent == [("+15550000000", "n0"), ("+15550000003", "n3")]
    global_sent = sorted((r.form()["To"], r.form()["Body"]) for r in global_server.requests)
    assert global_sent == [("+15550000001", "n1"), ("+15550000002", "n2"),
                           ("+15550000004", "n4"), ("+15550000005", "n5")]
    # The analytics are each message's own: its workflow and tenant, and a latency from its
    # run's creation (read with the claim), not from the batch's start.
    sent = RollupDelta.objects.filter(metric="sent")
    assert sorted((d.workflow, d.tenant) for d in sent for _ in range(d.count)) == sorted(
        (m.workflow.key, m.tenant.key if m.tenant else "") for m in messages)
    for delta in sent:
        assert delta.latency_ms is not None and delta.latency_ms >= 0
    assert StepLog.objects.filter(event=StepLog.Event.SENT).count() == 6


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SKIP LOCKED")
def test_a_batch_leaves_the_messages_another_worker_holds_or_took(
        provider_server, provider_config, queue_message):
    server = provider_server(twilio_check, twilio_accepts)
    provider_config("global", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url})
    messages = [queue_message("sms", {"text": f"n{i}"}) for i in range(5)]
    held, taken = messages[1], messages[3]
    Message.objects.filter(pk=taken.pk).update(status=Message.Status.SENDING, attempts=1)
    locking, release = threading.Event(), threading.Event()

    def other_worker():  # holds its claim's row lock on `held` until released
        try:
            with transaction.atomic():
                list(Message.objects.select_for_update().filter(pk=held.pk))
                locking.set()
                release.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert locking.wait(30)
        assert deliver_batch([str(m.pk) for m in messages], size=10) == 3
    finally:
        release.set()
        thread.join(30)
    statuses = {m.pk: m.status for m in Message.objects.filter(pk__in=[m.pk for m in messages])}
    assert statuses.pop(held.pk) == Message.Status.QUEUED
    assert statuses.pop(taken.pk) == Message.Status.SENDING
    assert set(statuses.values()) == {Message.Status.SENT}
    assert not DeliveryAttempt.objects.filter(message__in=[held, taken]).exists()
    assert sorted(r.form()["Body"] for r in server.requests) == ["n0", "n2", "n4"]


def test_relations_read_once_per_batch_leave_out_a_message_whose_recipient_is_gone(
        queue_message, acme):
    kept = queue_message("sms", {"text": "kept"}, tenant=acme)
    gone = queue_message("sms", {"text": "gone"})
    messages = locked(Message.objects.filter(pk__in=[kept.pk, gone.pk]))
    for message in messages:
        if message.pk == gone.pk:
            message.recipient_id = Recipient.objects.order_by("-pk")[0].pk + 1000
        else:
            message.step_id = 10**9  # its step deleted meanwhile: read without it
    [message] = with_relations(messages)
    assert message.pk == kept.pk
    assert message.run_created_at == kept.run.created_at
    assert (message.tenant, message.workflow, message.recipient) == (
        acme, kept.workflow, kept.recipient)
    assert message.step_id is None and message.step is None


def test_rows_create_and_rows_update_store_what_the_orm_stores(queue_message):
    message = queue_message("sms", {"text": "hi"})
    started = timezone.now()
    ours = DeliveryAttempt(message=message, provider="p", provider_kind="twilio",
                           started_at=started, request={"to": "+1", "nested": [1, None]},
                           estimated_cost=Decimal("0.007500"), cost_currency="USD")
    bare = DeliveryAttempt(message=message, provider="p", started_at=started)
    rows_create([ours, bare])
    assert ours.pk is not None and bare.pk is not None and ours.pk != bare.pk
    ours.refresh_from_db()
    assert (ours.request, ours.response, ours.estimated_cost, ours.status_code,
            ours.started_at, ours.outcome) == (
        {"to": "+1", "nested": [1, None]}, {}, Decimal("0.007500"), None, started,
        DeliveryAttempt.Outcome.STARTED)

    ours.outcome, ours.error, ours.response = "succeeded", "", {"message_id": "SM1"}
    ours.duration_ms, ours.status_code = 12, 201
    bare.outcome, bare.error = "transient_error", "it's 'quoted' and \\ back"
    rows_update(DeliveryAttempt, [ours, bare],
                ["duration_ms", "outcome", "error", "response", "status_code"])
    ours.refresh_from_db()
    bare.refresh_from_db()
    assert (ours.outcome, ours.response, ours.duration_ms, ours.status_code) == (
        "succeeded", {"message_id": "SM1"}, 12, 201)
    assert (bare.outcome, bare.error) == ("transient_error", "it's 'quoted' and \\ back")

    # Guarded: only the rows still in the status and send the objects name are written.
    other = queue_message("sms", {"text": "other"})
    Message.objects.filter(pk=other.pk).update(send_number=2)
    for m in (message, other):
        m.status, m.error, m.next_attempt_at = Message.Status.FAILED, "no", started
    written = rows_update(Message, [message, other], ["status", "error", "next_attempt_at"],
                          status=Message.Status.QUEUED, match=("send_number",))
    if connection.vendor == "postgresql":
        assert written == {message.pk}
    message.refresh_from_db()
    other.refresh_from_db()
    assert (message.status, message.error, message.next_attempt_at) == ("failed", "no", started)
    assert (other.status, other.error) == (Message.Status.QUEUED, "")


def test_rows_update_refuses_a_value_too_long_for_its_column_as_save_does(queue_message):
    """A cast to varchar(255) would cut the value short without a word; the column refuses it."""
    message = queue_message("sms", {"text": "hi"})
    message.provider_message_id = "x" * 300
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not check a varchar's length")
    with pytest.raises(DataError), transaction.atomic():
        rows_update(Message, [message], ["provider_message_id"])
    with pytest.raises(DataError), transaction.atomic():
        message.save(update_fields=["provider_message_id"])
    message.refresh_from_db()
    assert message.provider_message_id == ""


def test_a_provider_id_too_long_to_keep_is_not_the_message_id_but_the_send_stands(
        provider_server, provider_config, queue_message, caplog):
    caplog.set_level(logging.INFO, logger="notifications.providers.base")
    sid = "SM" + "9" * 298

    def accepts_with_a_long_sid(request):
        form = request.form()
        return Reply(201, json={"sid": sid, "status": "queued", "to": form["To"],
                                "from": form["From"], "body": form["Body"]})

    server = provider_server(twilio_check, accepts_with_a_long_sid)
    provider_config("global", "sms", "twilio",
                    {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                    options={"base_url": server.url})
    message = queue_message("sms", {"text": "long id"})

    assert deliver_batch([str(message.pk)], size=10) == 1

    message.refresh_from_db()
    assert (message.status, message.provider_message_id) == (Message.Status.SENT, "")
    assert len(server.requests) == 1
    attempt = DeliveryAttempt.objects.get(message=message)
    assert attempt.outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert sid in json.dumps(attempt.response)  # the answer itself is kept in the ledger
    assert "provider id of 300 characters" in caplog.text
    assert Message._meta.get_field(
        "provider_message_id").max_length == PROVIDER_MESSAGE_ID_MAX_LENGTH


def test_a_status_event_with_a_provider_id_too_long_to_keep_stores_none(queue_message):
    """As for a send's answer: cut short, the id would pass for another (recovery compares a
    message's events with its attempts' ids), so the event keeps "" and its raw payload."""
    message = queue_message("sms", {"text": "hi"})
    long_id = "SM" + "7" * 298
    record = message_event_record(event=StatusEvent(
        provider_kind="twilio", kind=MessageEvent.Kind.DELIVERED, provider_message_id=long_id,
        message_id=str(message.pk), event_id="e1", raw={"MessageSid": long_id}))
    assert record is not None
    record.refresh_from_db()
    assert (record.provider_message_id, record.raw) == ("", {"MessageSid": long_id})
