"""The analytics rollups against a hand-counted set of runs, through the real engine, delivery
(an SMTP provider with a price, to a real SMTP server), provider status events and inbox marks;
and the counts stay the same after retention and erasure."""

from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest
from django.db import connection  # noqa: F401  (the skipif condition reads it)
from django.utils import timezone

from analytics.models import HourlyRollup, RollupDelta
from analytics.rollups import Fact, facts_record, rollup_fold, rollup_fold_all
from analytics.selectors import percentile, rollup_report
from inbox.models import InboxItem
from inbox.services import inbox_item_mark
from notifications import retention
from notifications.delivery.status import message_event_record
from notifications.models import Message, ProviderConfig, Recipient, Trigger
from notifications.providers.callbacks import StatusEvent
from notifications.services import recipient_erase
from preferences.services import preference_set_update

from ..conftest import email_step, in_app_step

# The hand count (see the scenario in `counted`).
WELCOME = {"triggered": 3, "sent": 3, "delivered": 0, "failed": 0, "seen": 3, "read": 2,
           "clicked": 1, "suppressed": 0}
NEWS = {"triggered": 3, "sent": 1, "delivered": 1, "failed": 0, "seen": 0, "read": 0,
        "clicked": 0, "suppressed": 2, "suppressed_opted_out": 1,
        "suppressed_undeliverable": 1}


@pytest.fixture
def counted(api, make_workflow, run_tasks, smtp_server):
    """welcome (in-app) to ann, bob, cat: all sent; ann reads hers, bob sees his, cat clicks
    hers. news (email) to ann (opted out of email), bob (sent through `mail`, priced 0.0100,
    then delivered), dan (no address: undeliverable)."""
    host, port, _ = smtp_server
    mail = ProviderConfig(key="mail", channel="email", kind="smtp",
                          options={"cost_per_message": "0.0100"})
    mail.credentials = {"host": host, "port": port}
    mail.save()
    make_workflow("welcome", steps=[in_app_step()])
    make_workflow("news", steps=[email_step()])
    api.post("/api/v1/workflows/welcome/trigger", {"recipients": [
        {"id": "ann", "email": "ann@example.com"}, {"id": "bob", "email": "bob@example.com"},
        {"id": "cat", "email": "cat@example.com"}]})
    run_tasks()
    preference_set_update(recipient=Recipient.objects.get(external_id="ann"),
                          data={"channel_types": {"email": False}}, merge=True)
    api.post("/api/v1/workflows/news/trigger", {"recipients": ["ann", "bob", "dan"]})
    run_tasks()
    items = {i.recipient.external_id: i for i in InboxItem.objects.select_related("recipient")}
    inbox_item_mark(item=items["ann"], action="read")
    inbox_item_mark(item=items["bob"], action="seen")
    inbox_item_mark(item=items["cat"], action="clicked")
    sent = Message.objects.get(workflow__key="news", status="sent")
    message_event_record(event=StatusEvent(provider_kind="smtp", kind="delivered",
                                           message_id=str(sent.id), event_id="d-1"))
    rollup_fold_all()


def report(**kwargs):
    now = timezone.now()
    return rollup_report(start=now - timedelta(days=1), end=now + timedelta(hours=1), **kwargs)


def subset(values: dict, keys) -> dict:
    return {key: values[key] for key in keys}


@pytest.mark.django_db
def test_the_rollups_match_the_hand_count(counted):
    by_workflow = dict(report(by="workflow")["groups"])
    assert subset(by_workflow["welcome"], WELCOME) == WELCOME
    assert subset(by_workflow["news"], NEWS) == NEWS
    assert by_workflow["news"]["estimated_cost"] == Decimal("0.0100")
    assert by_workflow["news"]["delivery_rate"] == 1.0
    assert by_workflow["welcome"]["read_rate"] == pytest.approx(2 / 3)
    assert by_workflow["welcome"]["click_rate"] == pytest.approx(1 / 3)
    for workflow in ("welcome", "news"):
        assert by_workflow[workflow]["latency_p50_ms"] is not None
        assert 0 <= by_workflow[workflow]["latency_p50_ms"] <= by_workflow[workflow][
            "latency_p95_ms"] <= 60_000

    by_channel = dict(report(by="channel")["groups"])
    assert by_channel["in_app"]["sent"] == 3 and by_channel["email"]["sent"] == 1
    by_provider = dict(report(by="provider")["groups"])
    assert by_provider["mail"]["provider_calls"] == 1
    assert by_provider["mail"]["error_rate"] == 0.0
    assert by_provider["mail"]["sent"] == 1 and by_provider["inbox"]["sent"] == 3
    total = report()["total"]
    assert (total["triggered"], total["sent"], total["suppressed"]) == (6, 4, 2)
    only_email = report(filters={"channel": "email"})["total"]
    assert (only_email["sent"], only_email["delivered"]) == (1, 1)


