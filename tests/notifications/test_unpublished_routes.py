"""A workflow whose first draft is not published (an Editor's builder save or JSON import) runs
by no route: not the REST trigger, not the Knock or Novu APIs, not a schedule; and the Step
admin does not write the live version's rows around the draft and its review."""

import json
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse
from rest_framework.test import APIClient

from notifications import schedules, services
from notifications.models import Run, Step, Template, Workflow
from notifications.roles import EDITOR, PUBLISHER, roles_sync
from notifications.workflow_versions import draft_of

from ..conftest import email_step, in_app_step


@pytest.fixture(autouse=True)
def _roles(db):
    roles_sync()


def person(role: str, username: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


INVOICE = {"key": "invoice", "name": "Invoice",
           "steps": [{"ref": "inbox", "type": "in_app", "templates": {"en": {"body": "Due"}}}]}


@pytest.fixture
def unpublished(client):
    """The workflow `invoice` as an Editor's JSON import made it: its first draft."""
    client.force_login(person(EDITOR, "eve"))
    response = client.post(reverse("admin:notifications_workflow_import"),
                           {"json": json.dumps(INVOICE)})
    assert response.status_code == 302
    workflow = Workflow.objects.get(key="invoice")
    assert workflow.published_version is None and draft_of(workflow) is not None
    return workflow


def test_the_knock_api_refuses_an_unpublished_workflow(unpublished, api):
    response = api.post("/knock/v1/workflows/invoice/trigger", {"recipients": ["ada"]})
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "workflow_not_published"
    assert not Run.objects.exists()


def test_the_novu_api_refuses_an_unpublished_workflow(unpublished, api_key):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"ApiKey {api_key[1]}")
    response = api.post("/novu/v1/events/trigger", {"name": "invoice", "to": "ada",
                                                    "payload": {}}, format="json")
    assert response.status_code == 422, response.content
    assert response.json()["message"] == (
        "The workflow 'invoice' has a draft but was never published: a Publisher publishes it "
        "in the admin.")
    assert not Run.objects.exists()


@pytest.fixture
def welcome(make_workflow):
    return make_workflow("welcome", steps=[in_app_step(body="Hi"), email_step(subject="Hello")])


def test_an_editor_cannot_change_add_or_delete_a_live_step_in_the_step_admin(client, welcome):
    client.force_login(person(EDITOR, "eve"))
    mail = Step.objects.get(workflow=welcome, ref="mail")
    change = reverse("admin:notifications_step_change", args=[mail.pk])
    form = {"workflow": welcome.pk, "position": mail.position, "ref": "mail", "type": "email",
            "config": "{}", "conditions": json.dumps({"all": [
                {"path": "data.never", "op": "exists"}]}),
            "branches": "[]", "unless": "null", "send_window": "null"}
    client.post(change, form)
    mail.refresh_from_db()
    assert mail.conditions in (None, {})
    client.post(reverse("admin:notifications_step_delete", args=[mail.pk]), {"post": "yes"})
    assert Step.objects.filter(pk=mail.pk).exists()
    client.post(reverse("admin:notifications_step_add"), {**form, "ref": "text", "type": "sms",
                                                           "position": 9})
    assert not Step.objects.filter(ref="text").exists()
    assert client.get(change).status_code == 200  # still readable


def test_a_publishers_step_admin_write_is_recorded_as_a_published_version(client, welcome):
    client.force_login(person(PUBLISHER, "pat"))
    mail = Step.objects.get(workflow=welcome, ref="mail")
    client.post(reverse("admin:notifications_step_delete", args=[mail.pk]), {"post": "yes"})
    assert not Step.objects.filter(pk=mail.pk).exists()
    welcome.refresh_from_db()
    live = welcome.published_version
    assert (live.number, live.source, live.note) == (
        2, "admin", "Step “mail” deleted in the Step admin.")
    assert [s["ref"] for s in live.document["steps"]] == ["inbox"]


def test_with_review_required_nobody_writes_a_live_step_in_the_step_admin(
        client, welcome, clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    client.force_login(person(PUBLISHER, "pat"))
    mail = Step.objects.get(workflow=welcome, ref="mail")
    assert client.post(reverse("admin:notifications_step_delete", args=[mail.pk]),
                       {"post": "yes"}).status_code == 403
    assert Step.objects.filter(pk=mail.pk).exists()


def test_a_schedule_of_an_unpublished_workflow_fires_nothing_until_it_is_published(
        unpublished, client):
    services.recipient_upsert(external_id="ada", timezone="UTC")
    t0 = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)
    schedules.schedule_put(key="dunning", workflow=unpublished, recipients=["ada"], now=t0,
                           timezone="UTC", repeat={"frequency": "daily", "at": "13:00",
                                                   "days": [], "day_of_month": None})
    due = datetime(2026, 3, 6, 13, 0, 1, tzinfo=UTC)
    assert [t for zone_id in list(schedules.schedules_due(due))
            for t in schedules.schedule_fire(zone_id=zone_id, now=due)] == []
    assert not Run.objects.exists()


def test_a_publisher_still_deletes_a_workflow_with_its_steps(client, welcome):
    client.force_login(person(PUBLISHER, "pat"))
    delete = reverse("admin:notifications_workflow_delete", args=[welcome.pk])
    assert "Are you sure" in client.get(delete).content.decode()
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not Workflow.objects.filter(pk=welcome.pk).exists()
    assert not Step.objects.exists()


def test_a_publishers_template_delete_is_recorded_as_a_published_version(client, welcome):
    client.force_login(person(PUBLISHER, "pat"))
    template = Template.objects.get(step__workflow=welcome, step__ref="mail")
    assert client.post(reverse("admin:notifications_template_delete", args=[template.pk]),
                       {"post": "yes"}).status_code == 302
    welcome.refresh_from_db()
    live = welcome.published_version
    assert (live.number, live.source) == (2, "template")
    assert live.document["steps"][1]["templates"] == {}


def test_with_review_required_a_live_template_is_not_deleted_on_its_own(
        client, welcome, clarion_settings):
    clarion_settings(REQUIRE_REVIEW=True)
    client.force_login(person(PUBLISHER, "pat"))
    template = Template.objects.get(step__workflow=welcome, step__ref="mail")
    assert client.post(reverse("admin:notifications_template_delete", args=[template.pk]),
                       {"post": "yes"}).status_code == 403
    assert Template.objects.filter(pk=template.pk).exists()
    delete = reverse("admin:notifications_workflow_delete", args=[welcome.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302  # with its workflow: yes
    assert not Template.objects.exists()
