"""The message log API: GET /api/v1/messages (filters, keyset pages that neither skip nor repeat
a message, tenant isolation) and GET /api/v1/messages/{id} with its attempts and events."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.delivery.status import message_event_record
from notifications.models import Message, Run
from notifications.providers.callbacks import StatusEvent

from ..conftest import email_step, in_app_step, invalid


def iso(value):
    return value.isoformat().replace("+00:00", "Z") if value else None


@pytest.fixture
def log(api, make_workflow, run_tasks, acme, globex):
    """`welcome` (in-app then email) for ada in acme, bob in globex and cy with no tenant:
    {recipient id: {step ref: Message}}."""
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    make_workflow("digest", steps=[in_app_step()])
    for recipient, tenant in (("ada", "acme"), ("bob", "globex"), ("cy", None)):
        body = {"recipients": [{"id": recipient, "email": f"{recipient}@example.com"}]}
        if tenant:
            body["tenant"] = tenant
        assert api.post("/api/v1/workflows/welcome/trigger", body).status_code == 202
    assert api.post("/api/v1/workflows/digest/trigger",
                    {"recipients": ["cy"]}).status_code == 202
    run_tasks()
    found = {}
    for message in Message.objects.select_related("recipient", "workflow"):
        found.setdefault(message.recipient.external_id, {})[
            f"{message.workflow.key}/{message.step_ref}"] = message
    return found


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["messages"]]


def newest_first(messages) -> list[str]:
    return [str(m.id) for m in sorted(messages, key=lambda m: (m.created_at, m.id), reverse=True)]


def test_the_log_lists_messages_newest_first_with_where_they_went(api, log):
    response = api.get("/api/v1/messages")
    every = [m for by_step in log.values() for m in by_step.values()]
    assert ids(response) == newest_first(every)
    mail = log["ada"]["welcome/mail"]
    item = next(i for i in response.json()["messages"] if i["id"] == str(mail.id))
    assert item == {
        "id": str(mail.id), "run_id": str(mail.run_id), "trigger_id": str(mail.run.trigger_id),
        "workflow": "welcome", "recipient": "ada", "tenant": "acme", "step": "mail",
        "channel": "email", "status": "sent", "to": "ada@example.com", "provider": "locmem",
        "provider_message_id": mail.provider_message_id, "error": "", "send_number": 1,
        "created_at": iso(mail.created_at), "sent_at": iso(mail.sent_at),
        "delivered_at": None, "seen_at": None, "read_at": None, "opened_at": None,
        "clicked_at": None, "bounced_at": None,
    }
    assert response.json()["page_info"] == {"after": None}


def test_each_filter_narrows_the_log(api, log):
    ada, bob, cy = log["ada"], log["bob"], log["cy"]
    cases = {
        "recipient=ada": ada.values(),
        "workflow=digest": [cy["digest/inbox"]],
        "channel=email": [ada["welcome/mail"], bob["welcome/mail"], cy["welcome/mail"]],
        "tenant=globex": bob.values(),
        "provider=locmem": [ada["welcome/mail"], bob["welcome/mail"], cy["welcome/mail"]],
        "recipient=cy&channel=in_app": [cy["welcome/inbox"], cy["digest/inbox"]],
        "recipient=nobody": [],
        "workflow=nothing": [],
    }
    for query, expected in cases.items():
        assert ids(api.get(f"/api/v1/messages?{query}")) == newest_first(expected), query


def test_status_engagement_and_time_filters(api, log, run_tasks):
    from inbox.services import inbox_item_mark

    bob_mail = log["bob"]["welcome/mail"]
    Message.objects.filter(pk=bob_mail.pk).update(status=Message.Status.FAILED,
                                                  error="postmark: 422 Inactive recipient")
    inbox_item_mark(item=log["ada"]["welcome/inbox"].inbox_item, action="read")
    assert ids(api.get("/api/v1/messages?status=failed")) == [str(bob_mail.id)]
    assert api.get("/api/v1/messages?status=failed").json()["messages"][0]["error"] == (
        "postmark: 422 Inactive recipient")
    assert ids(api.get("/api/v1/messages?engagement=read")) == [str(log["ada"]["welcome/inbox"].id)]
    unread = ids(api.get("/api/v1/messages?engagement=unread&channel=in_app"))
    assert str(log["ada"]["welcome/inbox"].id) not in unread and len(unread) == 3

    now = timezone.now()
    old = log["cy"]["digest/inbox"]
    Message.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=3))
    since = (now - timedelta(days=1)).isoformat()
    assert str(old.id) not in ids(api.get("/api/v1/messages", {"created_after": since}))
    assert ids(api.get("/api/v1/messages", {"created_before": since})) == [str(old.id)]
    # created_after is inclusive, created_before exclusive.
    assert ids(api.get("/api/v1/messages", {
        "created_after": (now - timedelta(days=3)).isoformat(),
        "created_before": (now - timedelta(days=2)).isoformat()})) == [str(old.id)]
    assert ids(api.get("/api/v1/messages", {
        "created_before": (now - timedelta(days=3)).isoformat()})) == []


def test_keyset_pages_neither_skip_nor_repeat_messages_made_at_the_same_instant(api, log):
    # Many messages in the same microsecond: the id breaks the tie.
    moment = timezone.now() - timedelta(hours=1)
    template = log["cy"]["digest/inbox"]
    runs, clones = [], []
    for index in range(23):
        run = Run.objects.create(trigger=template.run.trigger, workflow=template.workflow,
                                 recipient=template.recipient.__class__.objects.create(
                                     external_id=f"bulk-{index}"))
        runs.append(run)
        clones.append(Message(run=run, step_ref="inbox", recipient=run.recipient,
                              workflow=template.workflow, channel="in_app", status="sent"))
    Message.objects.bulk_create(clones)
    Message.objects.filter(pk__in=[m.pk for m in clones]).update(created_at=moment)
    expected = newest_first(Message.objects.all())
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 7, **({"after": after} if after else {})}
        response = api.get("/api/v1/messages", params)
        seen += ids(response)
        pages += 1
        after = response.json()["page_info"]["after"]
        if after is None:
            break
    assert seen == expected and pages == -(-len(expected) // 7)


def test_a_tenant_restricted_key_sees_only_its_tenants_messages(acme_api, log):
    ada, bob = log["ada"], log["bob"]
    assert ids(acme_api.get("/api/v1/messages")) == newest_first(ada.values())
    assert ids(acme_api.get("/api/v1/messages?recipient=bob")) == []
    response = acme_api.get("/api/v1/messages?tenant=globex")
    assert response.status_code == 403
    assert response.json() == {"error": "forbidden",
                               "detail": "This API key is restricted to another tenant."}
    mail = bob["welcome/mail"]
    response = acme_api.get(f"/api/v1/messages/{mail.id}")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": f"No message '{mail.id}'."}
    assert acme_api.get(f"/api/v1/messages/{ada['welcome/mail'].id}").status_code == 200


@pytest.mark.parametrize(("query", "fields"), [
    ("channel=fax", {"channel": ['"fax" is not a valid choice.']}),
    ("status=lost", {"status": ['"lost" is not a valid choice.']}),
    ("engagement=loved", {"engagement": ['"loved" is not a valid choice.']}),
    ("tenant=initech", {"tenant": ["Unknown tenant 'initech'."]}),
    ("limit=0", {"limit": ["Ensure this value is greater than or equal to 1."]}),
    ("limit=101", {"limit": ["Ensure this value is less than or equal to 100."]}),
    ("created_after=yesterday", {"created_after": [
        "Datetime has wrong format. Use one of these formats instead: "
        "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."]}),
    ("created_after=2026-02-01T00:00:00Z&created_before=2026-01-01T00:00:00Z",
     {"created_before": ["Must be later than `created_after`."]}),
    ("after=not-a-cursor", {"after": [
        "Not a cursor this API gave: pass `page_info.after` as it came."]}),
])
def test_a_bad_filter_is_a_400_naming_it(api, db, query, fields):
    response = api.get(f"/api/v1/messages?{query}")
    assert response.status_code == 400
    assert response.json() == invalid(fields)


def test_a_message_shows_its_attempts_and_provider_events(api, log):
    mail = log["ada"]["welcome/mail"]
    Message.objects.filter(pk=mail.pk).update(provider_message_id="pm-1")
    message_event_record(event=StatusEvent(
        provider_kind="postmark", kind="delivered", provider_message_id="pm-1", event_id="e1",
        description="accepted by mx", raw={"RecordType": "Delivery"}))
    response = api.get(f"/api/v1/messages/{mail.id}")
    assert response.status_code == 200
    body = response.json()
    attempt = mail.delivery_attempts.get()
    event = mail.events.get()
    assert body["status"] == "delivered" and body["template_version"] == 1
    assert body["content"]["subject"] == "Hello"
    assert body["attempts"] == [{
        "provider": "locmem", "provider_kind": attempt.provider_kind,
        "started_at": iso(attempt.started_at), "duration_ms": attempt.duration_ms,
        "status_code": None, "outcome": "succeeded", "error": "", "send_number": 1,
        "request": attempt.request, "response": attempt.response}]
    assert (body["send_number"], body["device_sets"]) == (1, {})
    assert body["events"] == [{
        "kind": "delivered", "provider_kind": "postmark", "occurred_at": iso(event.occurred_at),
        "received_at": iso(event.received_at), "description": "accepted by mx",
        "payload": {"RecordType": "Delivery"}}]
    assert api.get("/api/v1/messages/8d4c6f0e-0000-4000-8000-000000000000").status_code == 404


def test_a_resent_message_shows_its_send_and_each_attempts(api, log, run_tasks):
    from notifications.services import message_resend

    mail = log["cy"]["welcome/mail"]
    Message.objects.filter(pk=mail.pk).update(status=Message.Status.FAILED, error="421 later")
    assert message_resend(message=mail)
    run_tasks()
    body = api.get(f"/api/v1/messages/{mail.id}").json()
    assert (body["status"], body["error"], body["send_number"]) == ("sent", "", 2)
    assert [(a["send_number"], a["outcome"]) for a in body["attempts"]] == [
        (1, "succeeded"), (2, "succeeded")]
    listed = api.get("/api/v1/messages?recipient=cy&channel=email").json()["messages"]
    assert [m["send_number"] for m in listed] == [2]


def test_a_page_costs_the_same_queries_however_many_messages(api, log,
                                                             django_assert_num_queries):
    # One query for the page: the API key was read a moment ago (the process keeps it for
    # CLARION["API_KEY_CACHE_SECONDS"]).
    with django_assert_num_queries(1):
        assert len(ids(api.get("/api/v1/messages?limit=100"))) == 7


@pytest.mark.parametrize(("filters", "index"), [({}, "message_log_idx"),
                                                ({"tenant": "acme"}, "message_log_tenant_idx")])
def test_a_deep_page_is_read_from_the_log_index_on_postgresql(log, acme, filters, index):
    from django.db import connection

    from notifications import selectors

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    if "tenant" in filters:
        filters = {"tenant": acme}
    newest = Message.objects.order_by("-created_at", "-id").first()
    after = selectors.MessageLogCursor(newest.created_at, newest.id)
    query = selectors.message_log_query(Message.objects.all(), filters=filters, after=after)
    sql, params = query[:21].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert index in plan, plan