@pytest.mark.django_db
def test_the_counts_stay_after_retention_and_erasure(counted, clarion_settings):
    before = report(by="workflow")["groups"]
    recipient_erase(recipient=Recipient.objects.get(external_id="cat"))
    clarion_settings(RETENTION_DAYS=1)
    retention.retention_apply(now=timezone.now() + timedelta(days=2))
    assert not Message.objects.exists() and not Trigger.objects.exists()
    rollup_fold_all()
    assert report(by="workflow")["groups"] == before


@pytest.mark.django_db
def test_folding_adds_to_existing_rows_and_leaves_no_delta(db):
    at = timezone.now()
    facts_record([Fact(metric="sent", at=at, workflow="w", channel="sms", provider="p",
                       latency_ms=1500, cost=Decimal("0.02"))] * 3)
    assert rollup_fold() == 3
    facts_record([Fact(metric="sent", at=at, workflow="w", channel="sms", provider="p",
                       latency_ms=40_000)])
    rollup_fold_all()
    row = HourlyRollup.objects.get()
    assert (row.sent, row.latency_count, row.cost) == (4, 4, Decimal("0.06"))
    assert row.latency_sum_ms == 3 * 1500 + 40_000
    assert not RollupDelta.objects.exists()
    with pytest.raises(ValueError):
        facts_record([Fact(metric="opened", at=at)])


def test_percentiles_interpolate_inside_a_bucket():
    buckets = [0] * 15
    buckets[4] = 10  # 1,000–2,500 ms
    assert percentile(buckets, 0.5) == 1750
    assert percentile([0] * 15, 0.5) is None


@pytest.mark.django_db
def test_the_admin_page_draws_the_range(counted, admin_client):
    today = timezone.now().date().isoformat()
    page = admin_client.get("/admin/analytics/hourlyrollup/", {"start": today, "end": today,
                                                                "by": "channel"})
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="clarion-chart"') == 2 and 'data-metric="sent"' in html
    total = html.split('id="analytics-total"')[1].split("</table>")[0]
    assert "<td>6</td><td>4</td><td>1</td>" in total  # triggered, sent, delivered
    groups = html.split('id="analytics-groups"')[1].split("</table>")[0]
    assert ">in_app</a>" in groups and ">email</a>" in groups


@pytest.mark.django_db
def test_metrics_count_messages_from_the_rollups(counted, client):
    from prometheus_client.parser import text_string_to_metric_families

    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(body) for s in family.samples}
    assert samples[("clarion_messages_total", (("channel", "in_app"), ("outcome", "sent")))] == 3
    assert samples[("clarion_messages_total",
                    (("channel", "email"), ("outcome", "suppressed_opted_out")))] == 1
    assert samples[("clarion_runs_started_total", (("workflow", "news"),))] == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_fold_takes_the_oldest_deltas_up_to_its_limit_and_skips_those_another_fold_holds():
    at = timezone.now()
    facts_record([Fact(metric="sent", at=at, workflow=f"w{i}", channel="email", provider="p",
                       latency_ms=10 * i, cost=Decimal("0.01")) for i in range(5)])
    first, *others = RollupDelta.objects.order_by("id").values_list("id", flat=True)
    with psycopg.connect(**connection.get_connection_params()) as other_fold:
        other_fold.execute("SELECT 1 FROM analytics_rollupdelta WHERE id = %s FOR UPDATE",
                           [first])
        assert rollup_fold(limit=3) == 3  # the held oldest skipped: the next three
        assert list(RollupDelta.objects.order_by("id").values_list("id", flat=True)) == [
            first, others[-1]]
    assert rollup_fold_all() == 2
    rows = {row.workflow: row for row in HourlyRollup.objects.all()}
    assert {w: (r.sent, r.latency_count, r.latency_sum_ms, r.cost) for w, r in rows.items()} == {
        f"w{i}": (1, 1, 10 * i, Decimal("0.01")) for i in range(5)}
