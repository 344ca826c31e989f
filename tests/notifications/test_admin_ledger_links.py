"""Ledgers are reached from the pages that own them (issue 13): a message's page links its run,
the run's page its trigger, and the trigger's page the Idempotency-Key record its request left,
for the roles that may read each."""

import re

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.urls import reverse

from notifications.models import IdempotencyRecord, Message, Trigger
from notifications.roles import SUPPORT

from ..conftest import in_app_step


def page_url(obj) -> str:
    return reverse(f"admin:notifications_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.fixture
def triggered(api, make_workflow, run_tasks):
    """`welcome` triggered for ada with an Idempotency-Key: (trigger, its record, the message)."""
    make_workflow("welcome", steps=[in_app_step(body="Hi")])
    response = api.post("/api/v1/workflows/welcome/trigger", {"recipients": ["ada"]},
                        HTTP_IDEMPOTENCY_KEY="signup-ada")
    assert response.status_code == 202, response.content
    run_tasks()
    trigger = Trigger.objects.get(pk=response.json()["trigger_id"])
    return trigger, IdempotencyRecord.objects.get(key="signup-ada"), Message.objects.get()


def staff(client, username: str, *, group: str | None = None, permissions=()) -> User:
    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    user.user_permissions.add(*Permission.objects.filter(codename__in=permissions))
    client.force_login(user)
    return user


def test_support_goes_from_a_message_to_its_triggers_idempotency_record(client, triggered):
    trigger, record, message = triggered
    staff(client, "sam", group=SUPPORT)
    message_page = client.get(page_url(message)).content.decode()
    assert f'href="{page_url(message.run)}"' in message_page
    run_page = client.get(page_url(message.run)).content.decode()
    assert f'href="{page_url(trigger)}"' in run_page

    trigger_page = client.get(page_url(trigger))
    assert trigger_page.status_code == 200
    assert (f'<a href="{page_url(record)}" id="clarion-idempotency-record">signup-ada</a>'
            in trigger_page.content.decode())
    record_page = client.get(page_url(record))
    assert record_page.status_code == 200
    html = record_page.content.decode()
    assert f'<a href="{page_url(trigger)}">{trigger.pk}</a>' in html  # and back
    # read-only: no save button, and a change is refused
    assert 'name="_save"' not in html
    assert client.post(page_url(record), {"key": "other"}).status_code == 403
    record.refresh_from_db()
    assert record.key == "signup-ada"


def test_without_the_permission_to_read_records_the_key_is_plain_text(client, triggered):
    trigger, record, _message = triggered
    staff(client, "tess", permissions=["view_trigger"])
    html = client.get(page_url(trigger)).content.decode()
    assert "signup-ada" in html and page_url(record) not in html
    assert client.get(page_url(record)).status_code == 403


def test_a_key_whose_record_expired_says_so(client, triggered):
    trigger, record, _message = triggered
    record.delete()
    staff(client, "sam", group=SUPPORT)
    text = re.sub(r"\s+", " ", client.get(page_url(trigger)).content.decode())
    assert "signup-ada <span class=\"help\">(its idempotency record is no longer kept)" in text


def test_a_record_whose_key_was_claimed_again_is_not_the_old_triggers(client, triggered):
    trigger, record, _message = triggered
    other = "00000000-0000-0000-0000-000000000000"
    IdempotencyRecord.objects.filter(pk=record.pk).update(
        response_body={**record.response_body, "trigger_id": other})
    staff(client, "sam", group=SUPPORT)
    html = client.get(page_url(trigger)).content.decode()
    assert page_url(record) not in html and "no longer kept" in html
