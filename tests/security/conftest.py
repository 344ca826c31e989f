"""Two tenants with objects of every kind, made through the API by an operator's key."""

import pytest

from inbox.models import InboxItem
from notifications.models import Message, Run
from notifications.services import api_key_create

from ..conftest import client_for
from .tenant_routes import PREFS, PROVIDER, SCHEDULE, WORKFLOW, TenantWorld, fill


def _ok(response, *statuses):
    assert response.status_code in (statuses or (200, 201, 202)), (
        response.status_code, response.content[:500])
    return response.json() if response.content else None


def build_tenant(operator, run_tasks, key: str) -> TenantWorld:
    """Tenant `key` and one object of each kind, through the server API and Knock's."""
    person, shared = f"{key}-person", "sam"
    _ok(operator.put(f"/api/v1/tenants/{key}", {"name": key.title()}))
    for recipient in (person, shared):
        _ok(operator.put(f"/api/v1/recipients/{recipient}", {"name": recipient.title()}))
    _ok(operator.put(f"/api/v1/tenants/{key}/preferences", PREFS))
    _ok(operator.put(f"/api/v1/recipients/{person}/preferences?tenant={key}", PREFS))
    partial = TenantWorld(t=key, person=person, trigger="", run="", message="", item=0,
                          ck=f"{key}-ck", provider=f"{key}-sms", endpoint=f"{key}-hook",
                          schedule=f"{key}-daily", topic=f"{key}-team",
                          knock_object=f"{key}-project")
    _ok(operator.put(f"/api/v1/providers/{partial.provider}",
                     {**fill(PROVIDER, partial), "options": {"base_url": "http://127.0.0.1:9"}}))
    _ok(operator.put(f"/api/v1/event-endpoints/{partial.endpoint}",
                     {"url": f"http://127.0.0.1:9/{key}", "events": ["message.sent"],
                      "tenant": key}))
    _ok(operator.put(f"/api/v1/schedules/{partial.schedule}", fill(SCHEDULE, partial)))
    _ok(operator.put(f"/api/v1/topics/{partial.topic}", {"name": "Team", "tenant": key}))
    _ok(operator.post(f"/api/v1/topics/{partial.topic}/subscriptions", {"recipients": [person]}))
    _ok(operator.put(f"/knock/v1/objects/projects/{partial.knock_object}", {"name": "Project"}))
    _ok(operator.post(f"/knock/v1/objects/projects/{partial.knock_object}/subscriptions",
                      {"recipients": [person]}))
    _ok(operator.post(f"/api/v1/tenants/{key}/inbox-secret", {}), 201)
    trigger = _ok(operator.post("/api/v1/workflows/shared/trigger", {
        "recipients": [person, shared], "tenant": key, "cancellation_key": partial.ck}), 202)
    run_tasks()
    run = Run.objects.get(trigger_id=trigger["trigger_id"], recipient__external_id=person)
    assert run.status == Run.Status.WAITING, run.status
    message = Message.objects.get(run=run)
    item = InboxItem.objects.get(recipient__external_id=shared, tenant__key=key)
    return TenantWorld(**{**partial.__dict__, "trigger": trigger["trigger_id"], "run": str(run.pk),
                          "message": str(message.pk), "item": item.pk})


@pytest.fixture
def operator(db):
    """An API client with an unrestricted key."""
    return client_for(api_key_create(name="operator")[1])


@pytest.fixture
def tenants(operator, run_tasks, clarion_settings):
    """(A, B): TenantWorld of tenants "acme" and "globex", on one shared workflow."""
    clarion_settings(ALLOW_PRIVATE_URLS=True)  # the event endpoints post to 127.0.0.1
    _ok(operator.put("/api/v1/workflows/shared", WORKFLOW), 201)
    return build_tenant(operator, run_tasks, "acme"), build_tenant(operator, run_tasks, "globex")
