"""The websocket consumer, through channels' WebsocketCommunicator on the real ASGI app.

`transaction=True`: the consumer reads the database from its own threads, so what the test
writes must be committed.
"""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from clarion.asgi import application
from inbox.auth import inbox_hmac, inbox_token_create
from inbox.models import InboxItem
from inbox.services import tenant_inbox_secret_rotate
from notifications.models import Recipient, Tenant

from ..conftest import in_app_step
from .conftest import recipient_client, tenant_secret

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def close_thread_connections():
    """Close what the consumers' database thread left open, so PostgreSQL can drop the test
    database at the end of the session."""
    yield
    await database_sync_to_async(connections.close_all)()


@pytest.fixture
def layer_mode(settings):
    settings.INBOX_REALTIME = "layer"


@pytest.fixture
def poll_mode(settings):
    settings.INBOX_REALTIME = "poll"
    settings.INBOX_POLL_SECONDS = 0.05


@pytest.fixture
def ada(transactional_db):
    return Recipient.objects.create(external_id="ada", name="Ada")


def token_for(recipient, tenant=None) -> str:
    return inbox_token_create(recipient=recipient, tenant=tenant)[0]


async def connect(path: str) -> tuple[WebsocketCommunicator, dict]:
    """Open a socket; returns it and its first frame (the counts)."""
    communicator = WebsocketCommunicator(application, path)
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator, await communicator.receive_json_from(timeout=5)


async def frames_until(communicator, frame_type: str, timeout: float = 5) -> list[dict]:
    """Frames received up to and including the first of `frame_type` (heartbeats skipped)."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        if frame["type"] == "heartbeat":
            continue
        frames.append(frame)
        if frame["type"] == frame_type:
            return frames


@database_sync_to_async
def trigger_in_app(run_tasks, api, recipient_id="ada", tenant=None) -> InboxItem:
    """Trigger a real in-app workflow over the API and run the engine (this process)."""
    body = {"recipients": [recipient_id]} | ({"tenant": tenant} if tenant else {})
    assert api.post("/api/v1/workflows/ping/trigger", body).status_code == 202
    run_tasks()
    return InboxItem.objects.order_by("-id").first()


@pytest.fixture
def ping(make_workflow):
    return make_workflow("ping", steps=[in_app_step(body="Ping for {{ recipient.name }}")])


async def test_connect_with_a_token_sends_the_counts_first(ada):
    await database_sync_to_async(InboxItem.objects.create)(recipient=ada, content={"body": "x"})
    communicator, first = await connect(f"/ws/inbox/?token={token_for(ada)}")
    assert first == {"type": "counts.changed",
                     "meta": {"unread_count": 1, "unseen_count": 1, "total_count": 1}}
    await communicator.disconnect()


async def test_a_socket_connects_with_the_recipient_and_its_hmac(ada):
    communicator, first = await connect(f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada')}")
    assert first["meta"]["total_count"] == 0
    await communicator.disconnect()


@pytest.mark.parametrize("query", ["", "?token=forged", "?recipient=ada&hmac=" + "0" * 64,
                                   "?recipient=ada"])
async def test_bad_credentials_close_with_4401(ada, query):
    communicator = WebsocketCommunicator(application, f"/ws/inbox/{query}")
    connected, _ = await communicator.connect(timeout=5)
    assert connected  # accepted only to be closed with an application code
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close",
                                                             "code": 4401}


async def test_expired_token_closes_with_4401(ada, settings):
    token = token_for(ada)
    settings.INBOX_TOKEN_TTL_SECONDS = -1
    communicator = WebsocketCommunicator(application, f"/ws/inbox/?token={token}")
    await communicator.connect(timeout=5)
    assert (await communicator.receive_output(timeout=5))["code"] == 4401


async def test_item_created_through_the_layer_reaches_the_socket(layer_mode, ada, ping,
                                                                 run_tasks, api):
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    item = await trigger_in_app(run_tasks, api)
    created, counts = await frames_until(communicator, "counts.changed")
    assert created["type"] == "item.created"
    assert created["item"]["id"] == item.pk
    assert created["item"]["body"] == "Ping for Ada"
    assert counts["meta"] == {"unread_count": 1, "unseen_count": 1, "total_count": 1}
    await communicator.disconnect()


async def test_poll_bridge_delivers_items_written_by_another_process(poll_mode, ada):
    """In poll mode nothing is published on write (the worker is another process): the web
    process's bridge finds the committed row."""
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    item = await database_sync_to_async(InboxItem.objects.create)(
        recipient=ada, content={"body": "from the worker"})
    created, counts = await frames_until(communicator, "counts.changed", timeout=2)
    assert created == {"type": "item.created", "item": created["item"]}
    assert created["item"]["id"] == item.pk and created["item"]["body"] == "from the worker"
    assert counts["meta"]["unread_count"] == 1
    await communicator.disconnect()


