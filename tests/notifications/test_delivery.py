"""Email delivery against a real SMTP server that accepts, defers or refuses."""

from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.models import OrmQ

from notifications.delivery import backoff_seconds, deliver
from notifications.models import DeliveryAttempt, Message, Run
from notifications.services import TriggerRequest, trigger_workflow
from notifications.tasks import advance_run

from ..conftest import SMTPInbox, email_step, free_port, queued_tasks


class RefusingInbox(SMTPInbox):
    """Answers DATA with `reply` for the first `times` messages, then accepts."""

    def __init__(self, reply: str, times: int = 10**6):
        super().__init__()
        self.reply, self.times, self.refused = reply, times, 0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.refused < self.times:
            self.refused += 1
            return self.reply
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtp_replying(settings):
    controllers = []

    def start(reply: str, times: int = 10**6) -> RefusingInbox:
        inbox = RefusingInbox(reply, times)
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
        return inbox

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def queued_email(make_workflow):
    workflow = make_workflow("w", steps=[email_step()])
    _, runs = trigger_workflow(TriggerRequest(
        workflow=workflow, recipients=[{"id": "u1", "name": "Ada", "email": "ada@example.com"}]))
    advance_run(str(runs[0].id))
    OrmQ.objects.all().delete()
    return Message.objects.get()


def run_events(message):
    return list(Run.objects.get(pk=message.run_id).step_logs.order_by("id")
                .values_list("event", flat=True))


def test_sent_email_records_attempt_and_provider(queued_email, smtp):
    deliver(str(queued_email.id))
    mail = smtp.wait_for(1)[0]
    message = Message.objects.get()
    assert message.status == Message.Status.SENT
    assert message.provider == "smtp"
    assert message.sent_at is not None
    assert message.provider_message_id == mail["Message-ID"] == f"<{message.id}@localhost>"
    assert mail["X-Clarion-Message-Id"] == str(message.id)
    attempt = message.delivery_attempts.get()
    assert attempt.outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert attempt.duration_ms is not None
    assert attempt.request == {"to": "ada@example.com", "subject": "Hello Ada"}
    assert run_events(message)[-1] == "sent"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's synchronous_commit")
def test_smtp_attempt_alone_commits_without_waiting_for_its_wal_flush(queued_email, smtp):
    """The attempt written at SMTP's point of no return commits in a transaction of its own with
    synchronous_commit off (delivery.calls.commit_without_flush): the end of the data leaves a
    round trip after the COMMIT, not a disk flush. The session keeps its setting."""
    with CaptureQueriesContext(connection) as queries:
        deliver(str(queued_email.id))
    sql = [query["sql"] for query in queries.captured_queries]
    assert sum("synchronous_commit" in statement for statement in sql) == 1
    at = sql.index("SET LOCAL synchronous_commit = off")
    assert sql[at + 1].startswith('INSERT INTO "notifications_deliveryattempt"')
    assert sql[at + 2:at + 3] != [] and "synchronous_commit" not in sql[at + 2]
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
    assert smtp.wait_for(1)[0]["X-Clarion-Message-Id"] == str(queued_email.id)
    assert Message.objects.get().status == Message.Status.SENT


def test_transient_smtp_error_retries_later_with_backoff(queued_email, smtp_replying,
                                                         clarion_settings):
    clarion_settings(DELIVERY_BACKOFF_SECONDS=10)
    inbox = smtp_replying("451 4.3.0 Try again later", times=1)
    before = timezone.now()
    deliver(str(queued_email.id))
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED
    assert message.attempts == 1
    assert "451" in message.error
    assert before + timedelta(seconds=5) <= message.next_attempt_at <= timezone.now() + \
        timedelta(seconds=10)
    assert queued_tasks("notifications.tasks.deliver_message") == [
        ((str(message.id),), message.next_attempt_at)]
    assert run_events(message)[-1] == "retrying"
    # Not due yet: a redelivered task does nothing.
    deliver(str(message.id))
    assert Message.objects.get().attempts == 1
    # Due: the retry goes through.
    deliver(str(message.id), now=message.next_attempt_at)
    inbox.wait_for(1)
    message.refresh_from_db()
    assert message.status == Message.Status.SENT
    assert list(message.delivery_attempts.values_list("outcome", flat=True)) == [
        "transient_error", "succeeded"]


def test_retries_stop_after_the_limit(queued_email, smtp_replying, clarion_settings):
    clarion_settings(DELIVERY_MAX_ATTEMPTS=2)
    smtp_replying("421 4.4.5 Busy")
    deliver(str(queued_email.id))
    message = Message.objects.get()
    deliver(str(message.id), now=message.next_attempt_at)
    message.refresh_from_db()
    assert message.status == Message.Status.FAILED
    assert message.attempts == 2
    assert run_events(message)[-1] == "failed"


def test_permanent_smtp_error_fails_without_retry(queued_email, smtp_replying):
    smtp_replying("550 5.1.1 No such user")
    deliver(str(queued_email.id))
    message = Message.objects.get()
    assert message.status == Message.Status.FAILED
    assert "550" in message.error
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.PERMANENT_ERROR
    assert queued_tasks("notifications.tasks.deliver_message") == []


def test_unreachable_server_is_transient(queued_email, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens
    deliver(str(queued_email.id))
    message = Message.objects.get()
    assert message.status == Message.Status.QUEUED
    assert message.delivery_attempts.get().outcome == DeliveryAttempt.Outcome.TRANSIENT_ERROR
    assert "ConnectionRefusedError" in message.error


def test_backoff_grows_exponentially_and_is_capped(clarion_settings):
    clarion_settings(DELIVERY_BACKOFF_SECONDS=10, DELIVERY_BACKOFF_MAX_SECONDS=60)
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (4, 60), (9, 60)]:
        values = [backoff_seconds(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
