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
