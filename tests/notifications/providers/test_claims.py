"""Workers claiming batches at the same time take disjoint sets of messages."""

import threading

import pytest
from django.db import connection
from django.utils import timezone

from notifications.delivery import claim_batch
from notifications.models import Message

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_claims_are_disjoint_and_cover_every_due_message(queue_message):
    messages = [queue_message("sms", {"text": f"n{i}"}) for i in range(30)]
    barrier = threading.Barrier(3)
    claimed: list[list[str]] = []
    errors = []

    def worker(first):
        try:
            barrier.wait()
            got = []
            while batch := claim_batch(now=timezone.now(), limit=4, first=first):
                got += [str(m.pk) for m in batch]
                first = None
            claimed.append(got)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(str(messages[i].pk),)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    everything = [pk for got in claimed for pk in got]
    assert len(everything) == len(set(everything)) == 30
    assert set(Message.objects.values_list("status", flat=True)) == {"sending"}
    assert set(Message.objects.values_list("attempts", flat=True)) == {1}
