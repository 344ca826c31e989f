"""Fixed-window rate limits counted in the database (RateLimitCounter), so that every process
— many web and worker processes in production, daphne + qcluster in the embedded mode — counts
against the same limit. Each check is one conditional UPDATE in the common case.

A fixed window lets up to twice the limit through around a window's boundary; for the limits
here (a bill-run guard, an API abuse guard) that is the trade for one statement per check.

The trigger API's limit may count in Redis instead (`redis_rate_limit_hit`,
CLARION["TRIGGER_RATE_LIMIT_STORE"]): every trigger of a key otherwise updates one database row,
committed on its own, and the web processes queue on its lock.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import RateLimitCounter, ThrottleCounter


@dataclass(frozen=True)
class RateLimitVerdict:
    allowed: bool
    retry_after: int = 0  # seconds until the window ends, when refused


def _window_start(now: datetime, window_seconds: int) -> datetime:
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % window_seconds, tz=UTC)


def rate_limit_hit(*, key: str, limit: int, window_seconds: int,
                   now: datetime | None = None) -> RateLimitVerdict:
    """Count one call against `key` and say whether it is within `limit` calls per
    `window_seconds`. A refused call is not counted. `limit` ≤ 0 means no limit."""
    if limit <= 0 or window_seconds <= 0:
        return RateLimitVerdict(True)
    now = now or timezone.now()
    start = _window_start(now, window_seconds)
    retry_after = max(1, math.ceil(
        (start + timedelta(seconds=window_seconds) - now).total_seconds()))
    counters = RateLimitCounter.objects.filter(key=key, window_start=start)
    if counters.filter(count__lt=limit).update(count=F("count") + 1):
        return RateLimitVerdict(True)
    try:
        with transaction.atomic():  # a savepoint: the caller may be inside a transaction
            RateLimitCounter.objects.create(key=key, window_start=start, count=1)
    except IntegrityError:
        # The window's row exists: full, or another process created it just now.
        if counters.filter(count__lt=limit).update(count=F("count") + 1):
            return RateLimitVerdict(True)
        return RateLimitVerdict(False, retry_after)
    # A new window for this key: its earlier windows are over.
    RateLimitCounter.objects.filter(key=key, window_start__lt=start).delete()
    return RateLimitVerdict(True)


# Count one call in a window's key unless it holds `limit` already; the key expires with its
# window. Atomic in Redis (a script runs alone). Returns 1 when counted, 0 when refused.
_HIT_SCRIPT = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', KEYS[1])
if count == 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
REDIS_TIMEOUT_SECONDS = 1.0
_redis = threading.local()  # this thread's ((URL, process id), its script on a client of its own)
logger = logging.getLogger(__name__)


def redis_key_prefix() -> str:
    """What the rate limit's Redis keys start with: settings.REDIS_KEY_PREFIX (a deployment's
    own, when several share a Redis database) + "clarion:ratelimit:"."""
    return f"{settings.REDIS_KEY_PREFIX}clarion:ratelimit:"


def _redis_script():
    """This thread's client of settings.REDIS_URL with the registered script (made once a
    thread and process: a forked child does not share its parent's connection). One connection
    each, not a pool's: redis-py looks at a pooled connection for unread data (a system call)
    every time it hands it out, ~1.5 % of a trigger's CPU."""
    owner = (settings.REDIS_URL, os.getpid())
    kept = getattr(_redis, "kept", None)
    if kept is None or kept[0] != owner:
        client = redis.Redis.from_url(owner[0], socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS,
                                      single_connection_client=True)
        kept = _redis.kept = (owner, client.register_script(_HIT_SCRIPT), {})
    return kept[1]


_PACKED_MAX = 256


def _redis_counted(key: str, limit: int, window_seconds: int) -> int:
    """The hit script's answer for `key` (1 counted, 0 refused): its EVALSHA packed once per
    window's key (up to _PACKED_MAX keys kept per thread: API keys interleave) and sent on the
    thread's connection as it is, the answer read back (redis-py's command path, packing and
    retry wrapper, cost more CPU than the round trip); on any error, or a server without the
    script, redis-py's script call (loads it, connects again), whose RedisError the caller
    sees. A timeout after the server ran the script counts the hit twice, as redis-py's own
    retries did: the limit errs towards refusing."""
    script = _redis_script()
    packed = _redis.kept[2]
    command = (key, limit, window_seconds)
    connection = script.registered_client.connection
    if command not in packed:
        if len(packed) >= _PACKED_MAX:
            packed.clear()  # mostly past windows' keys
        packed[command] = connection.pack_command("EVALSHA", script.sha, 1, *command)
    try:
        connection.send_packed_command(packed[command])
        return connection.read_response()
    except redis.RedisError:  # NOSCRIPT (read whole), or the connection dropped (closed)
        return script(keys=[key], args=[limit, window_seconds])


