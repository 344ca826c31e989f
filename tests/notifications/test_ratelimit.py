"""Rate limits counted in the database or (the trigger API's) in Redis: per API key on the
trigger endpoint (429 + Retry-After), shared by every process (here: threads with their own
connections)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection

from notifications.models import ApiKey, RateLimitCounter, Trigger
from notifications.ratelimit import rate_limit_hit, redis_key_prefix, redis_rate_limit_hit
from notifications.services import api_key_create

from ..conftest import client_for, email_step, free_port, in_one_window

TRIGGER = "/api/v1/workflows/welcome/trigger"
T0 = datetime(2026, 11, 22, 3, 0, 10, tzinfo=UTC)
needs_redis = pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis (REDIS_URL)")


@pytest.fixture
def redis_counts():
    """This test's Redis (REDIS_URL), its rate-limit keys removed before and after."""
    client = redis.Redis.from_url(settings.REDIS_URL)

    def clear():
        for key in client.scan_iter(f"{redis_key_prefix()}*"):
            client.delete(key)

    clear()
    yield client
    clear()
    client.close()


@pytest.fixture(params=["database", pytest.param("redis", marks=needs_redis)])
def store(request, clarion_settings):
    """The trigger rate limit's store, each in turn: the database, Redis."""
    clarion_settings(TRIGGER_RATE_LIMIT_STORE=request.param)
    if request.param == "redis":
        request.getfixturevalue("redis_counts")
    return request.param


@pytest.fixture
def limited(clarion_settings, store):
    """Two triggers an hour per key, the test's calls in one window."""
    clarion_settings(TRIGGER_RATE_LIMIT=2, TRIGGER_RATE_LIMIT_WINDOW_SECONDS=3600)
    in_one_window(3600)
    return store


def counted(store: str) -> list[int]:
    """The trigger limit's counts in `store`, one per window key."""
    if store == "database":
        return list(RateLimitCounter.objects.values_list("count", flat=True))
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        return [int(client.get(key)) for key in client.scan_iter(f"{redis_key_prefix()}*")]
    finally:
        client.close()


@pytest.mark.django_db
def test_a_key_over_its_trigger_limit_gets_429_with_retry_after_and_triggers_nothing(
        api, limited, make_workflow):
    make_workflow("welcome", steps=[email_step()])
    body = {"recipients": [{"id": "u1", "email": "u1@example.test"}]}
    for _ in range(2):
        assert api.post(TRIGGER, body, format="json").status_code == 202
    response = api.post(TRIGGER, body, format="json")
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert abs(retry_after - (3600 - time.time() % 3600)) < 2  # the seconds left in the hour
    assert response.json() == {
        "error": "rate_limited",
        "detail": f"Request was throttled. Expected available in {retry_after} "
                  f"{'second' if retry_after == 1 else 'seconds'}."}
    assert Trigger.objects.count() == 2
    # Another key has its own count.
    other = client_for(api_key_create(name="other")[1])
    assert other.post(TRIGGER, body, format="json").status_code == 202


@pytest.mark.django_db
def test_a_key_that_reuses_a_deleted_keys_id_starts_with_its_own_count(limited, make_workflow):
    """A database created again (or a staging copy) beside the same Redis reuses ids: the count
    belongs to the key itself, not to its id. CI met this: the test database of one run gave an
    API key the id that the previous run's key, counted in the same Redis, had had."""
    make_workflow("welcome", steps=[email_step()])
    body = {"recipients": [{"id": "u1", "email": "u1@example.test"}]}
    first, secret = api_key_create(name="first")
    for _ in range(2):
        assert client_for(secret).post(TRIGGER, body, format="json").status_code == 202
    assert client_for(secret).post(TRIGGER, body, format="json").status_code == 429
    key_id = first.pk
    first.delete()
    second, secret = api_key_create(name="second")
    ApiKey.objects.filter(pk=second.pk).update(id=key_id)
    assert ApiKey.objects.get(prefix=second.prefix).pk == key_id
    assert client_for(secret).post(TRIGGER, body, format="json").status_code == 202


@pytest.mark.django_db
def test_a_bad_trigger_body_counts_but_an_unauthenticated_call_does_not(client, api, limited,
                                                                        make_workflow):
    make_workflow("welcome", steps=[email_step()])
    assert client.post(TRIGGER, {}, content_type="application/json").status_code == 401
    assert counted(limited) == []
    assert api.post(TRIGGER, {"recipients": "nope"}, format="json").status_code == 400
    assert counted(limited) == [1]


@pytest.mark.django_db
def test_past_the_limit_a_bad_body_or_an_unknown_workflow_is_answered_429_first(
        api, limited, make_workflow):
    """The limit is answered before the view: 429 wins over 400 and 404 (a change that reads
    the limit's answer later, to overlap its round trip, must keep this), and each of those
    calls counts."""
    make_workflow("welcome", steps=[email_step()])
    body = {"recipients": [{"id": "u1", "email": "u1@example.test"}]}
    assert api.post(TRIGGER, {"recipients": "nope"}, format="json").status_code == 400
    assert api.post("/api/v1/workflows/nope/trigger", body, format="json").status_code == 404
    for url, sent in ((TRIGGER, {"recipients": "nope"}), ("/api/v1/workflows/nope/trigger", body),
                      (TRIGGER, body)):
        response = api.post(url, sent, format="json")
        assert response.status_code == 429, response.json()
        assert response.json()["error"] == "rate_limited" and int(response["Retry-After"]) > 0
    assert Trigger.objects.count() == 0
    assert counted(limited) == [2]


