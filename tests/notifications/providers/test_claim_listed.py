"""A task's list of messages claimed in one statement (PostgreSQL: claim.listed_claimed), and
the relations read by statements kept per model (clarion.db.rows_by_pk): the same rows claimed
and the same instances as the query sets that they replace."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from clarion.db import instance_reader, rows_by_pk
from notifications.delivery import claim_batch
from notifications.models import Message, Recipient, Step, Workflow

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'")]


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_a_listed_claim_returns_what_the_query_sets_read(queue_message, acme,
                                                         django_assert_num_queries):
    plain = queue_message("sms", {"text": "plain"})
    rich = queue_message("sms", {"text": "rich ✓"}, tenant=acme, recipient={
        "id": "u-rich", "phone": "+15550003333", "name": "Zoë", "data": {"plan": [1, None]}})
    Message.objects.filter(pk=rich.pk).update(
        estimated_cost=Decimal("0.007500"), cost_currency="USD",
        next_attempt_at=timezone.now() - timedelta(seconds=5), attempts=2)
    now = timezone.now()
    with transaction.atomic():
        claimed = claim_batch(now=now, limit=10, first=[str(plain.pk), str(rich.pk)])
    assert [m.pk for m in claimed] == [rich.pk, plain.pk]  # newest first, as Message's ordering
    for message in claimed:
        stored = Message.objects.get(pk=message.pk)
        assert (stored.status, stored.updated_at) == ("sending", now)
        assert _fields(message) == _fields(stored)
        assert message._state.db == "default" and not message._state.adding
        assert message.run_created_at == stored.run.created_at
        with django_assert_num_queries(0):
            recipient, workflow = message.recipient, message.workflow
            tenant, step = message.tenant, message.step
        assert _fields(recipient) == _fields(Recipient.objects.get(pk=stored.recipient_id))
        assert (tenant, workflow, step) == (stored.tenant, stored.workflow, stored.step)
    assert claimed[0].attempts == 3 and claimed[0].estimated_cost == Decimal("0.007500")
    assert claimed[0].recipient.data == {"plan": [1, None]}


def test_a_listed_claim_skips_what_is_not_its_to_send_and_fills_up_with_other_due_messages(
        queue_message):
    due, later, sent, held, other = (queue_message("sms", {"text": str(i)}) for i in range(5))
    Message.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    Message.objects.filter(pk=sent.pk).update(status="sent")
    params = connection.get_connection_params()
    with psycopg.connect(**params) as other_session:  # another worker holds `held`
        other_session.execute("SELECT 1 FROM notifications_message WHERE id = %s FOR UPDATE",
                              [held.pk])
        claimed = claim_batch(now=timezone.now(), limit=5,
                              first=[str(m.pk) for m in (due, later, sent, held)])
        assert [m.pk for m in claimed] == [due.pk, other.pk]
        assert [(m.status, m.attempts) for m in claimed] == [("sending", 1)] * 2
        assert claimed[1].recipient == Recipient.objects.get(pk=other.recipient_id)
    status = dict(Message.objects.values_list("pk", "status"))
    assert (status[due.pk], status[other.pk]) == ("sending", "sending")
    assert (status[later.pk], status[sent.pk], status[held.pk]) == ("queued", "sent", "queued")


def test_a_listed_claim_none_of_whose_messages_is_due_claims_nothing(queue_message):
    later, other = queue_message("sms", {"text": "later"}), queue_message("sms", {"text": "o"})
    Message.objects.filter(pk=later.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    assert claim_batch(now=timezone.now(), limit=5, first=[str(later.pk)]) == []
    assert set(Message.objects.values_list("status", "attempts")) == {("queued", 0)}
    assert Message.objects.get(pk=other.pk).status == "queued"


def test_relations_by_primary_key_are_what_in_bulk_reads(queue_message):
    message = queue_message("sms", {"text": "hi"})
    for model, pks in ((Workflow, {message.workflow_id}), (Step, {message.step_id, 10**9}),
                       (Recipient, {message.recipient_id})):
        ours, theirs = rows_by_pk(model, pks), model._base_manager.in_bulk(pks)
        assert ours.keys() == theirs.keys()
        assert [_fields(o) for o in ours.values()] == [_fields(o) for o in theirs.values()]


def test_an_instance_reader_refuses_a_row_of_another_length():
    with pytest.raises(ValueError, match="Workflow: 2 values for"):
        instance_reader(Workflow)([1, "key"])


def test_an_instance_reader_builds_a_model_with_init_receivers_through_from_db(queue_message):
    from django.db.models.signals import post_init

    workflow = Workflow.objects.get(pk=queue_message("sms", {"text": "hi"}).workflow_id)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Workflow)
    try:
        [read] = rows_by_pk(Workflow, {workflow.pk}).values()
    finally:
        post_init.disconnect(receiver, sender=Workflow)
    assert seen == [read] and _fields(read) == _fields(workflow)
    assert read._state.db == "default" and not read._state.adding
