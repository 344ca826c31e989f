"""Fixtures for provider tests: real HTTP servers on 127.0.0.1, ProviderConfig rows, and the SMTP
kill tests' holding SMTP server (smtp_holding.py)."""

import logging

import pytest
from django.db import connection

from notifications.models import DeliveryAttempt, ProviderConfig
from tests.conftest import free_port

from .servers import ProviderServer
from .smtp_holding import SLOW_COMMIT, HoldingController, HoldingServer, ServerLog


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
def twilio_provider(provider_server, provider_config):
    """twilio_provider(reply=twilio_accepts, key="twilio-main", **fields) -> the server behind a
    saved Twilio ProviderConfig (from +15550001111). The server checks each request the way
    Twilio documents it and answers with `reply(request)` (what it accepted, 201, is kept and
    listed by its Messages list, as Twilio does: `twilio_keeping`); `fields` are more
    ProviderConfig fields, such as `priority`."""
    from .test_sms import SID, TOKEN, twilio_accepts, twilio_check, twilio_keeping

    def make(reply=twilio_accepts, *, key="twilio-main", **fields):
        server = provider_server(twilio_check, twilio_keeping(reply))
        provider_config(key, "sms", "twilio",
                        {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"},
                        options={"base_url": server.url}, **fields)
        return server

    return make


@pytest.fixture
def plivo_provider(provider_server, provider_config):
    """plivo_provider(reply=plivo_accepts, key="plivo", **fields) -> the server behind a saved
    Plivo ProviderConfig (from +15550003333), checking Plivo's documented request."""
    from .test_sms import AUTH_ID, PLIVO_TOKEN, plivo_accepts, plivo_check

    def make(reply=plivo_accepts, *, key="plivo", **fields):
        server = provider_server(plivo_check, reply)
        provider_config(key, "sms", "plivo",
                        {"auth_id": AUTH_ID, "auth_token": PLIVO_TOKEN, "from": "+15550003333"},
                        options={"base_url": server.url}, **fields)
        return server

    return make


@pytest.fixture
def twilio_then_plivo(twilio_provider, plivo_provider):
    """twilio_then_plivo(primary_reply) -> (primary, secondary) servers: Twilio `primary`
    (priority 1) answering with `primary_reply(request)`, Plivo `secondary` (priority 2)
    accepting; each checks its provider's documented request."""

    def make(primary_reply):
        return (twilio_provider(primary_reply, key="primary", priority=1),
                plivo_provider(key="secondary", priority=2))

    return make


@pytest.fixture
def postmark_provider(provider_server, provider_config):
    """postmark_provider(reply, key="postmark", **fields) -> the server behind a saved Postmark
    ProviderConfig; it checks Postmark's documented request and answers `reply(request)`."""
    from .test_email_kinds import POSTMARK_TOKEN, postmark_check

    def make(reply, *, key="postmark", **fields):
        server = provider_server(postmark_check, reply)
        provider_config(key, "email", "postmark", {"server_token": POSTMARK_TOKEN},
                        options={"base_url": f"{server.url}/"}, **fields)
        return server

    return make


# The SMTP kill tests' (smtp_holding.py)

@pytest.fixture
def holding_smtp(provider_config):
    """holding_smtp(stage, hold, configured=True) -> a HoldingServer behind a saved SMTP
    ProviderConfig (`configured`), else named by the EMAIL_HOST/EMAIL_PORT of the worker's
    environment (Django's EMAIL_BACKEND settings: `server.env`)."""
    controllers, handlers = [], []

    def start(stage: str, hold: int = 1, configured: bool = True) -> HoldingServer:
        handler = HoldingServer(stage, hold)
        port = free_port()
        controller = HoldingController(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        handlers.append(handler)
        handler.env = {} if configured else {"EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(port)}
        if configured:
            provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port,
                                                      "from_email": "alerts@example.com"})
        return handler

    yield start
    for handler in handlers:
        handler.released.set()
    for controller in controllers:
        controller.stop()


@pytest.fixture
def server_log():
    logger = logging.getLogger("mail.log")
    handler, level = ServerLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def slow_attempt_commit():
    """A deferred constraint trigger on the attempts' table that sleeps `SLOW_COMMIT` seconds at
    the COMMIT of a transaction that inserted one (a constraint trigger DEFERRABLE INITIALLY
    DEFERRED runs at COMMIT, before the commit record is written): the worker's COMMIT is then
    on its way for that long, and PostgreSQL completes it whether or not the worker lives."""
    table = DeliveryAttempt._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE FUNCTION slow_attempt_commit() RETURNS trigger LANGUAGE plpgsql "
                       f"AS $$ BEGIN PERFORM pg_sleep({SLOW_COMMIT}); RETURN NULL; END $$")
        cursor.execute(f'CREATE CONSTRAINT TRIGGER slow_attempt_commit AFTER INSERT ON "{table}" '
                       "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                       "EXECUTE FUNCTION slow_attempt_commit()")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER slow_attempt_commit ON "{table}"')
        cursor.execute("DROP FUNCTION slow_attempt_commit()")
