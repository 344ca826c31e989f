"""The inbox's typed realtime events: what crosses the channel layer and what reaches a socket."""

import json
from datetime import UTC, datetime

import pytest

from inbox.events import (
    LAYER_TYPE,
    CountsChanged,
    ItemCreated,
    ItemsUpdated,
    ItemUpdated,
    from_message,
)
from inbox.selectors import NO_TENANT
from notifications.models import Tenant

ITEM = {"id": 7, "body": "Hi", "tenant": "acme"}
# Socket scopes (unsaved tenants: no database needed): every tenant, acme, globex, no tenant.
ACME, GLOBEX = Tenant(pk=2, key="acme"), Tenant(pk=3, key="globex")
SCOPES = (None, ACME, GLOBEX, NO_TENANT)


@pytest.mark.parametrize("event", [
    ItemCreated(recipient_id=1, tenant_id=2, item=ITEM),
    ItemUpdated(recipient_id=1, tenant_id=None, item=ITEM),
    ItemsUpdated.of(recipient_id=1, scope=ACME, action="read", up_to=7,
                    at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
], ids=["created", "updated", "bulk"])
def test_an_event_crosses_the_channel_layer_as_plain_data_and_comes_back_equal(event):
    message = event.message()
    # Plain JSON types only: channels-redis serializes messages (msgpack) across processes.
    wired = json.loads(json.dumps(message))

    assert wired["type"] == LAYER_TYPE
    assert from_message(wired) == event


def test_frames_keep_the_websocket_wire_format():
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert ItemCreated(recipient_id=1, tenant_id=None, item=ITEM).frame() == {
        "type": "item.created", "item": ITEM}
    assert ItemUpdated(recipient_id=1, tenant_id=None, item=ITEM).frame() == {
        "type": "item.updated", "item": ITEM}
    assert ItemsUpdated.of(recipient_id=1, scope=None, action="seen", up_to=7,
                           at=at).frame() == {
        "type": "items.updated", "action": "seen", "at": "2026-01-02T03:04:05+00:00",
        "up_to": 7}
    assert ItemsUpdated.of(recipient_id=1, scope=ACME, action="seen", up_to=7,
                           at=at).frame()["tenant"] == "acme"
    assert ItemsUpdated.of(recipient_id=1, scope=NO_TENANT, action="seen", up_to=7,
                           at=at).frame()["tenant"] is None
    assert CountsChanged(meta={"unread_count": 1}).frame() == {
        "type": "counts.changed", "meta": {"unread_count": 1}}


def test_an_item_event_reaches_unscoped_sockets_and_its_own_tenants_only():
    event = ItemCreated(recipient_id=1, tenant_id=2, item=ITEM)
    assert [event.visible_to(scope) for scope in SCOPES] == [True, True, False, False]
    untenanted = ItemUpdated(recipient_id=1, tenant_id=None, item=ITEM)
    assert [untenanted.visible_to(scope) for scope in SCOPES] == [True, False, False, True]


def test_a_bulk_action_over_every_tenant_reaches_every_socket():
    at = datetime(2026, 1, 2, tzinfo=UTC)
    everywhere = ItemsUpdated.of(recipient_id=1, scope=None, action="read", up_to=9, at=at)
    one = ItemsUpdated.of(recipient_id=1, scope=ACME, action="read", up_to=9, at=at)
    untenanted = ItemsUpdated.of(recipient_id=1, scope=NO_TENANT, action="read", up_to=9, at=at)
    assert [everywhere.visible_to(scope) for scope in SCOPES] == [True, True, True, True]
    assert [one.visible_to(scope) for scope in SCOPES] == [True, True, False, False]
    assert [untenanted.visible_to(scope) for scope in SCOPES] == [True, False, False, True]
