"""The audit log: every change to workflows, templates, providers, tenants, API keys and
preferences, through the admin (the user) or the server API (the API key), with before and
after, credentials masked, and browsable and filterable in the admin."""

import json
import re

import pytest
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from clarion.audit import MASK
from notifications.models import ApiKey, ProviderConfig, Step, Template, Tenant, Workflow
from notifications.providers.breaker import breaker_record_failure
from preferences.models import PreferenceSet

from ..conftest import client_for

WORKFLOW = {"name": "Welcome", "steps": [
    {"ref": "mail", "type": "email",
     "templates": {"en": {"subject": "Hi {{ recipient.name }}", "html": "<p>Hello</p>"}}}]}
AUTH_TOKEN = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def entries(model, **filters) -> list[LogEntry]:
    return list(LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model),
                                        **filters).order_by("id"))


def api_key_actor(api_key: ApiKey) -> dict:
    return {"api_key": {"id": api_key.pk, "name": api_key.name, "prefix": api_key.prefix}}


def test_api_changes_name_the_api_key_with_before_and_after(api, api_key):
    key, _ = api_key
    assert api.put("/api/v1/workflows/welcome", WORKFLOW).status_code == 201
    # Created, then its first version published: two entries, both by the key.
    [created, published] = entries(Workflow)
    assert published.changes_dict == {"published_version": [None, "welcome v1"]}
    assert published.additional_data == api_key_actor(key)
    assert created.action == LogEntry.Action.CREATE and created.actor is None
    assert created.additional_data == api_key_actor(key)
    assert created.changes_dict["key"] == [None, "welcome"]
    assert created.changes_dict["name"] == [None, "Welcome"]
    [version] = entries(Template.versions.field.model)
    assert version.changes_dict["fields"][1] == {"subject": "Hi {{ recipient.name }}",
                                                 "html": "<p>Hello</p>"}
    assert version.additional_data == api_key_actor(key)

    changed = {**WORKFLOW, "name": "Welcome aboard", "critical": True}
    assert api.put("/api/v1/workflows/welcome", changed).status_code == 200
    [_, _, updated, republished] = entries(Workflow)
    assert republished.changes_dict == {"published_version": ["welcome v1", "welcome v2"]}
    assert updated.action == LogEntry.Action.UPDATE
    assert updated.changes_dict == {"name": ["Welcome", "Welcome aboard"],
                                    "critical": [False, True]}
    assert updated.additional_data == api_key_actor(key)

    # Removing a step is a deletion in the log, by the same key.
    assert api.put("/api/v1/workflows/welcome", {**changed, "steps": []}).status_code == 200
    [deleted] = entries(Step, action=LogEntry.Action.DELETE)
    assert deleted.object_repr == "welcome/mail" and deleted.additional_data == api_key_actor(key)


def test_provider_credentials_are_recorded_as_changed_never_shown(api, api_key):
    key, _ = api_key
    body = {"channel": "sms", "kind": "twilio",
            "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef",
                            "auth_token": AUTH_TOKEN, "from": "+15550001111"}}
    assert api.put("/api/v1/providers/sms-main", body).status_code == 201, "created"
    body["credentials"]["auth_token"] = "tok-new-0000000000000000000000000000"
    body["priority"] = 2
    assert api.put("/api/v1/providers/sms-main", body).status_code == 200
    created, updated = entries(ProviderConfig)
    assert created.changes_dict["credentials_encrypted"] == ["", MASK]
    assert updated.changes_dict == {"credentials_encrypted": [MASK, MASK], "priority": [1, 2]}
    assert updated.additional_data == api_key_actor(key)
    ciphertext = ProviderConfig.objects.get(key="sms-main").credentials_encrypted
    for entry in (created, updated):
        stored = json.dumps([entry.changes, entry.changes_text, entry.serialized_data])
        assert AUTH_TOKEN not in stored and "tok-new" not in stored
        assert ciphertext not in stored and ciphertext[:20] not in stored