def redis_rate_limit_hit(*, key: str, limit: int, window_seconds: int,
                         now: datetime | None = None) -> RateLimitVerdict:
    """rate_limit_hit counted in Redis (settings.REDIS_URL; keys under redis_key_prefix(), gone
    when their window ends): one script call, no database write. The same fixed windows and
    answers. Not part of the caller's transaction: for checks made before any write (the trigger
    API's). With Redis out of reach it counts in the database (logged)."""
    if limit <= 0 or window_seconds <= 0:
        return RateLimitVerdict(True)
    now = now or timezone.now()
    start = _window_start(now, window_seconds)
    try:
        counted = _redis_counted(f"{redis_key_prefix()}{key}:{int(start.timestamp())}",
                                 limit, window_seconds)
    except redis.RedisError as error:
        logger.warning("rate limit %s counted in the database: Redis failed (%s)", key, error)
        return rate_limit_hit(key=key, limit=limit, window_seconds=window_seconds, now=now)
    if counted:
        return RateLimitVerdict(True)
    return RateLimitVerdict(False, max(1, math.ceil(
        (start + timedelta(seconds=window_seconds) - now).total_seconds())))


def trigger_rate_limit_hit(*, api_key_prefix: str,
                           now: datetime | None = None) -> RateLimitVerdict:
    """Count one trigger call of the API key whose prefix is `api_key_prefix` (ApiKey.prefix,
    "ck_" + 8 random hex digits) against CLARION["TRIGGER_RATE_LIMIT"] per
    TRIGGER_RATE_LIMIT_WINDOW_SECONDS, in the store TRIGGER_RATE_LIMIT_STORE names.

    Counted by prefix, not primary key: a Redis shared by two databases (a staging copy, a
    database created again, the test suite's fresh databases) would otherwise hand one key's
    count to another key that reuses its id."""
    conf = settings.CLARION
    hit = redis_rate_limit_hit if conf["TRIGGER_RATE_LIMIT_STORE"] == "redis" else rate_limit_hit
    return hit(key=f"api-trigger:{api_key_prefix}", limit=conf["TRIGGER_RATE_LIMIT"],
               window_seconds=conf["TRIGGER_RATE_LIMIT_WINDOW_SECONDS"], now=now)


def throttle_hit(*, key: str, limit: int, window_seconds: float, now: datetime) -> tuple[bool, int]:
    """Count one run against throttle bucket `key` (≤ 64 characters) if fewer than `limit` runs
    were let through in the `window_seconds` before `now` (a sliding window, unlike the fixed
    windows above: a throttle promises at most `limit` in any such span). Returns (let through,
    how many the window holds now, this one included when let through).

    The bucket's row is locked (SELECT … FOR UPDATE) until the caller's transaction ends, so
    concurrent runs in any process are counted one after the other; a pass that rolls back takes
    its count back with it."""
    with transaction.atomic():  # a savepoint: get_or_create may meet a concurrent INSERT
        row, _ = ThrottleCounter.objects.select_for_update().get_or_create(key=key)
    since = now - timedelta(seconds=window_seconds)
    passed = [stamp for stamp in row.passed if datetime.fromisoformat(stamp) > since]
    if len(passed) >= limit:
        return False, len(passed)
    row.passed = [*passed, now.astimezone(UTC).isoformat()]
    row.save(update_fields=["passed", "updated_at"])
    return True, len(row.passed)


PRUNE_BATCH = 5000


def counters_prune(*, now: datetime, throttle_window_seconds: float) -> int:
    """Delete counters no limit can read again, in batches of PRUNE_BATCH rows: rate-limit
    windows older than the longest configured rate window (a key that stopped being used keeps
    its last window's row), and throttle buckets untouched for longer than
    `throttle_window_seconds` (the longest window of any throttle step: every time such a bucket
    holds is already outside its own window). Takes aware datetimes; returns rows deleted."""
    conf = settings.CLARION
    rate_window = max(conf["TRIGGER_RATE_LIMIT_WINDOW_SECONDS"],
                      conf["SMS_RATE_LIMIT_WINDOW_SECONDS"])
    deleted = 0
    for rows in (RateLimitCounter.objects.filter(
                     window_start__lt=now - timedelta(seconds=rate_window)),
                 ThrottleCounter.objects.filter(
                     updated_at__lt=now - timedelta(seconds=throttle_window_seconds))):
        while True:
            batch = list(rows.values_list("pk", flat=True)[:PRUNE_BATCH])
            if not batch:
                break
            deleted += rows.model.objects.filter(pk__in=batch).delete()[0]
    return deleted
