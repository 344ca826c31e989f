"""The admin a support person reads: a run as a timeline (its steps, messages, delivery attempts
and provider events), searches by recipient, trigger, run and provider message id, runs that
cannot be changed, and a recipient erased from the admin."""

import re
from html import unescape

import pytest
from django.contrib.auth.models import Permission, User

from clarion.admin import when
from inbox.models import InboxItem
from notifications.models import (
    DeliveryAttempt,
    Message,
    Recipient,
    Run,
    StepLog,
    Trigger,
)

from .admin_support import hrefs, url

TIMELINE_ROW = re.compile(
    r'<tr class="clarion-[a-z-]+" data-kind="([a-z ]+)"><td>([^<]*)</td><td>[a-z ]+</td>'
    r"<td>([^<]*)</td><td>(.*?)</td><td>")


def timeline_rows(html: str) -> list[tuple[str, str, str, str]]:
    """The run page's timeline as (kind, time, step ref, what), links kept in `what`."""
    return [(kind, unescape(at), unescape(step), what)
            for kind, at, step, what in TIMELINE_ROW.findall(html)]


def test_run_page_shows_its_timeline_messages_and_delivery_attempts(admin_client, triggered):
    trigger, runs = triggered
    run = runs["u1"]
    response = admin_client.get(url(Run, "change", run.pk))
    assert response.status_code == 200
    html = response.content.decode()
    rows = timeline_rows(html)
    assert rows[0][0] == "trigger" and rows[0][3].startswith(
        f'<a href="{url(Trigger, "change", trigger.pk)}">Triggered by API key tests</a>')
    steps = [what for kind, _, _, what in rows if kind == "step"]
    expected = [log.get_event_display() for log in run.step_logs.order_by("created_at", "id")]
    assert expected[0] == "Triggered" and "Completed" in expected
    assert [re.sub(r"<[^>]+>", "", what) for what in steps] == expected
    # To the millisecond, in one zone: text order is time order, but for a message, which
    # follows the step log that queued it (written a moment after it: test_admin_find.py).
    times = [at for kind, at, _, _ in rows if kind != "message"]
    assert times == sorted(times)
    mail = run.messages.get(step_ref="mail")
    inbox_message = run.messages.get(step_ref="inbox")
    attempt = mail.delivery_attempts.get()
    # A message is shown when the StepLog that queued (or sent) it was written, a moment after
    # the row was made in the same transaction: the cause reads first.
    logged = {log.detail.get("message_id"): log.created_at
              for log in run.step_logs.order_by("-created_at", "-id")}
    assert ("message", when(max(mail.created_at, logged[str(mail.pk)])), "mail",
            f'<a href="{url(Message, "change", mail.pk)}">Email message: Sent</a>') in rows
    assert ("message", when(max(inbox_message.created_at, logged[str(inbox_message.pk)])),
            "inbox",
            f'<a href="{url(Message, "change", inbox_message.pk)}">In-app message: Sent</a>'
            ) in rows
    assert ("attempt", when(attempt.started_at), "mail",
            f'<a href="{url(DeliveryAttempt, "change", attempt.pk)}">Provider call to locmem: '
            "Succeeded</a>") in rows
    assert f"<code>{attempt.duration_ms}</code>" in html
    # The run links to its trigger, workflow and recipient.
    links = hrefs(response)
    assert url(Trigger, "change", trigger.pk) in links
    assert url(Recipient, "change", run.recipient_id) in links


def test_run_timeline_shows_provider_events_engagement_and_the_idempotency_key(
        admin_client, api, welcome, run_tasks):
    from inbox.services import inbox_item_mark
    from notifications.delivery.status import message_event_record
    from notifications.providers.callbacks import StatusEvent

    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": [{"id": "u9", "email": "u9@example.com"}]},
                        HTTP_IDEMPOTENCY_KEY="order-77-shipped")
    assert response.status_code == 202, response.content
    run_tasks()
    run = Run.objects.get(pk=response.json()["runs"][0]["id"])
    mail = run.messages.get(step_ref="mail")
    Message.objects.filter(pk=mail.pk).update(provider_message_id="esp-9")
    message_event_record(event=StatusEvent(
        provider_kind="postmark", kind="delivered", provider_message_id="esp-9",
        event_id="ev-1", description="<b>accepted</b> by mx", raw={"RecordType": "Delivery"}))
    inbox_item_mark(item=InboxItem.objects.get(message__run=run), action="read")

    html = admin_client.get(url(Run, "change", run.pk)).content.decode()
    rows = timeline_rows(html)
    kinds = [kind for kind, *_ in rows]
    assert kinds.count("provider event") == 1 and kinds.count("engagement") == 2
    assert [re.sub(r"<[^>]+>", "", what) for kind, _, _, what in rows
            if kind == "provider event"] == ["postmark reported: Delivered"]
    assert [(step, what) for kind, _, step, what in rows if kind == "engagement"] == [
        ("inbox", f'<a href="{url(Message, "change", run.messages.get(step_ref="inbox").pk)}">'
                  "Seen by the recipient</a>"),
        ("inbox", f'<a href="{url(Message, "change", run.messages.get(step_ref="inbox").pk)}">'
                  "Read by the recipient</a>")]
    assert ('<span class="clarion-key">idempotency_key</span>: <code>order-77-shipped</code>'
            in html)
    assert "&lt;b&gt;accepted&lt;/b&gt; by mx" in html and "<b>accepted" not in html


