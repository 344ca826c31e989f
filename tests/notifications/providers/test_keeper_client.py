"""The worker's side of the SMTP keeper (delivery/keeper_client.py) against a real keeper
process: a hand-over holds every socket it names, however many; the keeper starts when a
batch's SMTP calls start, so its start overlaps their exchanges."""

import asyncio
import socket
import threading
import uuid
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller
from django.db import connection, connections

from notifications.delivery import deliver_batch, keeper, keeper_client
from notifications.delivery.keeper_client import HOLD_MAX_SOCKETS
from notifications.models import Message
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="the keeper runs on PostgreSQL only")]


@pytest.fixture
def fresh_keeper():
    """No keeper before the test; the test's keeper stopped after it."""
    keeper_client._client, keeper_client._failed_at = None, -keeper_client.RETRY_SECONDS
    yield
    if keeper_client._client is not None:
        keeper_client._client.stop()
    keeper_client._client, keeper_client._failed_at = None, -keeper_client.RETRY_SECONDS


def test_a_hand_over_of_more_sockets_than_one_packet_carries_is_held_whole(fresh_keeper):
    """CLARION_DELIVERY_CONCURRENCY above 64 lets that many SMTP calls reach their ends at
    once; the keeper reads at most HOLD_MAX_SOCKETS sockets a packet (the rest would be closed
    by the kernel, and the keeper died on the hold it could not read)."""
    assert keeper.HOLD_MAX_SOCKETS == HOLD_MAX_SOCKETS
    count = HOLD_MAX_SOCKETS + 6
    pairs = [socket.socketpair() for _ in range(count)]
    try:
        ends = [(pk, SimpleNamespace(sock=ours, message_id=f"<{uuid.uuid4()}@example.com>"))
                for pk, (ours, _) in enumerate(pairs, start=1)]
        connection.ensure_connection()
        held = keeper_client.keeper_hold(ends)
        assert held == list(range(1, count + 1))
        client = keeper_client._client
        assert client is not None and client.process.poll() is None
        keeper_client.keeper_release(held)
        assert client.held == set()
        assert client.process.poll() is None
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_ends_and_releases_are_not_queued_behind_a_hold(fresh_keeper):
    """A hold keeps the module's lock while it waits for the keeper's ack; the sending threads'
    releases and the loop's announcements are sent without it (they had waited on it, one
    email at a time). The release still reaches the keeper: it closes its copy of the socket,
    so the connection closes once ours does."""
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        ends = [(pk, SimpleNamespace(sock=ours, message_id=f"<{uuid.uuid4()}@example.com>"))
                for pk, (ours, _) in enumerate(pairs, start=1)]
        connection.ensure_connection()
        held = keeper_client.keeper_hold(ends)
        assert held == [1, 2]

        def end_and_release() -> None:
            for _pk, end in ends:
                end.announce()
                end.replied(250)

        with keeper_client._lock:  # as a hold waiting for its ack
            sender = threading.Thread(target=end_and_release)
            sender.start()
            sender.join(5)
            assert not sender.is_alive(), "an end or a release waited for the hold's lock"
        assert keeper_client._client.held == set()
        for ours, theirs in pairs:
            ours.close()
            theirs.settimeout(5)
            assert theirs.recv(1) == b"", "the keeper still holds the released socket"
        assert keeper_client._client.process.poll() is None
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


class HeldAtRcpt:
    def __init__(self):
        self.rcpt, self.release = threading.Event(), threading.Event()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        self.rcpt.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        return "250 OK"


def test_the_keeper_starts_while_the_first_smtp_exchange_runs(fresh_keeper, provider_config,
                                                               queue_message):
    """Not inside the first hand-over's transaction, which would wait for its start."""
    handler, port = HeldAtRcpt(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port,
                                                  "from_email": "alerts@example.com"})
        message = queue_message("email", {"subject": "Hi", "text": "Hello"},
                                recipient={"id": "u1", "email": "u1@example.com"})

        def deliver() -> None:
            try:
                deliver_batch([str(message.id)])
            finally:
                connections.close_all()

        delivery = threading.Thread(target=deliver)
        delivery.start()
        try:
            assert handler.rcpt.wait(30), "the email never reached RCPT TO"
            client = keeper_client._client
            assert client is not None, "no keeper while the SMTP exchange runs"
            assert client.process.poll() is None
        finally:
            handler.release.set()
            delivery.join(60)
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
    finally:
        controller.stop()
