"""Fixtures for provider tests: real HTTP servers on 127.0.0.1 and ProviderConfig rows."""

import pytest

from notifications.models import ProviderConfig

from .servers import ProviderServer


@pytest.fixture
def provider_server():
    """provider_server(check, respond) -> a started ProviderServer, stopped after the test."""
    servers = []

    def start(check=None, respond=None) -> ProviderServer:
        kwargs = {}
        if check is not None:
            kwargs["check"] = check
        if respond is not None:
            kwargs["respond"] = respond
        server = ProviderServer(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def provider_config(db):
    """provider_config(key, channel, kind, credentials, **fields) -> a saved ProviderConfig."""

    def make(key, channel, kind, credentials=None, **fields) -> ProviderConfig:
        config = ProviderConfig(key=key, channel=channel, kind=kind, **fields)
        config.credentials = credentials or {}
        config.save()
        return config

    return make


@pytest.fixture
def queue_message(make_workflow):
    """queue_message(step_type, fields, recipient={...}, config={}, tenant=None, key="w")
    -> the queued Message of a one-step workflow run for one recipient (its task dropped)."""
    from django_q.models import OrmQ

    from notifications.models import Message
    from notifications.services import StepSpec, TriggerRequest, trigger_workflow, workflow_put
    from notifications.tasks import advance_run

    counter = {"n": 0}

    def make(step_type, fields, recipient=None, config=None, tenant=None, key=None) -> Message:
        counter["n"] += 1
        key = key or f"w{counter['n']}"
        workflow, _ = workflow_put(key=key, name=key, steps=[StepSpec(
            ref="step", type=step_type, config=config or {}, templates={"en": fields})])
        recipient = recipient or {"id": f"u{counter['n']}", "phone": "+15550002222"}
        _, runs = trigger_workflow(TriggerRequest(workflow=workflow, recipients=[recipient],
                                                  tenant=tenant))
        advance_run(str(runs[0].id))
        OrmQ.objects.all().delete()
        return Message.objects.get(run=runs[0])

    return make


@pytest.fixture
def twilio_then_plivo(provider_server, provider_config):
    """twilio_then_plivo(primary_reply) -> (primary, secondary) servers: Twilio `primary`
    (priority 1) answering with `primary_reply(request)`, Plivo `secondary` (priority 2)
    accepting; each checks its provider's documented request."""
    from .test_sms import (
        AUTH_ID,
        PLIVO_TOKEN,
        SID,
        TOKEN,
        plivo_accepts,
        plivo_check,
        twilio_check,
    )

    def make(primary_reply):
        primary = provider_server(twilio_check, primary_reply)
        secondary = provider_server(plivo_check, plivo_accepts)
        provider_config("primary", "sms", "twilio",
                        {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                        options={"base_url": primary.url}, priority=1)
        provider_config("secondary", "sms", "plivo",
                        {"auth_id": AUTH_ID, "auth_token": PLIVO_TOKEN, "from": "+15550003333"},
                        options={"base_url": secondary.url}, priority=2)
        return primary, secondary

    return make