async def test_poll_bridge_does_not_replay_items_older_than_the_socket(poll_mode, ada):
    await database_sync_to_async(InboxItem.objects.create)(recipient=ada, content={"body": "old"})
    communicator, first = await connect(f"/ws/inbox/?token={token_for(ada)}")
    assert first["meta"]["total_count"] == 1
    await asyncio.sleep(0.3)
    assert await communicator.receive_nothing(timeout=0.2)
    await communicator.disconnect()


async def test_every_tab_hears_a_read_made_in_another(layer_mode, ada):
    item = await database_sync_to_async(InboxItem.objects.create)(recipient=ada,
                                                                  content={"body": "x"})
    tabs = [(await connect(f"/ws/inbox/?token={token_for(ada)}"))[0] for _ in range(3)]
    client = await database_sync_to_async(recipient_client)(ada)
    response = await database_sync_to_async(client.post)(f"/api/v1/inbox/items/{item.pk}/read")
    assert response.status_code == 200
    for tab in tabs:
        updated, counts = await frames_until(tab, "counts.changed")
        assert updated["type"] == "item.updated"
        assert updated["item"]["id"] == item.pk and updated["item"]["read_at"]
        assert counts["meta"]["unread_count"] == 0
        await tab.disconnect()


async def test_mark_all_read_is_pushed_as_a_bulk_update(layer_mode, ada):
    item = await database_sync_to_async(InboxItem.objects.create)(recipient=ada,
                                                                  content={"body": "x"})
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    client = await database_sync_to_async(recipient_client)(ada)
    await database_sync_to_async(client.post)("/api/v1/inbox/read", {"up_to": item.pk})
    bulk, counts = await frames_until(communicator, "counts.changed")
    assert bulk == {"type": "items.updated", "action": "read", "at": bulk["at"],
                    "up_to": item.pk}  # no `tenant`: it covered every tenant
    assert counts["meta"]["unread_count"] == 0
    await communicator.disconnect()


async def test_another_recipients_items_are_not_pushed(layer_mode, ada, ping, run_tasks, api):
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    await trigger_in_app(run_tasks, api, recipient_id="someone-else")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_tenant_socket_hears_only_its_tenant(layer_mode, ada, ping, run_tasks, api):
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    await database_sync_to_async(Tenant.objects.get_or_create)(key="globex", name="G")
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada, acme)}")
    await trigger_in_app(run_tasks, api, tenant="globex")
    assert await communicator.receive_nothing(timeout=0.5)
    item = await trigger_in_app(run_tasks, api, tenant="acme")
    created, counts = await frames_until(communicator, "counts.changed")
    assert created["item"]["id"] == item.pk and created["item"]["tenant"] == "acme"
    assert counts["meta"]["total_count"] == 1  # the globex item is not counted
    await communicator.disconnect()


async def test_the_socket_sends_heartbeats_and_answers_a_ping_with_pong(ada, settings):
    settings.INBOX_HEARTBEAT_SECONDS = 0.05
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    assert await communicator.receive_json_from(timeout=2) == {"type": "heartbeat"}
    await communicator.send_json_to({"type": "ping"})
    assert "pong" in [(await communicator.receive_json_from(timeout=2))["type"]
                      for _ in range(3)]
    await communicator.disconnect()


