"""Enqueueing: tasks commit with their data, and enqueueing never closes the connection."""

import pytest
from django.db import connection, transaction
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from notifications.models import Recipient
from notifications.queue import enqueue, enqueue_many


def queued() -> list[tuple[str, tuple]]:
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("id")]
    return [(task["func"], tuple(task["args"])) for task in tasks]


@pytest.mark.django_db(transaction=True)
def test_enqueue_while_iterating_a_queryset_outside_a_transaction_keeps_the_cursor(settings):
    # django-q2's async_task closes old connections outside a transaction; with
    # CONN_MAX_AGE=0 that closed the connection under this open (server-side) cursor.
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 0
    Recipient.objects.bulk_create([Recipient(external_id=f"r{n}") for n in range(7)])
    ids = Recipient.objects.order_by("pk").values_list("external_id", flat=True)
    assert transaction.get_autocommit()
    for external_id in ids.iterator(chunk_size=2):
        enqueue("notifications.tasks.fanout_trigger", external_id)
    assert queued() == [("notifications.tasks.fanout_trigger", (f"r{n}",)) for n in range(7)]
    assert connection.connection is not None


def test_enqueued_tasks_roll_back_with_their_transaction(db):
    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue("notifications.tasks.advance_run", "a")
        enqueue_many("notifications.tasks.advance_run", [("b",), ("c",)])
        assert OrmQ.objects.count() == 3
        raise RuntimeError
    assert OrmQ.objects.count() == 0


def test_enqueued_rows_are_read_by_the_clusters_broker(db, run_tasks):
    from notifications.models import Trigger

    enqueue_many("notifications.tasks.fanout_trigger", [("00000000-0000-0000-0000-000000000000",)])
    assert run_tasks() == ["notifications.tasks.fanout_trigger"]
    assert not Trigger.objects.exists()


def test_a_wake_up_is_a_queue_row_the_broker_hands_out_only_from_its_time(db):
    from datetime import timedelta

    from django.utils import timezone
    from django_q.brokers import get_broker

    from notifications.queue import enqueue_at

    broker = get_broker()
    later = timezone.now() + timedelta(hours=1)
    enqueue_at("notifications.tasks.advance_run", "later", at=later, name="run:later")
    assert OrmQ.objects.get().lock == later
    assert not broker.dequeue()  # not before its time

    enqueue_at("notifications.tasks.advance_run", "due", at=timezone.now() - timedelta(seconds=1),
               name="run:due")
    [(_, payload)] = broker.dequeue()
    assert SignedPackage.loads(payload)["args"] == ("due",)


def test_a_wake_up_rolls_back_with_its_transaction(db):
    from django.utils import timezone

    from notifications.queue import enqueue_at

    with pytest.raises(RuntimeError), transaction.atomic():
        enqueue_at("notifications.tasks.advance_run", "a", at=timezone.now(), name="run:a")
        raise RuntimeError
    assert OrmQ.objects.count() == 0
