"""/metrics (read with prometheus-client's own parser) and /readyz against real parts."""

from datetime import timedelta

import pytest
from django.db.utils import ConnectionHandler
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ
from prometheus_client.parser import text_string_to_metric_families

from analytics.rollups import Fact, facts_record, rollup_fold_all
from clarion import views
from clarion.metrics import WEBSOCKET_CONNECTIONS
from notifications.models import DeliveryAttempt, Message, ProviderConfig, Recipient, Run, Trigger

from ..conftest import email_step, free_port


def scrape(client=None, **headers) -> dict:
    """{family name: {tuple(sorted labels) + (sample name,): value}} of one /metrics answer."""
    answer = (client or Client()).get("/metrics", **headers)
    assert answer.status_code == 200, answer.content
    samples = {}
    for family in text_string_to_metric_families(answer.content.decode()):
        for sample in family.samples:
            samples[(sample.name, *sorted(sample.labels.items()))] = sample.value
    return samples


@pytest.fixture
def ledger(make_workflow):
    """Two triggers of `welcome`, one of `digest`; messages in known channels and statuses;
    provider calls of known durations; one open and one closed circuit."""
    now = timezone.now()
    welcome = make_workflow("welcome", steps=[email_step()])
    digest = make_workflow("digest", steps=[email_step()])
    people = [Recipient.objects.create(external_id=f"user-{i}") for i in range(3)]
    messages = []
    for workflow, person, status in [(welcome, people[0], "sent"), (welcome, people[1], "sent"),
                                     (digest, people[2], "failed")]:
        trigger = Trigger.objects.create(workflow=workflow)
        run = Run.objects.create(trigger=trigger, workflow=workflow, recipient=person,
                                 status="completed")
        messages.append(Message.objects.create(run=run, step_ref="mail", recipient=person,
                                               workflow=workflow, channel="email", status=status))
        # What the workers record with such rows, folded as the minute's task does.
        facts_record([Fact(metric="triggered", at=now, workflow=workflow.key),
                      Fact(metric=status, at=now, workflow=workflow.key, channel="email")])
    Run.objects.create(trigger=trigger, workflow=digest, recipient=people[0])  # running
    rollup_fold_all()
    for duration_ms, outcome in [(40, "succeeded"), (300, "succeeded"), (7000, "transient_error")]:
        DeliveryAttempt.objects.create(message=messages[0], provider="postmark-main",
                                       started_at=now - timedelta(seconds=10),
                                       duration_ms=duration_ms, outcome=outcome)
    # Outside the window: not counted.
    DeliveryAttempt.objects.create(message=messages[1], provider="postmark-main",
                                   started_at=now - timedelta(hours=2), duration_ms=50,
                                   outcome="succeeded")
    ProviderConfig.objects.create(key="postmark-main", channel="email", kind="postmark",
                                  consecutive_failures=5,
                                  circuit_open_until=now + timedelta(minutes=1))
    ProviderConfig.objects.create(key="smtp-backup", channel="email", kind="smtp")
    return messages


def test_metrics_count_the_rows_of_the_database(ledger):
    samples = scrape()
    assert samples[("clarion_triggers_total", ("workflow", "welcome"))] == 2
    assert samples[("clarion_triggers_total", ("workflow", "digest"))] == 1
    assert samples[("clarion_messages_total", ("channel", "email"), ("outcome", "sent"))] == 2
    assert samples[("clarion_messages_total", ("channel", "email"), ("outcome", "failed"))] == 1
    assert samples[("clarion_messages_total", ("channel", "email"), ("outcome", "read"))] == 0
    assert samples[("clarion_runs_started_total", ("workflow", "welcome"))] == 2
    assert samples[("clarion_runs", ("status", "running"))] == 1
    assert samples[("clarion_runs", ("status", "waiting"))] == 0
    assert samples[("clarion_provider_calls", ("outcome", "succeeded"),
                    ("provider", "postmark-main"))] == 2


