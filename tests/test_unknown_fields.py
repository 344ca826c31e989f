"""No field is dropped without a word: every write endpoint of every API (server, inbox,
preferences) refuses a body field it does not know, with a 400 naming it and the fields that
exist, at any depth, by one mechanism (clarion.api.Serializer)."""

import importlib
import pkgutil
import re

import pytest
from django.test import Client
from rest_framework import serializers

import clarion.api
from inbox.models import InboxItem
from notifications import services
from notifications.models import Recipient, Tenant, Topic, Workflow
from preferences.models import PreferenceSet

from .conftest import client_for, email_step, invalid
from .inbox.conftest import recipient_client

WRITE_METHODS = {"post", "put", "patch"}
STRAY = "zzz_not_a_field"


@pytest.fixture
def schema(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def world(db, make_workflow):
    """One of everything a write endpoint's path can name: key "k1", recipient "r1"."""
    Tenant.objects.create(key="k1", name="K1")
    Topic.objects.create(key="k1")
    make_workflow("k1", steps=[email_step()])
    recipient = Recipient.objects.create(external_id="r1")
    item = InboxItem.objects.create(recipient=recipient, workflow_key="k1", content={})
    _, secret = services.api_key_create(name="walk")
    return {"server": client_for(secret), "inbox": recipient_client(recipient),
            "params": {"key": "k1", "recipient_id": "r1", "channel": "push",
                       "item_id": str(item.pk), "action": "read", "endpoint_id": "k1",
                       "token": "not-a-signed-link"}}


def write_operations(schema) -> list[tuple[str, str]]:
    return sorted((method, path) for path, item in schema["paths"].items()
                  for method in item if method in WRITE_METHODS)


def test_every_write_endpoint_refuses_an_unknown_field_naming_it(schema, world):
    operations = write_operations(schema)
    assert len(operations) >= 15  # the walk covers the whole API, not an empty schema

    for method, template in operations:
        path = re.sub(r"\{(\w+)\}", lambda m: world["params"][m[1]], template)
        client = world["inbox" if template.startswith("/api/v1/inbox/") else "server"]

        response = getattr(client, method)(path, {STRAY: 1}, format="json")

        assert response.status_code == 400, (method, template, response.content)
        fields = response.json()["fields"]
        assert fields[STRAY][0].startswith("Unknown field; "), (method, template, fields)


def test_unsubscribing_with_an_unknown_field_is_refused(world):
    response = world["server"].delete("/api/v1/topics/k1/subscriptions",
                                      {"recipients": ["r1"], STRAY: 1}, format="json")

    assert response.status_code == 400
    assert response.json() == invalid({STRAY: ["Unknown field; expected one of: recipients."]})


def our_serializers() -> list[type]:
    for package in ("clarion", "notifications", "inbox", "preferences"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if ".migrations" not in info.name and ".management" not in info.name:
                importlib.import_module(info.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return sorted({cls for cls in subclasses(serializers.BaseSerializer)
                   if cls.__module__.split(".")[0] in ("clarion", "notifications", "inbox",
                                                       "preferences")},
                  key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def test_every_serializer_refuses_unknown_fields_or_reads_a_query_string():
    found = our_serializers()
    lenient = [cls for cls in found
               if not issubclass(cls, clarion.api.Serializer | clarion.api.QuerySerializer)]

    assert len(found) > 30
    assert lenient == []


def test_a_misspelt_or_unknown_step_key_is_refused_and_nothing_is_stored(api, db):
    body = {"name": "W", "steps": [
        {"ref": "wait", "type": "delay", "confg": {"seconds": 3}, "unles": {"x": 1}}]}

    response = api.put("/api/v1/workflows/w", body)

    fields = response.json()["fields"]
    assert response.status_code == 400
    assert list(fields) == ["steps[0].confg", "steps[0].unles"]
    assert fields["steps[0].confg"] == fields["steps[0].unles"]
    assert fields["steps[0].confg"][0].startswith(
        "Unknown field; expected one of: ref, type, config, conditions, ")
    assert not Workflow.objects.exists()


def test_a_misspelt_recipient_field_is_refused_and_nobody_is_created(api, db):
    response = api.put("/api/v1/recipients/u1", {"emial": "ada@example.com"})

    assert response.status_code == 400
    assert response.json() == invalid({"emial": [
        "Unknown field; expected one of: name, email, phone, locale, timezone, data, "
        "channel_data."]})
    assert not Recipient.objects.exists()


def test_a_misspelt_tenant_field_is_refused(api, db):
    response = api.put("/api/v1/tenants/acme", {"name": "Acme", "colr": "#123456"})

    assert response.status_code == 400
    assert response.json() == invalid({"colr": [
        "Unknown field; expected one of: name, logo_url, primary_color, sender_name, "
        "sender_email, footer, settings, retention_days."]})
    assert not Tenant.objects.exists()


def test_unknown_fields_are_named_next_to_the_bodys_other_problems(api, db):
    response = api.put("/api/v1/tenants/acme", {"colr": "#123456"})

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"name", "colr"}


def test_an_unknown_field_of_an_actor_profile_is_refused(api, make_workflow):
    make_workflow("welcome", steps=[email_step()])

    response = api.post("/api/v1/workflows/welcome/trigger",
                        {"recipients": ["u1"], "actor": {"id": "a1", "nmae": "Ann"}})

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["actor.nmae"]


def test_get_bodies_can_still_be_put_back(api, db):
    api.put("/api/v1/tenants/acme", {"name": "Acme"})
    api.put("/api/v1/topics/news", {"name": "News"})
    tenant = api.get("/api/v1/tenants/acme").json()
    topic = api.get("/api/v1/topics/news").json()

    assert api.put("/api/v1/tenants/acme", tenant).status_code == 200
    assert api.put("/api/v1/topics/news", topic).status_code == 200


def test_a_knock_preference_export_keeps_being_accepted(api, db):
    Recipient.objects.create(external_id="u1")
    exported = {"__typename": "PreferenceSet", "id": "default",
                "channel_types": {"in_app_feed": False, "http": True},
                "categories": {"marketing": {"channel_types": {"email": False}}},
                "workflows": {"welcome": True}}

    response = api.put("/api/v1/recipients/u1/preferences", exported)

    assert response.status_code == 200, response.content
    assert PreferenceSet.objects.get().channel_types == {"in_app": False, "webhook": True}
