"""Support in the admin: one search box lands on the notification a term names (recipient id or
email, trigger, run or message id, Idempotency-Key, provider message id), and a recipient's page
lists their latest runs and messages with the reason for each suppression or failure."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from clarion.admin import when
from notifications import support
from notifications.models import IdempotencyRecord, Message, Recipient, Run, StepLog, Trigger

from ..conftest import email_step, in_app_step


def url(model, view="changelist", *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def rows(html: str) -> list[list[str]]:
    """Every table row's cells as text (tags dropped, entities unescaped)."""
    return [[unescape(re.sub(r"<[^>]+>", "", cell)).strip()
             for cell in re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]


def find(client, term):
    return client.get(reverse("admin-find"), {"q": term})


@pytest.fixture
def sent(api, make_workflow, run_tasks):
    """`welcome` (in-app, email) triggered with an Idempotency-Key for ada, who opted out of
    email, and bob: (trigger, {recipient id: run})."""
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    assert api.put("/api/v1/recipients/ada", {"email": "Ada@Example.com"}).status_code == 201
    response = api.put("/api/v1/recipients/ada/preferences",
                       {"channel_types": {"email": False}})
    assert response.status_code == 200, response.content
    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": ["ada", {"id": "bob", "email": "bob@example.com"}]},
                        HTTP_IDEMPOTENCY_KEY="signup-ada-bob")
    assert response.status_code == 202, response.content
    run_tasks()
    trigger = Trigger.objects.get(pk=response.json()["trigger_id"])
    return trigger, {run.recipient.external_id: run
                     for run in trigger.runs.select_related("recipient")}


def test_each_kind_of_term_lands_on_its_page(admin_client, sent):
    trigger, runs = sent
    mail = Message.objects.get(run=runs["bob"], step_ref="mail")
    Message.objects.filter(pk=mail.pk).update(provider_message_id="<0100@mx.example>")
    ada = Recipient.objects.get(external_id="ada")
    cases = {
        "ada": url(Recipient, "change", ada.pk),
        "  ada@EXAMPLE.com ": url(Recipient, "change", ada.pk),
        str(trigger.pk): url(Trigger, "change", trigger.pk),
        "signup-ada-bob": url(Trigger, "change", trigger.pk),
        str(runs["bob"].pk).upper(): url(Run, "change", runs["bob"].pk),
        str(mail.pk): url(Message, "change", mail.pk),
        "<0100@mx.example>": url(Message, "change", mail.pk),
    }
    for term, page in cases.items():
        response = find(admin_client, term)
        assert (response.status_code, response.get("Location")) == (302, page), term


def test_the_idempotency_key_is_kept_on_the_trigger_after_its_replay_record_expires(
        admin_client, sent):
    trigger, _ = sent
    assert trigger.idempotency_key == "signup-ada-bob"
    IdempotencyRecord.objects.all().delete()
    assert find(admin_client, "signup-ada-bob")["Location"] == url(Trigger, "change", trigger.pk)


def test_several_matches_are_listed_and_none_says_so(admin_client, sent):
    Recipient.objects.create(external_id="ada@example.com")  # an id that is also ada's email
    response = find(admin_client, "ada@example.com")
    assert response.status_code == 200
    rows = re.findall(r"<tr><td>(\w+)</td><td>([\w ]+)</td>\s*<td><a href=\"([^\"]+)\">",
                      response.content.decode())
    by_id = Recipient.objects.get(external_id="ada@example.com")
    ada = Recipient.objects.get(external_id="ada")
    assert rows == [("recipient", "email", url(Recipient, "change", ada.pk)),
                    ("recipient", "recipient id", url(Recipient, "change", by_id.pk))]
    response = find(admin_client, "nobody-at-all")
    assert response.status_code == 200
    assert "Nothing matches “nobody-at-all”" in response.content.decode()


def test_the_search_box_is_in_every_admin_page_header(admin_client, db):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert f'<form method="get" action="{reverse("admin-find")}" id="clarion-find"' in html


def test_find_needs_a_staff_login_and_shows_only_what_the_user_may_view(client, sent):
    trigger, _ = sent
    response = find(client, str(trigger.pk))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    user = User.objects.create_user("support", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_recipient"))
    client.force_login(user)
    assert "Nothing matches" in find(client, str(trigger.pk)).content.decode()
    ada = Recipient.objects.get(external_id="ada")
    assert find(client, "ada")["Location"] == url(Recipient, "change", ada.pk)


def test_recipient_page_lists_latest_runs_and_messages_with_reasons(admin_client, sent):
    _, runs = sent
    ada = Recipient.objects.get(external_id="ada")
    html = admin_client.get(url(Recipient, "change", ada.pk)).content.decode()
    suppressed = Message.objects.get(run=runs["ada"], step_ref="mail")
    assert suppressed.status == Message.Status.SUPPRESSED
    rule = suppressed.error.removeprefix("Opted out: ")
    table = rows(html)
    assert ["mail", "welcome", "Email", "Suppressed", f"Opted out: {rule}", "—", "—",
            when(suppressed.created_at), "timeline"] in table
    assert [str(runs["ada"].pk), "welcome", "—", "Completed", f"mail: Opted out ({rule})",
            when(runs["ada"].created_at)] in table
    assert f'href="{url(Run, "change", runs["ada"].pk)}"' in html
    assert f'href="{url(Message, "change", suppressed.pk)}"' in html
    # bob's runs are not on ada's page.
    assert str(runs["bob"].pk) not in html


def test_a_failed_message_shows_its_error_as_the_reason(admin_client, sent):
    _, runs = sent
    Message.objects.filter(run=runs["bob"], step_ref="mail").update(
        status=Message.Status.FAILED, error="postmark: 422 Inactive recipient")
    bob = Recipient.objects.get(external_id="bob")
    table = rows(admin_client.get(url(Recipient, "change", bob.pk)).content.decode())
    assert [row[3:5] for row in table if row and row[0] == "mail"] == [
        ["Failed", "postmark: 422 Inactive recipient"]]


def test_the_timeline_reads_a_run_in_a_fixed_number_of_queries(sent, django_assert_num_queries):
    _, runs = sent
    with django_assert_num_queries(5):
        run = support.run_for_timeline(runs["bob"].pk)
        entries = support.run_timeline(run)
    assert [entry.kind for entry in entries][:2] == ["trigger", "step"]


def test_finding_by_email_uses_the_email_index_on_postgresql(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    query = Recipient.objects.filter(email__iexact="Ada@Example.com").query
    sql, params = query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "recipient_email_idx" in plan, plan


def test_a_message_follows_the_step_log_that_queued_it_on_the_timeline(sent):
    _, runs = sent
    run = runs["bob"]
    mail = Message.objects.get(run=run, step_ref="mail")
    queued = StepLog.objects.get(run=run, event=StepLog.Event.QUEUED,
                                 detail__message_id=str(mail.pk))
    # The engine writes the message first, the log a moment later in the same transaction.
    Message.objects.filter(pk=mail.pk).update(created_at=queued.created_at - timedelta(
        microseconds=50))
    entries = support.run_timeline(support.run_for_timeline(run.pk))
    order = [(entry.kind, entry.obj.pk) for entry in entries if entry.obj is not None]
    assert order.index(("message", mail.pk)) == order.index(("step", queued.pk)) + 1