def test_provider_latency_is_a_histogram_of_the_recent_calls(ledger):
    samples = scrape()

    def bucket(le):
        return samples[("clarion_provider_call_duration_seconds_bucket", ("le", le),
                        ("provider", "postmark-main"))]

    assert bucket("0.05") == 1  # 40 ms
    assert bucket("0.5") == 2  # and 300 ms
    assert bucket("5.0") == 2
    assert bucket("10.0") == 3  # and 7 s
    assert bucket("+Inf") == 3  # the call two hours ago is outside the window
    assert samples[("clarion_provider_call_duration_seconds_gcount",
                    ("provider", "postmark-main"))] == 3
    assert samples[("clarion_provider_call_duration_seconds_gsum",
                    ("provider", "postmark-main"))] == pytest.approx(7.34)


def test_circuit_breaker_states_are_one_hot_per_provider(ledger):
    samples = scrape()

    def state(provider, name):
        return samples[("clarion_provider_circuit_state", ("channel", "email"),
                        ("provider", provider), ("state", name))]

    assert (state("postmark-main", "open"), state("postmark-main", "closed")) == (1, 0)
    assert (state("smtp-backup", "closed"), state("smtp-backup", "open")) == (1, 0)
    assert samples[("clarion_provider_consecutive_failures", ("channel", "email"),
                    ("provider", "postmark-main"))] == 5
    ProviderConfig.objects.filter(key="postmark-main").update(
        circuit_open_until=timezone.now() - timedelta(seconds=1))
    assert scrape()[("clarion_provider_circuit_state", ("channel", "email"),
                     ("provider", "postmark-main"), ("state", "half_open"))] == 1


def test_queue_depth_and_oldest_task_age_come_from_the_broker(db):
    now = timezone.now()
    OrmQ.objects.create(key="clarion", payload="x", lock=now - timedelta(minutes=10))
    OrmQ.objects.create(key="clarion", payload="y", lock=now - timedelta(seconds=5))
    OrmQ.objects.create(key="clarion", payload="z", lock=now + timedelta(minutes=1))  # taken
    samples = scrape()
    assert samples[("clarion_queue_tasks",)] == 2
    assert 600 <= samples[("clarion_queue_oldest_task_age_seconds",)] < 3600


def test_open_websockets_are_counted(db):
    before = scrape()[("clarion_websocket_connections",)]
    WEBSOCKET_CONNECTIONS.inc()
    try:
        assert scrape()[("clarion_websocket_connections",)] == before + 1
    finally:
        WEBSOCKET_CONNECTIONS.dec()


def test_metrics_with_a_token_refuse_requests_without_it(db, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert "clarion_queue_tasks" in {
        name[0] for name in scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")}


def test_metrics_without_a_token_answer_loopback_only(db, settings):
    settings.METRICS_TOKEN = ""
    answer = Client(REMOTE_ADDR="203.0.113.9").get("/metrics")
    assert answer.status_code == 403
    assert "METRICS_TOKEN" in answer.json()["detail"]
    assert Client(REMOTE_ADDR="::1").get("/metrics").status_code == 200


def test_readyz_answers_ok_when_everything_answers(db):
    answer = Client().get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok", "checks": {
        "database": "ok", "broker": "ok", "channel_layer": "ok"}}


def test_readyz_answers_503_naming_the_database_when_it_is_unreachable(db, monkeypatch):
    unreachable = ConnectionHandler({"default": {
        "ENGINE": "django.db.backends.postgresql", "NAME": "clarion_ops", "USER": "postgres",
        "HOST": "127.0.0.1", "PORT": str(free_port()), "OPTIONS": {"connect_timeout": 2}}})
    monkeypatch.setattr(views, "connections", unreachable)
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["database", "broker"]  # the ORM broker is that database
    assert "connection" in body["checks"]["database"].lower()
    assert body["checks"]["channel_layer"] == "ok"
    assert Client().get("/healthz").status_code == 503


def test_readyz_answers_503_naming_redis_parts_when_redis_is_unreachable(db, settings):
    closed = f"redis://127.0.0.1:{free_port()}/13"
    settings.REDIS_URL = closed
    settings.QUEUE_BROKER = "redis"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": closed}]}}}
    answer = Client().get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["down"] == ["broker", "channel_layer"]
    assert body["checks"]["database"] == "ok"
    assert "connect" in body["checks"]["broker"].lower()


def test_readyz_reaches_a_running_redis(db, settings):
    url = "redis://127.0.0.1:6379/13"
    settings.REDIS_URL = url
    settings.QUEUE_BROKER = "redis"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": [{"address": url}]}}}
    assert Client().get("/readyz").json()["status"] == "ok"
