"""Counts of many sockets at once: inbox_counts_many reads what inbox_counts reads, scope by
scope, and the sockets of a process that ask in one turn of the event loop share one read."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.utils import timezone

from inbox import consumers
from inbox.selectors import NO_TENANT, inbox_counts, inbox_counts_many
from notifications.models import Recipient, Tenant


@pytest.fixture
def people(make_items):
    """Ada and Bob with items of tenant Acme and without a tenant, read, seen and archived."""
    acme = Tenant.objects.create(key="acme", name="Acme")
    ada = Recipient.objects.create(external_id="ada", name="Ada")
    bob = Recipient.objects.create(external_id="bob", name="Bob")
    now = timezone.now()
    make_items(ada, 3)
    make_items(ada, 2, tenant=acme, read_at=now, seen_at=now)
    make_items(ada, 1, tenant=acme, seen_at=now)
    make_items(ada, 4, archived_at=now)
    make_items(bob, 2, tenant=acme)
    make_items(bob, 1, read_at=now, seen_at=now)
    return ada, bob, acme


def test_counts_of_many_are_each_recipients_counts_in_its_scope(people):
    ada, bob, acme = people
    carol = Recipient.objects.create(external_id="carol", name="Carol")  # no items
    requests = [(ada.pk, None), (bob.pk, NO_TENANT), (ada.pk, acme), (bob.pk, None),
                (carol.pk, acme), (ada.pk, None), (bob.pk, acme), (ada.pk, NO_TENANT)]

    counts = inbox_counts_many(requests)

    assert counts == [inbox_counts(recipient=Recipient.objects.get(pk=pk), tenant=scope)
                      for pk, scope in requests]
    assert counts[0] == {"unread_count": 4, "unseen_count": 3, "total_count": 6}
    assert counts[4] == {"unread_count": 0, "unseen_count": 0, "total_count": 0}


@pytest.mark.django_db(transaction=True)
async def test_sockets_asking_in_the_same_turn_share_one_read(people, monkeypatch):
    ada, bob, acme = await database_sync_to_async(lambda: people)()
    calls = []

    def counts_many(requests):
        calls.append(len(requests))
        return inbox_counts_many(requests)

    monkeypatch.setattr(consumers, "inbox_counts_many", counts_many)
    asks = [(ada.pk, None), (bob.pk, acme), (ada.pk, NO_TENANT)] * 20
    try:
        metas = await asyncio.gather(*[consumers._counts.read(recipient_pk=pk, tenant=scope)
                                       for pk, scope in asks])
        expected = await database_sync_to_async(lambda: [
            inbox_counts(recipient=Recipient.objects.get(pk=pk), tenant=scope)
            for pk, scope in asks])()
    finally:
        await database_sync_to_async(connections.close_all)()

    assert calls == [60]
    assert metas == expected
