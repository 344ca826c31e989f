"""The reads of many sockets at once (inbox.socket_reads): inbox_counts_many reads what
inbox_counts reads, scope by scope; the sockets of a process that ask together share one read,
and each gets its own result or error."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.db import connections
from django.utils import timezone

from inbox import socket_reads
from inbox.models import InboxItem
from inbox.selectors import (
    NO_TENANT,
    inbox_counts,
    inbox_counts_many,
    inbox_ids_after,
    inbox_items_above_many,
)
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

    monkeypatch.setattr(socket_reads.selectors, "inbox_counts_many", counts_many)
    asks = [(ada.pk, None), (bob.pk, acme), (ada.pk, NO_TENANT)] * 20
    try:
        metas = await asyncio.gather(*[socket_reads.counts(recipient_pk=pk, tenant=scope)
                                       for pk, scope in asks])
        expected = await database_sync_to_async(lambda: [
            inbox_counts(recipient=Recipient.objects.get(pk=pk), tenant=scope)
            for pk, scope in asks])()
    finally:
        await database_sync_to_async(connections.close_all)()

    assert calls == [60]
    assert metas == expected


@pytest.mark.django_db(transaction=True)
async def test_push_checks_asked_close_together_share_one_read(people, monkeypatch):
    ada, bob, acme = await database_sync_to_async(lambda: people)()
    calls = []
    read_many = socket_reads._ids_after.read_many

    def spy(requests):
        calls.append(len(requests))
        return read_many(requests)

    monkeypatch.setattr(socket_reads._ids_after, "read_many", spy)
    asks = [(ada, None, 0), (ada, acme, 0), (bob, NO_TENANT, 0), (ada, NO_TENANT, 3)]
    try:
        rows = await asyncio.gather(*[
            socket_reads.ids_after(recipient=who, tenant=scope, after=after, limit=2)
            for who, scope, after in asks])
        expected = await database_sync_to_async(lambda: [
            inbox_ids_after(recipient=who, tenant=scope, after=after, limit=2)
            for who, scope, after in asks])()
    finally:
        await database_sync_to_async(connections.close_all)()

    assert calls == [4]
    assert rows == expected
    assert [len(found) for found in rows] == [2, 2, 1, 2]


async def test_a_failed_read_fails_each_of_its_requests():
    def broken(requests):
        raise RuntimeError("database unreachable")

    read = socket_reads.BatchedRead(broken)
    results = await asyncio.gather(read(1), read(2), return_exceptions=True)

    assert [str(result) for result in results] == ["database unreachable"] * 2


def test_items_above_many_lists_each_recipients_items_above_its_watermark(people, monkeypatch):
    ada, bob, acme = people
    carol = Recipient.objects.create(external_id="carol", name="Carol")  # no items
    ada_items, bob_items = (list(InboxItem.objects.filter(recipient=who).order_by("id")
                                 .values_list("id", "tenant_id")) for who in (ada, bob))
    monkeypatch.setattr("inbox.selectors.ABOVE_MANY_CHUNK", 2)  # three statements
    watermarks = [(ada.pk, 0), (bob.pk, bob_items[0][0]), (carol.pk, 0),
                  (ada.pk, ada_items[-1][0]), (ada.pk, ada_items[5][0])]

    assert inbox_items_above_many(watermarks) == [
        ada_items, bob_items[1:], (), (), ada_items[6:]]


class Socket:
    """A stand-in for an InboxConsumer as the push probe sees it: its watermark, and what the
    probe told it."""

    def __init__(self, recipient_pk: int, after: int):
        self.mark = (recipient_pk, after)
        self.told: list[list[tuple]] = []

    def probe_watermark(self):
        return self.mark

    def probe_found(self, items):
        self.told.append(items)


@pytest.mark.django_db(transaction=True)
async def test_the_push_probe_tells_only_the_sockets_with_items_above_their_watermark(
        people, monkeypatch):
    ada, bob, acme = await database_sync_to_async(lambda: people)()
    newest = await database_sync_to_async(
        lambda: {r.pk: InboxItem.objects.filter(recipient=r).order_by("-id")
                 .values_list("id", "tenant_id")[0] for r in (ada, bob)})()
    calls = []

    def above_many(watermarks):
        calls.append(len(watermarks))
        return inbox_items_above_many(watermarks)

    monkeypatch.setattr(socket_reads.selectors, "inbox_items_above_many", above_many)
    probe = socket_reads.PushProbe()
    synced = Socket(ada.pk, newest[ada.pk][0])  # had everything
    behind = Socket(bob.pk, newest[bob.pk][0] - 1)  # missing bob's newest
    closed = Socket(bob.pk, 0)
    try:
        for socket in (synced, behind, closed):
            probe.watch(socket)
        probe.forget(closed)
        told = await probe.probe(asyncio.get_running_loop())
    finally:
        probe.forget(synced)
        probe.forget(behind)
        await database_sync_to_async(connections.close_all)()

    assert calls == [2]  # one read for every open socket
    assert told == 1
    assert behind.told == [[newest[bob.pk]]]
    assert synced.told == closed.told == []
    assert probe.tasks == {}  # the last socket forgotten stops the rounds
