"""A trigger's runs advanced as one batch (engine.advance_batch): a few queries a run, the same
rows as one run at a time, and nothing lost or written twice when the batch fails. (A topic
fan-out walks its chunks' new runs itself: test_fanout_writes.py.)"""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.models import RollupDelta
from inbox.models import InboxItem
from notifications import engine
from notifications.models import Message, Recipient, Run, StepLog
from notifications.tasks import advance_runs
from preferences.services import preference_set_update

from ..conftest import email_step, in_app_step, queued_tasks

TRIGGER = "/api/v1/workflows/welcome/trigger"


def _triggered(api, count: int) -> list[str]:
    """A trigger to `count` new recipients (runs created, their advance tasks not run)."""
    trigger_id = api.post(TRIGGER, {"recipients": [f"s{i:06d}" for i in range(count)],
                                    "data": {"body": "News"}}).json()["trigger_id"]
    return [str(pk) for pk in Run.objects.filter(trigger_id=trigger_id)
            .order_by("pk").values_list("pk", flat=True)]


def _timeline(run_id: str) -> list[tuple[str, str]]:
    return [(log.step_ref, log.event) for log in
            StepLog.objects.filter(run_id=run_id).order_by("created_at", "pk")]


def test_a_batch_of_25_runs_costs_a_few_queries_a_run(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()])
    run_ids = _triggered(api, 25)

    with CaptureQueriesContext(connection) as captured:
        advance_runs(*run_ids)

    # One run at a time it was 15 (SQLite) to 16 (PostgreSQL) a run: the lock, the steps,
    # templates and versions, the messages, the preferences, the timeline, the facts, savepoints.
    assert len(captured.captured_queries) <= 5 * len(run_ids)
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == 25
    assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == 25
    assert all(_timeline(pk) == [("", "triggered"), ("inbox", "sent"), ("", "completed")]
               for pk in run_ids)
    assert sum(RollupDelta.objects.filter(metric="sent").values_list("count", flat=True)) == 25


def test_a_batch_writes_what_one_run_at_a_time_writes(api, make_workflow, run_tasks):
    make_workflow("welcome", steps=[in_app_step(), email_step(html="<p>{{ data.body }}</p>")])
    run_ids = _triggered(api, 4)
    people = {pk: Run.objects.get(pk=pk).recipient for pk in run_ids}
    Recipient.objects.filter(pk=people[run_ids[0]].pk).update(email="a@example.com")
    Recipient.objects.filter(pk=people[run_ids[1]].pk).update(email="b@example.com")
    preference_set_update(recipient=people[run_ids[1]], merge=True,
                          data={"channel_types": {"in_app": False}})

    advance_runs(*run_ids)

    def outcome(pk):
        return sorted((m.step_ref, m.status) for m in Message.objects.filter(run_id=pk))

    assert outcome(run_ids[0]) == [("inbox", "sent"), ("mail", "queued")]
    assert outcome(run_ids[1]) == [("inbox", "suppressed"), ("mail", "queued")]
    assert outcome(run_ids[2]) == [("inbox", "sent"), ("mail", "undeliverable")]
    assert _timeline(run_ids[1]) == [("", "triggered"), ("inbox", "opted_out"),
                                     ("mail", "queued"), ("", "completed")]
    opted_out = StepLog.objects.get(run_id=run_ids[1], event="opted_out")
    assert opted_out.detail["rule"] == "recipient:channel_types.in_app"
    # The queued emails' deliveries were enqueued with them, as one task for the batch.
    emails = Message.objects.filter(run_id__in=run_ids, step_ref="mail", status="queued")
    assert [set(args) for args, _ in queued_tasks("notifications.tasks.deliver_messages")] == [
        {str(pk) for pk in emails.values_list("pk", flat=True)}]
    ran = run_tasks()
    assert ran.count("notifications.tasks.deliver_messages") == 1
    assert "notifications.tasks.deliver_message" not in ran


@pytest.mark.parametrize("failing", ["write", "advance"])
def test_a_batch_that_fails_is_undone_and_its_runs_go_one_at_a_time(
        api, make_workflow, monkeypatch, failing):
    make_workflow("welcome", steps=[in_app_step()])
    run_ids = _triggered(api, 6)
    real_advance = engine.batch.advance
    seen = []

    def dies_on_the_fourth(run, **kwargs):
        seen.append(run.pk)
        if len(seen) == 4:
            raise RuntimeError("worker died")
        real_advance(run, **kwargs)

    def dies_at_the_end(self):
        raise RuntimeError("worker died")

    if failing == "write":
        monkeypatch.setattr(engine.batch.Batch, "write", dies_at_the_end)
    else:
        monkeypatch.setattr(engine.batch, "advance", dies_on_the_fourth)

    advance_runs(*run_ids)

    # Nothing of the failed batch stayed; each run then went on its own, once.
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == 6
    assert Message.objects.filter(run_id__in=run_ids).count() == 6
    assert InboxItem.objects.filter(message__run_id__in=run_ids).count() == 6
    assert all(_timeline(pk) == [("", "triggered"), ("inbox", "sent"), ("", "completed")]
               for pk in run_ids)


