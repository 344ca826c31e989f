"""Workers claiming batches at the same time take disjoint sets of messages; a claim whose
messages cannot be read gives them back."""

import threading

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from notifications.delivery import claim_batch, deliver
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


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.parametrize("claim", [
    lambda pk: claim_batch(now=timezone.now(), limit=1, first=pk),  # its message alone
    lambda pk: claim_batch(now=timezone.now(), limit=4, first=pk),  # and others, read after it
    deliver,  # a test send's one message
], ids=["one", "batch", "deliver"])
def test_a_claim_whose_read_fails_gives_its_message_back_to_the_queue(queue_message, claim):
    message = queue_message("sms", {"text": "hi"})
    other_session = connection.copy()

    def connection_lost_after_the_claim(execute, sql, params, many, context):
        if not lost and sql.startswith("SELECT"):
            with other_session.cursor() as cursor:  # the database drops this session
                cursor.execute("SELECT pg_terminate_backend(%s, 5000)",
                               [connection.connection.info.backend_pid])
            lost.append(sql)
        return execute(sql, params, many, context)

    lost = []
    try:
        with connection.execute_wrapper(connection_lost_after_the_claim), \
                pytest.raises(OperationalError):
            claim(str(message.pk))
    finally:
        other_session.close()
        connection.close()  # the test reads on a new session, whatever the claim left
    assert len(lost) == 1  # the first read after the claim's UPDATE
    message.refresh_from_db()
    assert (message.status, message.attempts) == (Message.Status.QUEUED, 0)
    (claimed,) = claim_batch(now=timezone.now(), limit=1, first=str(message.pk))
    assert (claimed.pk, claimed.status, claimed.attempts) == (message.pk, "sending", 1)
