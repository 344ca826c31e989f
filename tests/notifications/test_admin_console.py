"""The admin home: navigation by task and today's dashboard; the roles (Editor, Publisher,
Support, Administrator) and what each may do; resending a failed message."""

import re
from datetime import timedelta
from html import unescape

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from notifications import dashboard
from notifications.agents.timeline import entry_words
from notifications.models import Message, ProviderConfig, StepLog, Template, Trigger
from notifications.roles import ADMINISTRATOR, EDITOR, PUBLISHER, ROLES, SUPPORT, roles_sync
from notifications.workflow_versions import draft_of, draft_submit

from ..conftest import email_step, queued_tasks

HOME = reverse("admin:index")


def hrefs(response) -> list[str]:
    return [unescape(h) for h in re.findall(r'href="([^"]*)"', response.content.decode())]


def member(client, role: str, username: str | None = None):
    """`client` logged in as a staff member (not a superuser) of `role`."""
    user = User.objects.create_user(username or role.lower(), f"{role.lower()}@example.com",
                                    "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    return user


@pytest.fixture
def sent(api, make_workflow, run_tasks, smtp):
    """`order` (one email) triggered for u1, u2 and u3 and delivered over real SMTP."""
    make_workflow("order", steps=[email_step(subject="Order {{ data.id }}", html="<p>ok</p>")])
    response = api.post("/api/v1/workflows/order/trigger", {
        "recipients": [{"id": f"u{i}", "email": f"u{i}@example.com"} for i in (1, 2, 3)],
        "data": {"id": "A-1"}})
    assert response.status_code == 202, response.content
    run_tasks()
    assert smtp.wait_for(3)
    return Message.objects.order_by("recipient__external_id")


def test_home_groups_pages_by_task_and_leaves_ledgers_out(admin_client, db):
    response = admin_client.get(HOME)
    html = response.content.decode()
    titles = re.findall(r'<caption>\s*<a [^>]*class="section"[^>]*>([^<]+)</a>', html)
    assert titles == ["Author", "Audience", "Delivery", "Activity", "Settings"]
    links = hrefs(response)
    for listed in ("workflow", "template", "layout", "recipient", "topic", "tenant",
                   "providerconfig", "run", "message", "apikey"):
        assert reverse(f"admin:notifications_{listed}_changelist") in links, listed
    assert reverse("admin:preferences_category_changelist") in links
    assert reverse("admin:events_eventendpoint_changelist") in links
    assert reverse("admin:auth_group_changelist") in links
    assert reverse("admin-find") in links
    analytics = reverse("admin:analytics_hourlyrollup_changelist")
    assert re.search(rf'<a href="{re.escape(analytics)}"[^>]*>Analytics</a>', html)
    content = html.split('id="clarion-all-models"')[0]
    for ledger in ("idempotencyrecord", "steplog", "templateversion", "deliveryattempt"):
        assert reverse(f"admin:notifications_{ledger}_changelist") not in content, ledger
    # Every model stays one click further, on its app's page.
    assert reverse("admin:app_list", args=["notifications"]) in links


def test_dashboard_counts_today_only(admin_client, sent):
    first, second, third = sent
    Message.objects.filter(pk=second.pk).update(status=Message.Status.FAILED,
                                                error="550 mailbox unavailable")
    Message.objects.filter(pk=third.pk).update(status=Message.Status.SUPPRESSED)
    old = make_old_failure(first)
    counts = dashboard.today_counts(dashboard.today_start())
    assert counts == {"triggered": 1, "sent": 1, "failed": 1, "suppressed": 1}
    assert old.created_at < dashboard.today_start()

    html = admin_client.get(HOME).content.decode()
    figures = dict(re.findall(r'id="clarion-(\w+)"><span class="figure">(\d+)</span>', html))
    assert figures == {"triggered": "1", "sent": "1", "failed": "1", "suppressed": "1"}
    failures = html.split('id="clarion-failures"')[1].split("</table>")[0]
    assert "550 mailbox unavailable" in failures and "u2" in failures
    assert reverse("admin:notifications_message_change", args=[second.pk]) in failures


def make_old_failure(message: Message) -> Message:
    """A failed message of `message`'s run created two days ago: outside today."""
    old = Message.objects.create(run=message.run, step_ref="old", recipient=message.recipient,
                                 workflow=message.workflow, channel="email",
                                 status=Message.Status.FAILED, error="old failure")
    Message.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    old.refresh_from_db()
    return old


def test_dashboard_shows_providers_in_trouble_and_drafts_waiting(admin_client, sent,
                                                                 admin_user):
    ProviderConfig.objects.create(key="flaky-sms", channel="sms", kind="twilio",
                                  consecutive_failures=5, last_error="503 from Twilio",
                                  circuit_open_until=timezone.now() + timedelta(minutes=5))
    template = Template.objects.get(step__workflow__key="order")
    admin_client.post(reverse("admin:notifications_template_change", args=[template.pk]),
                      {"subject": "Draft {{ data.id }}", "html": "<p>new</p>",
                       "_save_draft": "1"})
    html = admin_client.get(HOME).content.decode()
    providers = html.split('id="clarion-providers"')[1].split("</table>")[0]
    assert "flaky-sms" in providers and "<strong>open</strong>" in providers
    assert "503 from Twilio" in providers
    assert 'id="clarion-drafts"' not in html  # the template's draft is in its workflow's
    draft_submit(version=draft_of(template.step.workflow), user=admin_user)
    html = admin_client.get(HOME).content.decode()
    drafts = html.split('id="clarion-workflow-drafts"')[1].split("</table>")[0]
    assert "v2" in drafts and admin_user.username in drafts


def test_dashboard_queries_are_few(admin_client, sent, django_assert_max_num_queries):
    with django_assert_max_num_queries(16):  # session, user, permissions, the dashboard's 6
        assert admin_client.get(HOME).status_code == 200


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner")
def test_todays_counts_use_indexes_not_table_scans(sent):
    since = dashboard.today_start()
    queries = [
        Message.objects.order_by().filter(created_at__gte=since),
        Trigger.objects.order_by().filter(created_at__gte=since),
        Message.objects.filter(created_at__gte=since, status__in=dashboard.FAILED)
        .order_by("-created_at", "-id")[:10],
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a scan now means no usable index
        for queryset in queries:
            plan = queryset.explain()
            assert "Seq Scan" not in plan, plan


def test_the_roles_exist_with_their_permissions(db):
    roles_sync()  # what the migration ran; idempotent
    for name, permissions in ROLES.items():
        group = Group.objects.get(name=name)
        held = {f"{p.content_type.app_label}.{p.codename}"
                for p in group.permissions.select_related("content_type")}
        assert held == set(permissions), name
    editor = Group.objects.get(name=EDITOR).permissions.values_list("codename", flat=True)
    assert "publish_template" not in editor and "change_template" in editor
    assert "publish_template" in Group.objects.get(name=PUBLISHER).permissions.values_list(
        "codename", flat=True)
    support = set(Group.objects.get(name=SUPPORT).permissions.values_list("codename", flat=True))
    assert "view_hourlyrollup" in support  # the analytics page
    assert "resend_message" in support and not any(
        c.startswith(("add_", "change_", "delete_")) for c in support)
    assert Group.objects.get(name=ADMINISTRATOR).permissions.filter(
        codename="change_group").exists()


def test_an_editor_saves_drafts_and_cannot_publish(client, sent):
    member(client, EDITOR)
    template = Template.objects.get(step__workflow__key="order")
    url = reverse("admin:notifications_template_change", args=[template.pk])
    page = client.get(url).content.decode()
    assert 'name="_save_draft"' in page
    assert 'name="_save"' not in page and "_publish_version" not in page

    # "Save" posted anyway writes a draft; publishing a version is refused.
    response = client.post(url, {"subject": "New {{ data.id }}", "html": "<p>new</p>",
                                 "_save": "Save"}, follow=True)
    assert "You may save drafts but not publish them" in response.content.decode()
    template.refresh_from_db()
    draft = template.versions.get(number=2)
    assert template.published_version.number == 1
    assert client.post(url, {"_publish_version": str(draft.pk)}).status_code == 403
    changelist = reverse("admin:notifications_templateversion_changelist")
    response = client.post(changelist, {"action": "publish", "_selected_action": [draft.pk]})
    template.refresh_from_db()
    assert template.published_version.number == 1, response.status_code


def test_a_publisher_publishes_the_draft(client, sent):
    member(client, PUBLISHER)
    template = Template.objects.get(step__workflow__key="order")
    url = reverse("admin:notifications_template_change", args=[template.pk])
    client.post(url, {"subject": "New {{ data.id }}", "html": "<p>new</p>", "_save_draft": "1"})
    draft = template.versions.get(number=2)
    assert client.post(url, {"_publish_version": str(draft.pk)}).status_code == 302
    template.refresh_from_db()
    assert template.published_version == draft


def test_support_reads_activity_and_cannot_edit_a_workflow(client, sent):
    member(client, SUPPORT)
    message = sent[0]
    assert client.get(reverse("admin:notifications_run_change",
                              args=[message.run_id])).status_code == 200
    workflow_url = reverse("admin:notifications_workflow_change", args=[message.workflow_id])
    page = client.get(workflow_url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert client.post(workflow_url, {"key": "order", "name": "Hacked"}).status_code == 403
    message.workflow.refresh_from_db()
    assert message.workflow.name == "Order"
    find = client.get(reverse("admin-find"), {"q": "u1"})
    assert find.status_code == 302


def test_support_resends_a_failed_message_once(client, sent, run_tasks, smtp):
    member(client, SUPPORT)
    failed, delivered = sent[0], sent[1]
    Message.objects.filter(pk=failed.pk).update(status=Message.Status.FAILED,
                                                error="421 try later")
    changelist = reverse("admin:notifications_message_changelist")
    response = client.post(changelist, {"action": "resend",
                                        "_selected_action": [failed.pk, delivered.pk]},
                           follow=True)
    text = response.content.decode()
    assert "Queued 1 message to be sent again." in text
    assert "Left 1 message alone" in text
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == (Message.Status.QUEUED, 0, "")
    assert [args for args, _ in queued_tasks("notifications.tasks.deliver_message")] == [
        (str(failed.pk),)]
    run_tasks()
    assert len(smtp.wait_for(4)) == 4
    failed.refresh_from_db()
    assert failed.status == Message.Status.SENT
    # Once sent, resending again does nothing.
    client.post(changelist, {"action": "resend", "_selected_action": [failed.pk]})
    assert queued_tasks("notifications.tasks.deliver_message") == []


def test_an_editor_has_no_resend_action(client, sent):
    member(client, EDITOR)
    assert client.get(reverse("admin:notifications_message_changelist")).status_code == 403


def test_support_resends_from_the_failed_messages_page(client, sent, run_tasks, smtp):
    member(client, SUPPORT)
    failed = sent[0]
    Message.objects.filter(pk=failed.pk).update(status=Message.Status.FAILED, error="421")
    page = client.get(reverse("admin:notifications_message_change", args=[failed.pk]))
    resend = reverse("admin:notifications_message_resend", args=[failed.pk])
    assert f'formaction="{resend}"' in page.content.decode()
    assert 'id="clarion-resend"' not in client.get(reverse(
        "admin:notifications_message_change", args=[sent[1].pk])).content.decode()
    response = client.post(resend, follow=True)
    assert "Queued the message to be sent again." in response.content.decode()
    run_tasks()
    assert len(smtp.wait_for(4)) == 4
    failed.refresh_from_db()
    assert failed.status == Message.Status.SENT
    again = client.post(resend, follow=True).content.decode()
    assert "Only a failed or undeliverable message is resent: this one is sent." in again

    # The page says what its numbers count: the tries of the current send, beside the
    # provider calls of every send, each call marked with its send.
    text = page_text(client.get(reverse("admin:notifications_message_change",
                                        args=[failed.pk])))
    assert "Send: 2 (resent 1 time)" in text
    assert ("Tries of the current send: This send: 1 delivery pass, 1 provider call. All 2 "
            "sends: 2 provider calls (the delivery attempts below).") in text
    assert "Attempts:" not in text
    assert re.findall(r"<tr><td>(\d)</td><td><a [^>]*>smtp</a>", client.get(reverse(
        "admin:notifications_message_change", args=[failed.pk])).content.decode()) == ["1", "2"]
    (resent,) = StepLog.objects.filter(run_id=failed.run_id, detail__resent=True)
    assert (resent.event, resent.detail["send_number"], resent.detail["by"]) == (
        "queued", 2, "support")
    assert entry_words(resent, {resent.step_ref: "email"}).endswith(" resent (send 2) by support")
    first_page = page_text(client.get(reverse("admin:notifications_message_change",
                                              args=[sent[1].pk])))
    assert "Send: 1 (never resent)" in first_page
    assert ("Tries of the current send: 1 delivery pass, 1 provider call (the delivery "
            "attempts below).") in first_page


def page_text(response) -> str:
    """The page's text with tags and repeated spaces removed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", html))).replace(" :", ":")


def test_an_editor_cannot_resend(client, sent):
    member(client, EDITOR)
    Message.objects.filter(pk=sent[0].pk).update(status=Message.Status.FAILED)
    resend = reverse("admin:notifications_message_resend", args=[sent[0].pk])
    assert client.post(resend).status_code == 403
    assert Message.objects.get(pk=sent[0].pk).status == Message.Status.FAILED
