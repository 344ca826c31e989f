"""The results of a concurrent batch's calls are committed with the server's own
`synchronous_commit`, never inside the asynchronous transaction that hands an SMTP email over.

Only that transaction may be lost by a PostgreSQL crash (docs/deploy.md: the email is then sent
again). A call that ended is known: succeeded, or failed and to be retried. Were its result lost,
its attempt would stay `started`, and the sweeper would fail the message as of unknown outcome
(`message_mark_outcome_unknown`): a delivered message recorded failed, or one that a retry would
have delivered never sent.

A real aiosmtpd server; a deferred trigger holds one email's hand-over COMMIT while an email
handed over before it ends and another reaches its point of no return, so the batch's loop sees
both at once when that COMMIT returns.
"""

import asyncio
import threading

import pytest
from aiosmtpd.controller import Controller
from django.db import connection

from notifications.delivery import deliver_batch
from notifications.models import DeliveryAttempt, Message
from tests.conftest import free_port

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.skipif("connection.vendor != 'postgresql'",
                                 reason="synchronous_commit and a trigger are PostgreSQL's")]

HELD_COMMIT = 1.0  # seconds the held email's hand-over COMMIT takes


class Server:
    """Takes every email; `waits` delays an address's RCPT TO or its DATA's answer:
    {address: ("RCPT" | "DATA", seconds)}."""

    def __init__(self, waits: dict[str, tuple[str, float]]):
        self.waits, self.messages = waits, []
        self._lock = threading.Lock()

    async def _wait(self, stage: str, address: str) -> None:
        at, seconds = self.waits.get(address, ("", 0))
        if at == stage:
            await asyncio.sleep(seconds)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        await self._wait("RCPT", address)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        await self._wait("DATA", envelope.rcpt_tos[0])
        with self._lock:
            self.messages.append(envelope.rcpt_tos[0])
        return "250 OK"


@pytest.fixture
def smtp_server(provider_config):
    controllers = []

    def start(waits: dict[str, tuple[str, float]]) -> Server:
        handler, port = Server(waits), free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        controllers.append(controller)
        provider_config("mail", "email", "smtp", {"host": "127.0.0.1", "port": port,
                                                  "from_email": "alerts@example.com"})
        return handler

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def held_commit():
    """hold(message): the COMMIT of the transaction inserting `message`'s attempt takes
    HELD_COMMIT seconds (a deferred constraint trigger, run at COMMIT)."""
    table = DeliveryAttempt._meta.db_table
    made = []

    def hold(message: Message) -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION held_attempt_commit() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.message_id = '{message.pk}' THEN PERFORM pg_sleep({HELD_COMMIT}); "
                "END IF; RETURN NULL; END $$")
            cursor.execute("CREATE CONSTRAINT TRIGGER held_attempt_commit AFTER INSERT ON "
                           f'"{table}" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW '
                           "EXECUTE FUNCTION held_attempt_commit()")
        made.append(True)

    yield hold
    if made:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP TRIGGER held_attempt_commit ON "{table}"')
            cursor.execute("DROP FUNCTION held_attempt_commit()")


def email(queue_message, n: int) -> Message:
    return queue_message("email", {"subject": f"Code {n}", "text": "Your code is 1234"},
                         recipient={"id": f"u{n}", "email": f"u{n}@example.com"})


def test_results_of_calls_ended_during_a_hand_over_are_committed_with_the_servers_setting(
        smtp_server, held_commit, queue_message):
    """u1 is handed over at once, its answer comes 0.4 s later; u2's hand-over COMMIT is held
    (0.15 s to 1.15 s); u3 reaches its end at 0.6 s. When u2's COMMIT returns, u1 has ended and
    u3 waits to be handed over: u1's result is written before u3's hand-over, not in it."""
    server = smtp_server({"u1@example.com": ("DATA", 0.4), "u2@example.com": ("RCPT", 0.15),
                          "u3@example.com": ("RCPT", 0.6)})
    emails = [email(queue_message, n) for n in (1, 2, 3)]
    held_commit(emails[1])

    table = DeliveryAttempt._meta.db_table
    writes = []  # (synchronous_commit, ids) of each UPDATE writing attempts' results

    def record(execute, sql, params, many, context):
        if not sql.startswith(f'UPDATE "{table}"'):
            return execute(sql, params, many, context)
        raw = context["cursor"].cursor
        raw.execute("SHOW synchronous_commit")
        setting = raw.fetchone()[0]
        outcome = execute(sql, params, many, context)
        writes.append((setting, {pk for (pk,) in context["cursor"].fetchall()}))
        return outcome

    with connection.execute_wrapper(record):
        assert deliver_batch([str(m.id) for m in emails]) == 3

    assert sorted(server.messages) == [f"u{n}@example.com" for n in (1, 2, 3)]
    first = DeliveryAttempt.objects.get(message=emails[0])
    assert first.outcome == DeliveryAttempt.Outcome.SUCCEEDED
    assert any(first.pk in written for _, written in writes)
    assert [setting for setting, _ in writes] == ["on"] * len(writes)
    for message in emails:
        message.refresh_from_db()
        assert message.status == Message.Status.SENT