def test_tenant_and_preference_changes_through_the_api_are_audited(api, api_key, acme):
    key, _ = api_key
    response = api.put("/api/v1/tenants/acme", {"name": "Acme Inc.", "primary_color": "#4f46e5"})
    assert response.status_code == 200
    [tenant_change] = entries(Tenant, action=LogEntry.Action.UPDATE)
    assert tenant_change.changes_dict == {"name": ["Acme", "Acme Inc."],
                                          "primary_color": ["", "#4f46e5"]}
    assert tenant_change.additional_data == api_key_actor(key)
    assert api.put("/api/v1/recipients/ada", {"email": "ada@example.com"}).status_code == 201
    response = api.put("/api/v1/recipients/ada/preferences", {"channel_types": {"email": False}})
    assert response.status_code == 200
    changes = [entry.changes_dict for entry in entries(PreferenceSet)]
    assert {"channel_types": [{}, {"email": False}]} in changes
    assert all(entry.additional_data == api_key_actor(key) for entry in entries(PreferenceSet))


def test_a_tenant_restricted_key_is_named_too(acme):
    from notifications.services import api_key_create

    key, secret = api_key_create(name="acme backend", tenant=acme)
    response = client_for(secret).put("/api/v1/tenants/acme", {"name": "Acme Corp"})
    assert response.status_code == 200
    [change] = entries(Tenant, action=LogEntry.Action.UPDATE)
    assert change.additional_data == api_key_actor(key)


def test_admin_changes_name_the_user_and_mask_the_api_key_secret(admin_client, admin_user, api,
                                                                api_key):
    # An API call first: the next request (same thread) must not inherit its key.
    assert api.put("/api/v1/tenants/globex", {"name": "Globex"}).status_code == 201
    response = admin_client.post(reverse("admin:notifications_apikey_add"),
                                 {"name": "billing", "tenant": ""})
    assert response.status_code == 302
    billing = ApiKey.objects.get(name="billing")
    [created] = entries(ApiKey, object_pk=str(billing.pk))
    assert created.actor == admin_user and created.additional_data is None
    assert created.changes_dict["secret_hash"] == ["", MASK]
    assert billing.secret_hash not in json.dumps(created.changes)

    response = admin_client.post(reverse("admin:notifications_apikey_changelist"),
                                 {"action": "revoke", "_selected_action": [billing.pk]})
    assert response.status_code == 302
    revoked = entries(ApiKey, object_pk=str(billing.pk), action=LogEntry.Action.UPDATE)
    assert [entry.actor for entry in revoked] == [admin_user]
    assert revoked[0].changes_dict["revoked_at"][0] is None


def test_what_the_workers_change_is_not_audited(db):
    provider = ProviderConfig.objects.create(key="mail-main", channel="email", kind="smtp")
    before = LogEntry.objects.count()
    breaker_record_failure(provider, now=timezone.now(), error="connection refused")
    provider.refresh_from_db()
    provider.save()  # nothing a person changed: the breaker's columns are not tracked
    assert LogEntry.objects.count() == before


def test_the_admin_lists_and_filters_the_audit_log(admin_client, admin_user, api, api_key):
    key, _ = api_key
    assert api.put("/api/v1/workflows/welcome", WORKFLOW).status_code == 201
    assert api.put("/api/v1/tenants/globex", {"name": "Globex"}).status_code == 201
    admin_client.post(reverse("admin:notifications_apikey_add"), {"name": "billing",
                                                                   "tenant": ""})
    changelist = reverse("admin:auditlog_logentry_changelist")

    def listed(**params) -> set[str]:
        response = admin_client.get(changelist, params)
        assert response.status_code == 200
        return {entry.object_repr for entry in response.context["cl"].result_list}

    everything = listed()
    assert {"Welcome", "welcome/mail", "Globex"} <= everything
    by_key = listed(api_key=key.pk)
    assert "Globex" in by_key and not any(repr_.startswith("billing") for repr_ in by_key)
    assert listed(user=admin_user.pk) == {str(ApiKey.objects.get(name="billing"))}
    tenant_type = ContentType.objects.get_for_model(Tenant)
    assert listed(resource_type=tenant_type.pk) == {"Globex"}
    html = admin_client.get(changelist, {"api_key": key.pk}).content.decode()
    assert f"API key tests ({key.prefix}…)" in html

    entry = entries(Tenant)[0]
    page = admin_client.get(reverse("admin:auditlog_logentry_change", args=[entry.pk]))
    assert page.status_code == 200 and "Globex" in page.content.decode()


