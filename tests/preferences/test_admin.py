"""Preferences in the admin: on the recipient's page, tenant defaults, categories with workflows."""

import json

import pytest

from notifications.models import Recipient
from notifications.services import recipient_upsert
from preferences.models import Category, PreferenceSet, WorkflowDefault
from preferences.services import preference_set_update

from ..conftest import email_step


@pytest.fixture
def ada(db):
    return recipient_upsert(external_id="u1", name="Ada")[0]


def set_post_data(**fields) -> dict:
    data = {"recipient": "", "tenant": "", "channel_types": "{}", "categories": "{}",
            "workflows": "{}", "quiet_hours": "null"}
    data.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
    return data


def test_a_recipients_page_shows_their_preference_sets(admin_client, ada, acme, make_workflow):
    make_workflow("newsletter", category="marketing", steps=[email_step()])
    make_workflow("reset", category="marketing", critical=True, steps=[email_step()])
    preference_set_update(recipient=ada, tenant=acme, merge=True,
                          data={"categories": {"marketing": False}})
    response = admin_client.get(f"/admin/notifications/recipient/{ada.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "preference_sets-TOTAL_FORMS" in html
    assert "&quot;marketing&quot;: false" in html
    # What applies now, and why: support's answer to "why did they not get it?"
    assert "<td>newsletter</td><td>email</td><td>off</td>" \
           "<td><code>recipient_tenant:categories.marketing</code></td>" in html
    assert "<td>reset</td><td>email</td><td>on</td><td><code>critical</code></td>" in html


def test_a_recipients_preferences_are_editable_on_their_page(admin_client, ada):
    data = {"external_id": "u1", "name": "Ada", "email": "", "phone": "", "locale": "",
            "timezone": "", "data": "{}",
            "channel_data-TOTAL_FORMS": 0, "channel_data-INITIAL_FORMS": 0,
            "subscriptions-TOTAL_FORMS": 0, "subscriptions-INITIAL_FORMS": 0,
            "preference_sets-TOTAL_FORMS": 1, "preference_sets-INITIAL_FORMS": 0,
            "preference_sets-0-tenant": "", "preference_sets-0-channel_types": '{"sms": false}',
            "preference_sets-0-categories": "{}", "preference_sets-0-workflows": "{}",
            "preference_sets-0-quiet_hours": '{"start": "22:00", "end": "07:00"}'}
    response = admin_client.post(f"/admin/notifications/recipient/{ada.pk}/change/", data)
    assert response.status_code == 302, response.context and response.context["errors"]
    row = PreferenceSet.objects.get(recipient=ada)
    assert (row.channel_types, row.quiet_hours) == ({"sms": False},
                                                    {"start": "22:00", "end": "07:00"})
    assert Recipient.objects.get(pk=ada.pk).name == "Ada"


def test_the_admin_form_names_the_bad_entry(admin_client, ada):
    response = admin_client.post("/admin/preferences/preferenceset/add/", set_post_data(
        recipient=str(ada.pk), categories={"marketing": {"channel_types": {"fax": False}}},
        quiet_hours={"start": "9pm", "end": "07:00"}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["categories"] == [
        "marketing: channel_types: fax: Unknown channel; expected one of email, sms, push, chat, "
        "whatsapp, in_app, webhook."]
    assert errors["quiet_hours"] == ["start: Expected a 24-hour time like 22:00."]
    assert not PreferenceSet.objects.exists()


def test_a_set_needs_a_recipient_or_a_tenant(admin_client):
    response = admin_client.post("/admin/preferences/preferenceset/add/", set_post_data())
    assert response.status_code == 200
    assert "A preference set belongs to a recipient, a tenant or both." in \
        response.content.decode()


def test_tenant_defaults_are_edited_on_the_tenant(admin_client, acme):
    response = admin_client.get(f"/admin/notifications/tenant/{acme.pk}/change/")
    html = response.content.decode()
    assert "Default preferences" in html
    assert 'name="preference_sets-TOTAL_FORMS"' in html


def test_categories_are_listed_with_their_workflows(admin_client, make_workflow):
    Category.objects.create(key="marketing", name="News and offers")
    make_workflow("newsletter", category="marketing", steps=[email_step()])
    make_workflow("reset", category="account", critical=True, steps=[email_step()])
    html = admin_client.get("/admin/preferences/category/").content.decode()
    assert ">newsletter</a>" in html
    assert "Categories used by workflows without a name here" in html
    assert "<td>account</td>" in html and ">reset</a> <small>(critical)</small>" in html


def test_workflow_defaults_are_checked(admin_client, make_workflow):
    workflow = make_workflow("newsletter", steps=[email_step()])
    response = admin_client.post("/admin/preferences/workflowdefault/add/", {
        "workflow": workflow.pk, "channel_types": '{"sms": "off"}'})
    assert response.context["adminform"].form.errors["channel_types"] == [
        "sms: Expected true or false."]
    response = admin_client.post("/admin/preferences/workflowdefault/add/", {
        "workflow": workflow.pk, "channel_types": '{"sms": false}'})
    assert response.status_code == 302
    assert WorkflowDefault.objects.get().channel_types == {"sms": False}
