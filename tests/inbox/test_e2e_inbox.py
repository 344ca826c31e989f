"""End to end: `manage.py serve` (daphne + qcluster as separate processes), a real websocket
client (`websockets`), and the HTTP API. The item is written by the worker process and must reach
the socket held by the daphne process: through the database bridge in the embedded mode, through
Redis when REDIS_URL is set."""

import asyncio
import json
import os
import time

import pytest
import websockets

pytestmark = pytest.mark.django_db(transaction=True)


REALTIME_MODES = ["embedded"] + (["redis"] if os.environ.get("REDIS_URL") else [])


async def _receive(socket, frame_type: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(),
                                                  max(deadline - time.monotonic(), 0.01)))
        if frame["type"] == frame_type:
            return frame


@pytest.mark.parametrize("mode", REALTIME_MODES)
def test_triggered_item_reaches_a_websocket_of_the_served_product(serve, mode):
    if mode == "redis":
        serve.env["REDIS_URL"] = os.environ["REDIS_URL"]
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        api_key = server.credentials()["api_key"]
        minted = server.request("POST", "/api/v1/recipients/demo-user/inbox-token", {},
                                api_key=api_key)
        assert minted.status == 201, minted
        token = minted.json()["token"]
        ws_url = f"ws://127.0.0.1:{server.port}/ws/inbox/?token={token}"

        async def scenario():
            async with websockets.connect(ws_url) as first_tab, \
                    websockets.connect(ws_url) as second_tab:
                hello = await _receive(first_tab, "counts.changed", 10)
                await _receive(second_tab, "counts.changed", 10)
                before = hello["meta"]["unread_count"]
                triggered = await asyncio.to_thread(
                    server.request, "POST", "/api/v1/workflows/welcome/trigger",
                    {"recipients": ["demo-user"], "tenant": "acme"}, api_key=api_key)
                assert triggered.status == 202, triggered
                accepted_at = time.monotonic()
                created = await _receive(first_tab, "item.created", 20)
                latency = time.monotonic() - accepted_at
                counts = await _receive(first_tab, "counts.changed", 5)
                assert (await _receive(second_tab, "item.created", 5))["item"] == created["item"]
                # A read in one tab reaches the other.
                item_id = created["item"]["id"]
                read = await asyncio.to_thread(
                    server.request, "POST", f"/api/v1/inbox/items/{item_id}/read",
                    headers={"Authorization": f"Bearer {token}"})
                assert read.status == 200, read
                updated = await _receive(second_tab, "item.updated", 10)
                return before, created, counts, updated, latency

        before, created, counts, updated, latency = asyncio.run(scenario())
        assert created["item"]["body"] == "Welcome aboard, Ada Lovelace! Take the tour to get " \
                                          "started."
        assert created["item"]["tenant"] == "acme" and created["item"]["workflow"] == "welcome"
        assert counts["meta"]["unread_count"] == before + 1
        assert updated["item"]["id"] == created["item"]["id"] and updated["item"]["read_at"]
        print(f"{mode}: trigger 202 → item.created in {latency * 1000:.0f} ms")


def test_a_bad_token_closes_the_served_socket_with_4401(serve):
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)

        async def scenario():
            async with websockets.connect(
                    f"ws://127.0.0.1:{server.port}/ws/inbox/?token=forged") as socket:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10)
                return closed.value.rcvd.code

        assert asyncio.run(scenario()) == 4401