@pytest.mark.parametrize("path", ["/api/v1/workflows/welcome"])
def test_an_api_read_writes_no_audit_entry(api, path):
    api.put(path, WORKFLOW)
    before = LogEntry.objects.count()
    assert api.get(path).status_code == 200
    assert LogEntry.objects.count() == before


def test_publishing_an_older_template_version_is_audited_by_name(admin_client, admin_user, api):
    from notifications.services import template_publish

    assert api.put("/api/v1/workflows/welcome", WORKFLOW).status_code == 201
    changed = {**WORKFLOW, "steps": [{**WORKFLOW["steps"][0], "templates": {
        "en": {"subject": "Hello again", "html": "<p>Hello</p>"}}}]}
    assert api.put("/api/v1/workflows/welcome", changed).status_code == 200
    template = Template.objects.get()
    first = template.versions.get(number=1)
    template_publish(version=first)
    last = entries(Template)[-1]
    assert last.changes_dict == {"published_version": ["welcome/mail [en] v2",
                                                       "welcome/mail [en] v1"]}


def test_a_person_changing_their_own_preferences_is_named_as_the_actor(client, make_workflow):
    from urllib.parse import urlsplit

    from inbox.auth import inbox_token_create
    from notifications.models import Recipient
    from preferences.tokens import unsubscribe_url

    make_workflow("digest-mail", steps=[], category="digest")
    ada = Recipient.objects.create(external_id="ada", email="ada@example.com")
    token, _ = inbox_token_create(recipient=ada)
    inbox = client_for(token)
    response = inbox.patch("/api/v1/inbox/preferences", {"channel_types": {"sms": False}})
    assert response.status_code == 200, response.content
    url = urlsplit(unsubscribe_url(recipient_id=ada.pk, tenant_id=None,
                                   workflow_key="digest-mail", category="digest")).path
    response = client.post(url, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    who = [entry.additional_data for entry in entries(PreferenceSet)]
    assert who[0] == {"recipient": {"id": "ada", "via": "inbox API"}}
    assert who[-1] == {"recipient": {"id": "ada", "via": "unsubscribe link"}}
    assert entries(PreferenceSet)[-1].changes_dict["categories"][1] == {
        "digest": {"channel_types": {"email": False}}}


def test_erasing_a_recipient_removes_the_audit_entries_that_name_them(api, make_workflow):
    from inbox.auth import inbox_token_create
    from notifications.models import Recipient
    from notifications.services import recipient_erase

    assert api.put("/api/v1/workflows/welcome", WORKFLOW).status_code == 201
    for person in ("ada", "bob"):
        assert api.put(f"/api/v1/recipients/{person}", {"email": f"{person}@example.com"}
                       ).status_code == 201
        response = api.put(f"/api/v1/recipients/{person}/preferences",
                           {"channel_types": {"sms": False}})
        assert response.status_code == 200
    ada = Recipient.objects.get(external_id="ada")
    token, _ = inbox_token_create(recipient=ada)
    response = client_for(token).patch("/api/v1/inbox/preferences",
                                       {"channel_types": {"push": False}})
    assert response.status_code == 200

    recipient_erase(recipient=ada)

    left = [json.dumps([entry.object_repr, entry.changes, entry.additional_data])
            for entry in LogEntry.objects.all()]
    assert not [entry for entry in left if re.search(r"\bada\b", entry)]
    assert any(entry.startswith('["bob"') for entry in left)  # bob's entries stay
    assert entries(Workflow)  # and what nobody's erasure concerns