def test_run_timeline_escapes_what_it_shows(admin_client, triggered):
    _, runs = triggered
    run = runs["u1"]
    StepLog.objects.create(run=run, step_ref="mail", event=StepLog.Event.FAILED,
                           detail={"reason": "<script>alert(1)</script>"})
    Message.objects.filter(run=run, step_ref="mail").update(error="<img src=x onerror=alert(1)>")
    html = admin_client.get(url(Run, "change", run.pk)).content.decode()
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def search(client, model, term) -> list:
    response = client.get(url(model), {"q": term})
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


def test_searching_runs_by_recipient_id_trigger_id_and_run_id(admin_client, triggered, api,
                                                              run_tasks):
    trigger, runs = triggered
    api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["u1"]})
    other = Run.objects.exclude(trigger=trigger).get()
    assert search(admin_client, Run, "u2") == [runs["u2"]]
    assert set(search(admin_client, Run, "u1")) == {runs["u1"], other}
    assert set(search(admin_client, Run, str(trigger.pk))) == {runs["u1"], runs["u2"]}
    assert search(admin_client, Run, trigger.pk.hex.upper()) != []
    assert search(admin_client, Run, str(other.trigger_id)) == [other]
    assert search(admin_client, Run, str(other.pk)) == [other]
    assert len(search(admin_client, Run, "welcome")) == 3
    assert search(admin_client, Run, "nobody") == []


def test_search_by_trigger_id_keeps_the_list_filters(admin_client, triggered):
    trigger, runs = triggered
    Run.objects.filter(pk=runs["u2"].pk).update(status=Run.Status.FAILED)
    response = admin_client.get(url(Run), {"q": str(trigger.pk), "status__exact": "failed"})
    assert list(response.context["cl"].result_list) == [runs["u2"]]


def test_searching_messages_by_recipient_workflow_trigger_and_provider_message_id(
        admin_client, triggered):
    trigger, runs = triggered
    mail = Message.objects.get(run=runs["u1"], step_ref="mail")
    Message.objects.filter(pk=mail.pk).update(provider_message_id="esp-123")
    assert set(search(admin_client, Message, "u1")) == set(runs["u1"].messages.all())
    assert len(search(admin_client, Message, str(trigger.pk))) == 4
    assert search(admin_client, Message, "esp-123") == [mail]
    assert search(admin_client, Message, str(mail.pk)) == [mail]
    assert len(search(admin_client, Message, "welcome")) == 4


def test_trigger_page_lists_its_runs_with_links(admin_client, triggered):
    trigger, runs = triggered
    response = admin_client.get(url(Trigger, "change", trigger.pk))
    links = hrefs(response)
    assert url(Run, "change", runs["u1"].pk) in links
    assert url(Run, "change", runs["u2"].pk) in links
    assert f"{url(Run)}?q={trigger.pk}" in links
    assert search(admin_client, Trigger, str(trigger.pk)) == [trigger]


@pytest.fixture(params=[("view_run",), ("view_run", "change_run", "delete_run")],
                ids=["view-only", "with-model-permissions"])
def staff_client(request, client, db):
    """A staff user who may view runs; the admin refuses changes even with the model perms."""
    user = User.objects.create_user("pm", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=request.param))
    client.force_login(user)
    return client


def test_a_run_cannot_be_changed_in_the_admin(staff_client, admin_client, triggered):
    _, runs = triggered
    run = runs["u1"]
    assert staff_client.get(url(Run, "change", run.pk)).status_code == 200
    data = {"status": "cancelled", "cursor": 0}
    assert staff_client.post(url(Run, "change", run.pk), data).status_code == 403
    assert admin_client.post(url(Run, "change", run.pk), data).status_code == 403
    assert staff_client.post(url(Run, "delete", run.pk), {"post": "yes"}).status_code == 403
    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED


def test_deleting_a_recipient_in_the_admin_erases_them(admin_client, triggered):
    trigger, _ = triggered
    recipient = Recipient.objects.get(external_id="u1")
    response = admin_client.post(url(Recipient, "delete", recipient.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Recipient.objects.filter(external_id="u1").exists()
    trigger.refresh_from_db()
    assert trigger.recipients[0] == "[erased]"
    assert trigger.recipients[1]["id"] == "u2"
