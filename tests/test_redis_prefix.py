"""REDIS_KEY_PREFIX: two deployments sharing one Redis database keep apart. The settings carry
the prefix into the channel layer and the Redis broker's queue name, the rate limit's keys start
with it, and an inbox push of one deployment never reaches a socket of the other's recipient with
the same id."""

import asyncio
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.conf import settings

from clarion.channel_layer import RedisChannelLayer
from inbox.realtime import recipient_group
from notifications.ratelimit import redis_key_prefix, redis_rate_limit_hit

needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")

SHOW = ("import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.Q_CLUSTER['name'], "
        "s.CHANNEL_LAYERS['default'].get('CONFIG', {}).get('prefix')]))")


def _settings_with(**env) -> subprocess.CompletedProcess:
    """Load clarion.settings in a new interpreter with `env` over this one's environment."""
    return subprocess.run(
        [sys.executable, "-c", SHOW], capture_output=True, text=True, timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "clarion.settings", **env})


def test_the_prefix_names_the_channel_layer_and_the_redis_brokers_queue():
    done = _settings_with(REDIS_URL="redis://127.0.0.1:6379/9", QUEUE_BROKER="redis",
                          REDIS_KEY_PREFIX="staging:")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["staging:clarion", "staging:asgi"]


def test_without_a_prefix_the_keys_are_the_ones_clarion_always_used():
    done = _settings_with(REDIS_URL="redis://127.0.0.1:6379/9", QUEUE_BROKER="redis",
                          REDIS_KEY_PREFIX="")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["clarion", "asgi"]


def test_the_orm_brokers_queue_keeps_its_name_whatever_the_prefix():
    """With the ORM broker the cluster's name keys the queue's rows: a prefix set on a running
    deployment must not orphan the tasks already queued."""
    done = _settings_with(REDIS_URL="redis://127.0.0.1:6379/9", QUEUE_BROKER="orm",
                          REDIS_KEY_PREFIX="prod:")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["clarion", "prod:asgi"]


@pytest.mark.parametrize("prefix", ["has space", "x" * 65, "semi;colon", "é"])
def test_a_prefix_redis_or_an_operator_would_misread_is_refused_at_start(prefix):
    done = _settings_with(REDIS_KEY_PREFIX=prefix)
    assert done.returncode != 0
    assert "REDIS_KEY_PREFIX must be at most 64 letters" in done.stderr


@needs_redis
async def test_a_push_to_a_recipient_reaches_only_the_sockets_of_its_own_deployment():
    tag = uuid.uuid4().hex[:8]
    prod_web, staging_web, prod_worker = (
        RedisChannelLayer(hosts=[{"address": settings.REDIS_URL, "socket_timeout": None}],
                          prefix=f"{name}-{tag}:asgi")
        for name in ("prod", "staging", "prod"))
    group = recipient_group(42)  # recipient 42 exists in both deployments' databases
    try:
        prod_socket = await prod_web.new_channel()
        staging_socket = await staging_web.new_channel()
        await prod_web.group_add(group, prod_socket)
        await staging_web.group_add(group, staging_socket)

        await prod_worker.group_send(group, {"type": "inbox.event", "item": "prod's"})

        assert (await asyncio.wait_for(prod_web.receive(prod_socket), 10))["item"] == "prod's"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(staging_web.receive(staging_socket), 0.5)
    finally:
        for layer in (prod_web, staging_web, prod_worker):
            await layer.flush()
            await layer.close_pools()


@needs_redis
def test_the_rate_limits_keys_start_with_the_prefix_and_count_apart(settings):
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"prefix-test-{uuid.uuid4().hex[:8]}"
    try:
        settings.REDIS_KEY_PREFIX = "staging:"
        assert redis_rate_limit_hit(key=key, limit=1, window_seconds=60).allowed
        assert not redis_rate_limit_hit(key=key, limit=1, window_seconds=60).allowed
        assert [k.decode() for k in client.scan_iter(f"staging:clarion:ratelimit:{key}:*")]

        settings.REDIS_KEY_PREFIX = "prod:"
        assert redis_key_prefix() == "prod:clarion:ratelimit:"
        assert redis_rate_limit_hit(key=key, limit=1, window_seconds=60).allowed
    finally:
        for pattern in (f"staging:clarion:ratelimit:{key}:*", f"prod:clarion:ratelimit:{key}:*"):
            for k in client.scan_iter(pattern):
                client.delete(k)
