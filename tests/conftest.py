"""Shared fixtures: API keys and clients, workflows, the real task queue, a real SMTP server."""

import socket
import threading
import time
from datetime import datetime
from email import message_from_bytes, policy
from pydoc import locate

import pytest
from aiosmtpd.controller import Controller
from django.db import connections, transaction
from django_q.brokers import get_broker
from django_q.signing import SignedPackage
from rest_framework.test import APIClient

from notifications.models import Run, Tenant
from notifications.services import StepSpec, api_key_create, workflow_put

INVALID = {"error": "invalid_request", "detail": "The request is not valid; see `fields`."}


@pytest.fixture(scope="session", autouse=True)
def _no_rate_limits():
    """Tests send many SMS to one test number and trigger in loops: the rate limits are off
    unless a test turns them on (tests/notifications/test_ratelimit.py, test_sms.py)."""
    from django.conf import settings

    saved = dict(settings.CLARION)
    settings.CLARION.update(TRIGGER_RATE_LIMIT=0, SMS_RATE_LIMIT_PER_RECIPIENT=0)
    yield
    settings.CLARION.clear()
    settings.CLARION.update(saved)


@pytest.fixture(autouse=True)
def _api_keys_forgotten():
    """Each test starts with no API key kept by this process (notifications/services/keys.py):
    a key a rolled-back test kept is not in the next test's database."""
    from notifications.services.keys import api_keys_forget

    api_keys_forget()


@pytest.fixture(autouse=True)
def _smtp_sessions_closed():
    """Each test starts with no SMTP connection kept open by this process
    (notifications/providers/smtp_sessions.py): a server a test counts connections at must not
    see another test's, and a test's server stops with nothing of ours open."""
    from notifications.providers.smtp_sessions import smtp_sessions_close

    smtp_sessions_close()
    yield
    smtp_sessions_close()


@pytest.fixture(autouse=True)
def _language_reset():
    """Each test starts and ends in LANGUAGE_CODE. An admin request in another language leaves
    it active on the thread afterwards (Django's LocaleMiddleware activates it, as in a server,
    where the next non-admin request sets LANGUAGE_CODE again: clarion/locale.py); a test that
    follows on the same thread must not inherit it."""
    from django.utils import translation

    translation.deactivate()
    yield
    translation.deactivate()


@pytest.fixture
def clarion_settings(settings):
    """clarion_settings(KEY=value, …) overrides keys of settings.CLARION for this test only
    (pytest-django's `settings` restores the whole dict afterwards)."""

    def override(**values) -> None:
        settings.CLARION = {**settings.CLARION, **values}

    return override


def in_one_window(window_seconds: int, margin: float = 30) -> None:
    """Wait, when fewer than `margin` seconds are left, for the next fixed rate-limit window of
    `window_seconds` (aligned to the epoch, as notifications.ratelimit's) to begin, so that the
    few calls a test counts fall in one window. Without it a test refused nothing when its
    calls straddled a window's end (a loaded machine: the third of three calls let through)."""
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        time.sleep(left + 0.01)


def invalid(fields: dict) -> dict:
    """The API's 400 body naming `fields`."""
    return {**INVALID, "fields": fields}


def client_for(secret: str) -> APIClient:
    """An API client that authenticates with `secret` and speaks JSON."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    client.default_format = "json"
    return client


def at_once(count: int, call, *, timeout: float = 60) -> list:
    """Call `call(index)` for index 0 … count − 1, each in a thread of its own, all released
    together by a barrier; each thread closes its database connections when done. Returns the
    results by index: None for a call that raised (its traceback printed) or had not returned
    within `timeout` seconds."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = call(index)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def api_key(db):
    """(ApiKey, secret) of an unrestricted key."""
    return api_key_create(name="tests")


@pytest.fixture
def api(api_key):
    """An API client that authenticates with a valid key and speaks JSON."""
    return client_for(api_key[1])


@pytest.fixture
def acme(db):
    return Tenant.objects.create(key="acme", name="Acme")


@pytest.fixture
def globex(db):
    return Tenant.objects.create(key="globex", name="Globex")


@pytest.fixture
def acme_api(acme):
    """A client whose key is restricted to tenant acme."""
    _, secret = api_key_create(name="acme only", tenant=acme)
    return client_for(secret)


@pytest.fixture
def locmem(settings):
    """Django's in-memory email backend; returns django.core.mail (its outbox)."""
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return mail


@pytest.fixture
def make_workflow(db):
    """make_workflow(key, steps=[StepSpec|dict, …], **fields) through the real service."""

    def make(key="welcome", steps=None, **fields):
        specs = [s if isinstance(s, StepSpec) else StepSpec(**s) for s in (steps or [])]
        fields.setdefault("name", key.title())
        workflow, _ = workflow_put(key=key, steps=specs, **fields)
        return workflow

    return make


@pytest.fixture
def run_of(make_workflow):
    """run_of(*steps): the one Run of a trigger to "ada@example.com" (id u1) of a new workflow
    "w" with those steps, made through the real services (not advanced yet)."""
    from notifications.services import TriggerRequest, trigger_workflow

    def make(*steps):
        workflow = make_workflow("w", steps=list(steps))
        _, runs = trigger_workflow(TriggerRequest(
            workflow=workflow, recipients=[{"id": "u1", "email": "ada@example.com"}]))
        return runs[0]

    return make


def email_step(ref="mail", subject="Hello {{ recipient.name }}", html="<p>{{ data.body }}</p>",
               text=None, **extra) -> StepSpec:
    fields = {"subject": subject, "html": html}
    if text is not None:
        fields["text"] = text
    return StepSpec(ref=ref, type="email", templates={"en": fields}, **extra)


