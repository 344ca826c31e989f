"""A route step's push goes through a real (local) FCM server like a push step's, without the
route's own config (its `ttl` is the route's, not a push time-to-live)."""

from datetime import UTC, datetime

import pytest
from django_q.models import OrmQ

from notifications.delivery import deliver
from notifications.models import Message
from notifications.providers import fcm
from notifications.services import TriggerRequest, trigger_workflow

from ...conftest import advance_at
from ..test_engine_route import route_step
from .fake_push import FakeGoogle

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def google():
    fcm._google_credentials.clear()
    server = FakeGoogle()
    yield server
    server.stop()


def test_a_routes_push_is_delivered_through_fcm_with_no_route_config_in_it(
        make_workflow, provider_config, google):
    provider_config("fcm-main", "push", "fcm", {"service_account": google.service_account()},
                    options={"base_url": google.url, "cost_per_message": "0"})
    workflow = make_workflow("w", steps=[route_step(["push", "email"], ttl={"hours": 2})])
    _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{
        "id": "ada", "name": "Ada", "channel_data": {"push:fcm": {"tokens": ["t" * 40]}}}],
        actor={"id": "grace", "name": "Grace"}))
    OrmQ.objects.all().delete()
    run = advance_at(runs[0], T0)
    message = run.messages.get()
    assert message.channel == "push"
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.status, message.provider) == (Message.Status.SENT, "fcm-main")
    (sent,) = [r.json()["message"] for r in google.send_requests()]
    assert sent["notification"] == {"title": "Mention", "body": "Grace mentioned you"}
    assert "android" not in sent  # no ttl of 7200 s taken from the route's config
    assert google.problems == []


def test_a_routes_push_reaches_every_device_set_and_is_priced_for_each(
        make_workflow, provider_config, clarion_settings):
    from decimal import Decimal

    from notifications.models import StepLog
    from notifications.providers import apns

    from .fake_push import FakeAPNs, FakePushService, ec_key_pem

    clarion_settings(ALLOW_PRIVATE_URLS=True)
    apns._apns_tokens.clear()
    key = ec_key_pem()
    apple = FakeAPNs(team_id="TEAM123456", key_id="KEY1234567", topic="com.example.clarion",
                     private_key=key)
    service = FakePushService()
    try:
        provider_config("apns-main", "push", "apns",
                        {"team_id": "TEAM123456", "key_id": "KEY1234567", "private_key": key,
                         "topic": "com.example.clarion"},
                        options={"base_url": apple.url, "ca_file": apple.cert_file,
                                 "cost_per_message": "0.0010"}, priority=1)
        provider_config("webpush-main", "push", "webpush",
                        {"vapid_private_key": ec_key_pem(), "vapid_subject": "mailto:o@x.test"},
                        options={"cost_per_message": "0.0005"}, priority=2)
        browser = service.subscribe()
        workflow = make_workflow("w", steps=[route_step(["push", "email"])])
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[{
            "id": "ada", "name": "Ada", "channel_data": {
                "push:apns": {"tokens": ["c3" * 32]},
                "push:webpush": {"subscriptions": [browser]}}}],
            actor={"id": "grace", "name": "Grace"}))
        OrmQ.objects.all().delete()
        run = advance_at(runs[0], T0)
        message = run.messages.get()
        queued = run.step_logs.get(event=StepLog.Event.QUEUED).detail
        assert (queued["estimated_cost"], queued["cost_currency"]) == ("0.001500", "USD")

        deliver(str(message.id))

        message.refresh_from_db()
        assert message.status == Message.Status.SENT
        assert (message.estimated_cost, message.cost_currency) == (Decimal("0.0015"), "USD")
        assert [r.token for r in apple.requests] == ["c3" * 32]
        assert [p["body"] for p in service.delivered] == ["Grace mentioned you"]
        assert apple.problems == [] and service.problems == []
    finally:
        apple.stop()
        service.stop()