@pytest.mark.django_db
def test_the_limit_resets_with_the_next_window_and_the_old_window_is_dropped():
    hit = dict(key="k", limit=2, window_seconds=60)
    assert [rate_limit_hit(**hit, now=T0).allowed for _ in range(3)] == [True, True, False]
    assert rate_limit_hit(**hit, now=T0).retry_after == 50  # 03:00:10 → the window ends 03:01
    later = T0 + timedelta(seconds=50)
    assert rate_limit_hit(**hit, now=later).allowed
    assert list(RateLimitCounter.objects.values_list("window_start", "count")) == [
        (datetime(2026, 11, 22, 3, 1, tzinfo=UTC), 1)]


@pytest.mark.django_db
def test_a_limit_of_zero_means_no_limit():
    assert all(rate_limit_hit(key="k", limit=0, window_seconds=60).allowed for _ in range(5))
    assert not RateLimitCounter.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_with_their_own_connections_never_pass_the_limit_together():
    barrier = threading.Barrier(4)
    allowed, errors = [], []

    def caller():
        try:
            barrier.wait()
            for _ in range(5):
                allowed.append(rate_limit_hit(key="shared", limit=7, window_seconds=3600,
                                              now=T0).allowed)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert (allowed.count(True), allowed.count(False)) == (7, 13)
    assert RateLimitCounter.objects.get(key="shared").count == 7


@needs_redis
@pytest.mark.django_db
def test_in_redis_the_limit_resets_with_the_next_window(redis_counts):
    hit = dict(key="k", limit=2, window_seconds=60)
    assert [redis_rate_limit_hit(**hit, now=T0).allowed for _ in range(3)] == [True, True, False]
    assert redis_rate_limit_hit(**hit, now=T0).retry_after == 50
    assert redis_rate_limit_hit(**hit, now=T0 + timedelta(seconds=50)).allowed
    # Each window's key expires with it; none is written to the database.
    keys = list(redis_counts.scan_iter(f"{redis_key_prefix()}*"))
    assert len(keys) == 2 and all(0 < redis_counts.ttl(key) <= 60 for key in keys)
    assert not RateLimitCounter.objects.exists()


@needs_redis
@pytest.mark.django_db
def test_in_redis_interleaved_keys_each_count_their_own_hits(redis_counts, monkeypatch):
    """Keys taking turns (API keys interleave), more of them than the thread keeps packed
    commands for: each key's hits are its own, none lost or counted twice."""
    from notifications import ratelimit

    monkeypatch.setattr(ratelimit, "_PACKED_MAX", 2)
    keys = ["a", "b", "c"]
    answers = {key: [] for key in keys}
    for _ in range(3):
        for key in keys:
            answers[key].append(redis_rate_limit_hit(key=key, limit=2, window_seconds=60,
                                                     now=T0).allowed)
    assert answers == {key: [True, True, False] for key in keys}


@needs_redis
def test_in_redis_concurrent_callers_never_pass_the_limit_together(redis_counts):
    barrier = threading.Barrier(4)
    allowed, errors = [], []

    def caller():
        try:
            barrier.wait()
            for _ in range(5):
                allowed.append(redis_rate_limit_hit(key="shared", limit=7, window_seconds=3600,
                                                    now=T0).allowed)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert (allowed.count(True), allowed.count(False)) == (7, 13)


@pytest.mark.django_db
def test_with_redis_out_of_reach_the_limit_counts_in_the_database(settings, caplog):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    hit = dict(key="k", limit=1, window_seconds=60, now=T0)
    assert [redis_rate_limit_hit(**hit).allowed for _ in range(2)] == [True, False]
    assert RateLimitCounter.objects.get().count == 1
    assert "counted in the database: Redis failed" in caplog.text


@needs_redis
def test_in_redis_a_server_without_the_script_or_the_connection_still_counts_each_hit_once(
        redis_counts):
    hit = dict(key="k", limit=3, window_seconds=60, now=T0)
    assert redis_rate_limit_hit(**hit).allowed
    redis_counts.script_flush()  # NOSCRIPT for the kept EVALSHA: the script is loaded again
    assert redis_rate_limit_hit(**hit).allowed
    from notifications import ratelimit

    kept = ratelimit._redis_script().registered_client.client_id()
    redis_counts.client_kill_filter(_id=kept)  # the thread's connection, dropped by the server
    assert redis_rate_limit_hit(**hit).allowed
    assert [redis_rate_limit_hit(**hit).allowed for _ in range(2)] == [False, False]
    assert counted("redis") == [3]