def in_app_step(ref="inbox", body="Hi {{ recipient.name }}", **extra) -> StepSpec:
    return StepSpec(ref=ref, type="in_app", templates={"en": {"body": body}}, **extra)


def delay_step(ref="wait", **config) -> StepSpec:
    return StepSpec(ref=ref, type="delay", config=config)


def advance_at(run: Run, now: datetime) -> Run:
    """engine.advance(run) at `now` under the run's row lock, as the task does; the run reread."""
    from notifications import engine

    with transaction.atomic():
        locked = Run.objects.select_for_update(of=("self",)).select_related(
            "workflow", "recipient", "tenant", "trigger").get(pk=run.pk)
        engine.advance(locked, now=now)
    return Run.objects.get(pk=run.pk)


def queued_tasks(func: str) -> list[tuple]:
    """The tasks of `func` in the real ORM queue, oldest first, as (args, time from which the
    broker hands it out), e.g. [(("<run id>",), datetime)]."""
    from django_q.models import OrmQ

    found = []
    for row in OrmQ.objects.order_by("id"):
        task = SignedPackage.loads(row.payload)
        if task["func"] == func:
            found.append((tuple(task["args"]), row.lock))
    return found


def timeline_events(run: Run) -> list[tuple[str, str]]:
    """The run's timeline as (step ref, event) pairs, in order."""
    return list(run.step_logs.order_by("id").values_list("step_ref", "event"))


@pytest.fixture
def serve(request, transactional_db, smtp_server, tmp_path):
    """A launcher of `manage.py serve` on free ports, with CLARION_VAR_DIR in tmp_path and email
    going to the aiosmtpd server. Every server it started is stopped (its whole process group)
    before the test database is flushed."""
    from .e2e_support import ServeLauncher, served_database_url  # it imports this module

    if request.config.getoption("nomigrations", default=False):
        pytest.skip("serve migrates the database itself: it needs a migrated test database")
    _, smtp_port, _ = smtp_server
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    launcher = ServeLauncher(database_url=served_database_url(), var_dir=var_dir,
                             smtp_port=smtp_port, log_dir=tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture
def run_tasks(db):
    """Execute the tasks waiting in the real django-q2 ORM queue, in this process, until none
    are left (tasks a task enqueues run too). Returns the names of the tasks it ran."""

    def run(limit: int = 1000) -> list[str]:
        broker = get_broker()
        ran: list[str] = []
        while len(ran) < limit:
            batch = broker.dequeue() or []
            if not batch:
                return ran
            for ack_id, payload in batch:
                task = SignedPackage.loads(payload)
                func = task["func"]
                func = locate(func) if isinstance(func, str) else func
                func(*task.get("args", ()), **task.get("kwargs", {}))
                broker.acknowledge(ack_id)
                ran.append(task["func"] if isinstance(task["func"], str) else func.__name__)
        raise AssertionError(f"more than {limit} tasks: the queue does not drain")

    return run


class SMTPInbox:
    """Mail received by a real aiosmtpd server on 127.0.0.1."""

    def __init__(self):
        self.messages = []
        self.envelopes = []
        self._lock = threading.Condition()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        with self._lock:
            self.envelopes.append(envelope)
            self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
            self._lock.notify_all()
        return "250 OK"

    def wait_for(self, count: int = 1, timeout: float = 20) -> list:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.messages) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} email(s) within {timeout}s, got {len(self.messages)}"
                    )
                self._lock.wait(remaining)
            return list(self.messages)


@pytest.fixture
def smtp_server():
    """A real SMTP server on 127.0.0.1: yields (host, port, inbox)."""
    inbox = SMTPInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield "127.0.0.1", port, inbox
    finally:
        controller.stop()


@pytest.fixture
def smtp(smtp_server, settings):
    """Route Django's email through the real SMTP server; yields its inbox."""
    host, port, inbox = smtp_server
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = host
    settings.EMAIL_PORT = port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    return inbox


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def browser(monkeypatch):
    """Debian's chromium driven by Playwright (never a downloaded browser), for one test.

    Started per test, not per session: Playwright's sync API keeps an event loop marked running
    in this thread, which would break the asyncio and ORM tests that follow. While it runs, the
    test's own ORM calls are allowed (DJANGO_ALLOW_ASYNC_UNSAFE): the loop is Playwright's, not
    Django's. Those calls get connections of their own (asgiref keeps them per context while the
    loop runs), which the test database's teardown cannot see: they are closed here, or
    PostgreSQL would refuse to drop the test database. Without chromium the test is skipped,
    unless CLARION_REQUIRE_BROWSER is set (CI).
    """
    import os

    if not os.path.exists(CHROMIUM):
        if os.environ.get("CLARION_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            connections.close_all()
            browser.close()


@pytest.fixture
def page(browser):
    """A fresh browser page (its own context: no cookies shared between tests)."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        connections.close_all()
        context.close()


@pytest.fixture(autouse=True)
def _migration_rows_restored(request):
    """A transactional test's flush empties every table, the role groups a migration made among
    them, and leaves Django's content-type cache naming rows that are gone; a later test then
    fails only in the full suite. Each database test starts with both as the migrations left
    them (roles_sync only runs when the groups are missing)."""
    uses_db = (request.node.get_closest_marker("django_db") is not None
               or {"db", "transactional_db"} & set(request.fixturenames))
    if uses_db:
        request.getfixturevalue("_django_db_helper")
        from django.contrib.auth.models import Group
        from django.contrib.contenttypes.models import ContentType

        from notifications.roles import roles_sync

        ContentType.objects.clear_cache()
        if not Group.objects.exists():
            roles_sync()
    yield