async def test_an_idle_socket_outlives_the_redis_client_timeout(ada, settings):
    """redis-py 8 times reads out after 5 s by default, which killed idle consumers blocked in
    the layer's BZPOPMIN (channels_redis#422): an idle socket must stay open past that."""
    if "Redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("the Redis channel layer is configured only with REDIS_URL")
    settings.INBOX_HEARTBEAT_SECONDS = 1
    communicator, _ = await connect(f"/ws/inbox/?token={token_for(ada)}")
    for _ in range(7):  # 7 s of idle layer, heartbeats only
        assert await communicator.receive_json_from(timeout=3) == {"type": "heartbeat"}
    await communicator.send_json_to({"type": "ping"})
    assert (await frames_until(communicator, "pong"))[-1] == {"type": "pong"}
    await communicator.disconnect()


async def test_a_tenant_hmac_socket_hears_only_that_tenant(layer_mode, ada, ping, run_tasks,
                                                          api):
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    await database_sync_to_async(Tenant.objects.get_or_create)(key="globex", name="G")
    secret = await database_sync_to_async(tenant_secret)(acme)
    communicator, first = await connect(
        f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada', secret)}&tenant=acme")
    assert first["meta"]["total_count"] == 0
    await trigger_in_app(run_tasks, api, tenant="globex")
    await trigger_in_app(run_tasks, api)  # no tenant
    assert await communicator.receive_nothing(timeout=0.5)
    item = await trigger_in_app(run_tasks, api, tenant="acme")
    created, counts = await frames_until(communicator, "counts.changed")
    assert created["item"]["id"] == item.pk
    assert counts["meta"]["total_count"] == 1
    await communicator.disconnect()


async def test_a_global_secret_hmac_socket_hears_only_items_without_a_tenant(
        layer_mode, ada, ping, run_tasks, api):
    await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    communicator, _ = await connect(f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada')}")
    await trigger_in_app(run_tasks, api, tenant="acme")
    assert await communicator.receive_nothing(timeout=0.5)
    item = await trigger_in_app(run_tasks, api)
    created, counts = await frames_until(communicator, "counts.changed")
    assert created["item"]["id"] == item.pk and created["item"]["tenant"] is None
    assert counts["meta"]["total_count"] == 1
    await communicator.disconnect()


@pytest.mark.parametrize("tenant", ["globex", "nope", ""])
async def test_an_hmac_made_with_another_tenants_secret_closes_with_4401(ada, tenant):
    """acme's secret, presented as globex's (or an unknown tenant's, or the global one)."""
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    globex, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="globex",
                                                                          name="G")
    await database_sync_to_async(tenant_secret)(globex)
    signature = inbox_hmac("ada", await database_sync_to_async(tenant_secret)(acme))
    communicator = WebsocketCommunicator(
        application, f"/ws/inbox/?recipient=ada&hmac={signature}&tenant={tenant}")
    await communicator.connect(timeout=5)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close",
                                                             "code": 4401}


async def test_a_socket_is_closed_with_4401_when_its_token_expires(ada, settings):
    """Accepted while the token is valid (the counts arrive), closed when it expires."""
    settings.INBOX_TOKEN_TTL_SECONDS = 5
    communicator, first = await connect(f"/ws/inbox/?token={token_for(ada)}")
    assert first["type"] == "counts.changed"
    assert await communicator.receive_output(timeout=15) == {"type": "websocket.close",
                                                              "code": 4401}


