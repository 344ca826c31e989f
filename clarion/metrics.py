"""`/metrics`: Clarion's state in the Prometheus text format (prometheus-client).

Correct with any number of web and worker processes because almost everything is read from the
database at scrape time, by one custom collector doing a few aggregate queries:

- `clarion_triggers_total{workflow}`: triggers accepted (a counter: rows only grow, until
  retention deletes old ones).
- `clarion_runs{status}`: runs running or waiting now (a gauge, counted on a partial index).
- `clarion_messages_total{channel,outcome}` (sent, delivered, failed, bounced, seen, read,
  clicked, suppressed_<reason>) and `clarion_runs_started_total{workflow}`: counters summed from
  the analytics rollups (analytics/), a few rows per hour, never a scan of the message table.
- `clarion_provider_call_duration_seconds{provider}`: a gauge histogram of the provider calls
  that started in the last `CLARION_METRICS_WINDOW_SECONDS` (default 300), from the
  DeliveryAttempt ledger's `duration_ms`. A gauge histogram, not a cumulative one: use
  `histogram_quantile(0.95, clarion_provider_call_duration_seconds_bucket)` without `rate()`.
- `clarion_provider_calls{provider,outcome}`: the same window's calls by outcome.
- `clarion_queue_tasks`, `clarion_queue_oldest_task_age_seconds`: tasks waiting in the
  django-q2 queue and the age of the oldest (the age with the ORM broker only: Redis keeps no
  enqueue time).
- `clarion_provider_circuit_state{provider,channel,state}`: 1 for the state each configured
  provider's circuit breaker is in (closed, open, half_open), 0 for the others;
  `clarion_provider_consecutive_failures{provider,channel}`.
- `clarion_websocket_connections`: inbox websockets open now, and
  `clarion_inbox_pushes_dropped_total`: item pushes an open socket never received (a channel
  layer over its per-channel capacity, or unreachable when the worker published), found by the
  socket's reconciliation with the database; each such socket was told to re-sync. The in-process
  numbers: each web process counts its own; with several, set `PROMETHEUS_MULTIPROC_DIR`
  (prometheus-client's multiprocess mode, summed over processes).

Access: with `METRICS_TOKEN` set, a request needs `Authorization: Bearer <token>`; without it,
only requests from the loopback address are served (the embedded mode's default).
"""

from __future__ import annotations

import hmac
import ipaddress
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Provider call latency buckets, in seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Open inbox websockets of this process (inbox/consumers.py moves it). Not in the default
# registry: /metrics builds its own per scrape.
WEBSOCKET_CONNECTIONS = Gauge(
    "clarion_websocket_connections", "Inbox websockets open now.",
    registry=None, multiprocess_mode="livesum",
)

# Item pushes an open inbox socket never received (inbox/consumers.py counts them when it
# reconciles its pushes with the database).
INBOX_PUSHES_DROPPED = Counter(
    "clarion_inbox_pushes_dropped",
    "Inbox item pushes an open websocket never received (then told to re-sync).",
    registry=None,
)


class DatabaseCollector:
    """Reads Clarion's counts and states from the database when Prometheus scrapes."""

    def collect(self):
        from notifications.models import DeliveryAttempt, ProviderConfig, Run, Trigger

        now = timezone.now()
        triggers = CounterMetricFamily("clarion_triggers", "Triggers accepted, by workflow.",
                                       labels=["workflow"])
        for row in Trigger.objects.order_by().values("workflow__key").annotate(n=Count("id")):
            triggers.add_metric([row["workflow__key"]], row["n"])
        yield triggers

        # Runs still going: the partial index run_active_idx counts them without a scan.
        runs = GaugeMetricFamily("clarion_runs", "Runs running or waiting now.",
                                 labels=["status"])
        active = dict(Run.objects.filter(status__in=ACTIVE_RUNS).order_by().values("status")
                      .annotate(n=Count("id")).values_list("status", "n"))
        for status in ACTIVE_RUNS:
            runs.add_metric([status], active.get(status, 0))
        yield runs
        yield from _rollup_counters()

        yield from _provider_calls(DeliveryAttempt, now)
        yield from _queue(now)
        yield from _breakers(ProviderConfig, now)


ACTIVE_RUNS = ("running", "waiting")
# Outcome label → the HourlyRollup column counted.
MESSAGE_OUTCOMES = {"sent": "sent", "delivered": "delivered", "failed": "failed",
                    "bounced": "bounced", "seen": "seen", "read": "read", "clicked": "clicked",
                    "suppressed_opted_out": "suppressed_opted_out",
                    "suppressed_quiet_hours": "suppressed_quiet_hours",
                    "suppressed_throttled": "suppressed_throttled",
                    "suppressed_digested": "suppressed_digested",
                    "suppressed_undeliverable": "suppressed_undeliverable",
                    "suppressed_other": "suppressed_other"}