def test_a_batch_whose_message_exists_unread_is_undone_by_the_copy_and_keeps_one_message(
        api, make_workflow, monkeypatch, caplog):
    """A batch copies its Messages in without ON CONFLICT (engine/writes.py): it read each
    run's messages under the run's lock, so none of those it decides on can exist. One that
    does all the same (here: the batch's read misses it) makes the COPY fail on the unique
    (run, step_ref, channel): the batch is undone, its runs go one at a time, and the stored
    Message stands, never a second one, nor a second delivery."""
    make_workflow("welcome", steps=[in_app_step()])
    run_ids = _triggered(api, 3)
    first = Run.objects.select_related("recipient", "workflow").get(pk=run_ids[0])
    stored = Message.objects.create(run=first, step_ref="inbox", recipient=first.recipient,
                                    workflow=first.workflow, channel="in_app", status="sent")
    monkeypatch.setattr(engine.context, "run_messages_many", lambda runs: [])

    advance_runs(*run_ids)

    assert "a batch of 3 runs failed; advancing them one at a time" in caplog.text
    assert Run.objects.filter(pk__in=run_ids, status="completed").count() == 3
    assert list(Message.objects.filter(run_id=run_ids[0])) == [stored]
    assert not InboxItem.objects.filter(message__run_id=run_ids[0]).exists()
    for pk in run_ids[1:]:
        assert Message.objects.filter(run_id=pk).count() == 1
        assert InboxItem.objects.filter(message__run_id=pk).count() == 1


def test_a_batch_of_triggers_with_actors_costs_the_same_statements_for_5_and_25(
        api, make_workflow, clarion_settings):
    """A stream of one-recipient triggers, as the pipeline sends them: what the batch's runs
    need (their triggers' actors too) is read once for the batch, not once a run."""
    clarion_settings(ADVANCE_BATCH_SIZE=100)  # both batches look for more runs to top up with
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    statements = {}
    for count in (5, 25):
        run_ids = []
        for i in range(count):
            actor = f"actor-{count}-{i}" if i % 2 else {"id": f"actor-{count}-{i}", "name": "A"}
            response = api.post(TRIGGER, {"recipients": [{"id": f"p{count}-{i}",
                                                          "email": "p@example.com"}],
                                          "actor": actor, "data": {"body": "News"}}).json()
            run_ids += [run["id"] for run in response["runs"]]
        with CaptureQueriesContext(connection) as captured:
            advance_runs(*run_ids)
        statements[count] = [q["sql"] for q in captured.captured_queries]
        assert Run.objects.filter(pk__in=run_ids, status="completed").count() == count
        assert Message.objects.filter(run_id__in=run_ids, status="queued").count() == count

    reads = {count: [sql for sql in batch if sql.startswith("SELECT")]
             for count, batch in statements.items()}
    assert len(reads[25]) == len(reads[5])
    if connection.vendor == "postgresql":
        assert len(statements[25]) == len(statements[5])
    else:  # SQLite takes at most 999 parameters a statement: 25 messages' INSERT is two
        assert len(statements[25]) - len(statements[5]) <= 2


@pytest.mark.parametrize("body, signed", [
    ("News", 0),  # no template nor step names a link: none is signed
    ("News: {{ preferences_url }}", 2),  # one names it: both are, for each run
])
def test_a_batch_signs_the_links_only_when_a_step_can_read_them(
        api, make_workflow, monkeypatch, body, signed):
    from preferences import tokens

    calls = []  # the signatures (a batch makes its links with tokens.Links)
    for name in ("center_token", "unsubscribe_token"):
        real = getattr(tokens, name)
        monkeypatch.setattr(tokens, name,
                            lambda real=real, **kwargs: calls.append(kwargs) or real(**kwargs))
    make_workflow("welcome", steps=[in_app_step(body=body)])
    run_ids = _triggered(api, 3)

    advance_runs(*run_ids)

    assert len(calls) == signed * 3
    contents = [item.content["body"] for item in InboxItem.objects.order_by("pk")]
    assert all(c.startswith("News") for c in contents) and len(contents) == 3
    if signed:
        assert all("/p/" in c for c in contents)


def test_a_batch_of_several_tenants_gives_each_run_its_own_links_and_preferences(
        make_workflow, acme, globex):
    """What a batch shares (the signer and the pages' URLs, each tenant's preference rows, the
    rendered text of trigger-only templates) gives each run its own person's and tenant's
    links and decisions: runs of two tenants and three people in one batch, one person opted
    out of in-app messages for acme only."""
    from notifications.services import TriggerRequest, trigger_workflow
    from preferences import tokens

    workflow = make_workflow("welcome", category="news", steps=[in_app_step(
        body="{{ data.body }} {{ preferences_url }} {{ unsubscribe_url }}")])
    people = ["p1", "p2", "p3"]
    runs = {}
    for tenant in (acme, globex):
        _, made = trigger_workflow(TriggerRequest(workflow=workflow, recipients=people,
                                                  tenant=tenant, data={"body": "News"}))
        runs.update({(tenant.key, run.recipient.external_id): run for run in made})
    opted_out = Recipient.objects.get(external_id="p2")
    preference_set_update(recipient=opted_out, tenant=acme, merge=True,
                          data={"channel_types": {"in_app": False}})

    advance_runs(*[str(run.pk) for run in runs.values()])

    for (tenant_key, person), run in runs.items():
        message = Message.objects.get(run=run)
        if (tenant_key, person) == ("acme", "p2"):
            assert message.status == "suppressed"
            continue
        assert message.status == "sent"
        body, center, unsubscribe = message.content["body"].split(" ")
        assert body == "News"
        link = tokens.read(center.rstrip("/").rsplit("/", 1)[-1], salt=tokens.CENTER_SALT)
        assert (link.recipient_id, link.tenant_id) == (run.recipient_id, run.tenant_id)
        link = tokens.read(unsubscribe.rstrip("/").rsplit("/", 1)[-1],
                           salt=tokens.UNSUBSCRIBE_SALT)
        assert (link.recipient_id, link.tenant_id, link.workflow_key, link.category) == (
            run.recipient_id, run.tenant_id, "welcome", "news")