async def test_a_socket_with_an_unexpiring_credential_stays_open(ada, settings):
    settings.INBOX_HEARTBEAT_SECONDS = 0.2
    communicator, _ = await connect(f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada')}")
    for _ in range(3):
        assert await communicator.receive_json_from(timeout=5) == {"type": "heartbeat"}
    await communicator.disconnect()


async def test_a_socket_on_a_rotated_out_secret_is_closed_when_its_window_ends(ada):
    """Its HMAC was made with the previous secret: accepted during the rotation window, closed
    with 4401 when the window ends."""
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    old = await database_sync_to_async(tenant_secret)(acme)
    await database_sync_to_async(tenant_inbox_secret_rotate)(tenant=acme,
                                                             keep_previous_seconds=5)
    communicator, first = await connect(
        f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada', old)}&tenant=acme")
    assert first["type"] == "counts.changed"
    assert await communicator.receive_output(timeout=15) == {"type": "websocket.close",
                                                              "code": 4401}


@pytest.mark.parametrize("tenant", ["nope", "globex"])
async def test_a_tenant_parameter_cannot_widen_or_name_an_unknown_tenant(ada, tenant):
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    await database_sync_to_async(Tenant.objects.get_or_create)(key="globex", name="G")
    communicator = WebsocketCommunicator(
        application, f"/ws/inbox/?token={token_for(ada, acme)}&tenant={tenant}")
    await communicator.connect(timeout=5)
    assert (await communicator.receive_output(timeout=5))["code"] == 4401


async def hmac_socket_of_acme(ada) -> tuple[WebsocketCommunicator, Tenant]:
    """A socket opened with an HMAC made with acme's current inbox secret."""
    acme, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="acme", name="A")
    secret = await database_sync_to_async(tenant_secret)(acme)
    communicator, first = await connect(
        f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada', secret)}&tenant=acme")
    assert first["type"] == "counts.changed"
    return communicator, acme


async def test_replacing_the_secret_closes_the_sockets_opened_with_it_at_once(ada):
    communicator, acme = await hmac_socket_of_acme(ada)
    await database_sync_to_async(tenant_inbox_secret_rotate)(tenant=acme,
                                                             keep_previous_seconds=0)
    assert await communicator.receive_output(timeout=5) == {"type": "websocket.close",
                                                             "code": 4401}


async def test_after_a_rotation_a_socket_on_the_replaced_secret_closes_when_the_window_ends(
        ada):
    communicator, acme = await hmac_socket_of_acme(ada)
    await database_sync_to_async(tenant_inbox_secret_rotate)(tenant=acme,
                                                             keep_previous_seconds=4)
    assert await communicator.receive_nothing(timeout=0.5)  # open during the window
    assert await communicator.receive_output(timeout=15) == {"type": "websocket.close",
                                                              "code": 4401}


async def test_a_socket_stays_open_through_a_rotation_of_another_tenants_secret(ada):
    communicator, _ = await hmac_socket_of_acme(ada)
    globex, _ = await database_sync_to_async(Tenant.objects.get_or_create)(key="globex",
                                                                          name="G")
    await database_sync_to_async(tenant_inbox_secret_rotate)(tenant=globex,
                                                             keep_previous_seconds=0)
    await communicator.send_json_to({"type": "ping"})
    assert (await frames_until(communicator, "pong"))[-1] == {"type": "pong"}
    await communicator.disconnect()



async def test_a_socket_joins_its_group_again_before_the_layer_forgets_it(
        layer_mode, ada, ping, run_tasks, api, settings):
    """A channel layer drops a group membership `group_expiry` seconds after it was made
    (86,400 by default): a socket on an HMAC, which never expires, must keep hearing pushes."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    saved = layer.group_expiry
    layer.group_expiry = 2
    settings.INBOX_HEARTBEAT_SECONDS = 0.5
    settings.INBOX_RESYNC_CHECK_SECONDS = 30  # a push, not a resync, must bring the item
    try:
        communicator, _ = await connect(f"/ws/inbox/?recipient=ada&hmac={inbox_hmac('ada')}")
        await asyncio.sleep(3.5)  # past the expiry of the first membership
        item = await trigger_in_app(run_tasks, api)
        created, _ = await frames_until(communicator, "counts.changed")
        assert created == {**created, "type": "item.created"}
        assert created["item"]["id"] == item.pk
        await communicator.disconnect()
    finally:
        layer.group_expiry = saved


async def test_on_uvicorn_a_held_socket_keeps_no_handshake_response_and_still_works(ada):
    """uvicorn's websocket protocol kept the handshake's request and response (their headers)
    for the socket's life; the consumer lets the response go once the socket is accepted."""
    import uvicorn
    import websockets

    from ..conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port,
                                           lifespan="off", log_level="warning"))
    serving = asyncio.ensure_future(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.05)
        async with websockets.connect(
                f"ws://127.0.0.1:{port}/ws/inbox/?token={token_for(ada)}") as socket:
            assert json.loads(await socket.recv())["type"] == "counts.changed"
            (protocol,) = server.server_state.connections
            assert type(protocol).__name__ == "WebSocketsSansIOProtocol"
            assert protocol.response is None and protocol.request is None
            await socket.send(json.dumps({"type": "ping"}))
            assert json.loads(await asyncio.wait_for(socket.recv(), 5)) == {"type": "pong"}
    finally:
        server.should_exit = True
        await serving