def _rollup_counters():
    """Messages by channel and outcome, and runs started by workflow, summed from the
    analytics rollups (a few rows per hour) rather than grouped over the message table."""
    from analytics.models import HourlyRollup

    rollups = HourlyRollup.objects.order_by()
    messages = CounterMetricFamily(
        "clarion_messages", "Messages by channel and outcome (the analytics rollups).",
        labels=["channel", "outcome"])
    for row in rollups.exclude(channel="").values("channel").annotate(
            **{label: Sum(column) for label, column in MESSAGE_OUTCOMES.items()}):
        for label in MESSAGE_OUTCOMES:
            messages.add_metric([row["channel"], label], row[label] or 0)
    yield messages
    started = CounterMetricFamily("clarion_runs_started", "Runs started, by workflow.",
                                  labels=["workflow"])
    for row in rollups.filter(triggered__gt=0).values("workflow").annotate(n=Sum("triggered")):
        started.add_metric([row["workflow"]], row["n"])
    yield started


def _provider_calls(model, now):
    window = settings.CLARION["METRICS_WINDOW_SECONDS"]
    recent = model.objects.order_by().filter(started_at__gte=now - timedelta(seconds=window))
    calls = GaugeMetricFamily(
        "clarion_provider_calls",
        f"Provider calls started in the last {window:g} s, by outcome.",
        labels=["provider", "outcome"])
    for row in recent.values("provider", "outcome").annotate(n=Count("id")):
        calls.add_metric([row["provider"], row["outcome"]], row["n"])
    yield calls

    latency = GaugeHistogramMetricFamily(
        "clarion_provider_call_duration_seconds",
        f"Duration of the provider calls that started in the last {window:g} s.",
        labels=["provider"])
    per_provider: dict[str, list[int]] = {}
    for provider, duration_ms in recent.filter(duration_ms__isnull=False).values_list(
            "provider", "duration_ms").iterator():
        per_provider.setdefault(provider, []).append(duration_ms)
    for provider, durations in sorted(per_provider.items()):
        buckets = [(_bucket_name(bound), sum(1 for d in durations if d <= bound * 1000))
                   for bound in LATENCY_BUCKETS]
        buckets.append(("+Inf", len(durations)))
        latency.add_metric([provider], buckets, sum(durations) / 1000)
    yield latency


def _bucket_name(bound: float) -> str:
    return repr(float(bound))


def _queue(now):
    from django_q.brokers import get_broker
    from django_q.models import OrmQ

    depth = GaugeMetricFamily("clarion_queue_tasks", "Tasks waiting in the queue.")
    age = GaugeMetricFamily("clarion_queue_oldest_task_age_seconds",
                            "Seconds the oldest waiting task has waited (ORM broker only).")
    if settings.QUEUE_BROKER == "orm":
        waiting = OrmQ.objects.using(settings.Q_CLUSTER["orm"]).filter(lock__lte=now)
        depth.add_metric([], waiting.count())
        oldest = waiting.order_by("lock").values_list("lock", flat=True).first()
        age.add_metric([], (now - oldest).total_seconds() if oldest else 0.0)
    else:
        depth.add_metric([], get_broker().queue_size())
    yield depth
    if age.samples:
        yield age


def _breakers(model, now):
    states = GaugeMetricFamily(
        "clarion_provider_circuit_state",
        "1 for the state the provider's circuit breaker is in, 0 for the others.",
        labels=["provider", "channel", "state"])
    failures = GaugeMetricFamily("clarion_provider_consecutive_failures",
                                 "Transient failures in a row.", labels=["provider", "channel"])
    for key, channel, open_until, failed in model.objects.filter(active=True).values_list(
            "key", "channel", "circuit_open_until", "consecutive_failures"):
        if open_until is None:
            current = "closed"
        elif open_until > now:
            current = "open"
        else:
            current = "half_open"
        for state in ("closed", "open", "half_open"):
            states.add_metric([key, channel, state], 1 if state == current else 0)
        failures.add_metric([key, channel], failed)
    yield states
    yield failures


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "")
        return given.startswith("Bearer ") and hmac.compare_digest(
            given.removeprefix("Bearer ").encode(), token.encode())
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def metrics(request):
    """GET /metrics: the Prometheus text exposition (format 0.0.4), 401 without the
    METRICS_TOKEN bearer token (or, with no token set, 403 from anywhere but loopback)."""
    if not _allowed(request):
        if settings.METRICS_TOKEN:
            return JsonResponse({"error": "unauthorized",
                                 "detail": "Send Authorization: Bearer <METRICS_TOKEN>."},
                                status=401)
        return JsonResponse({"error": "forbidden",
                             "detail": "Without METRICS_TOKEN, /metrics answers loopback only."},
                            status=403)
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    if settings.PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(WEBSOCKET_CONNECTIONS)
        registry.register(INBOX_PUSHES_DROPPED)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
