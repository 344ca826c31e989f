"""Fixtures of the admin tests (test_admin.py, test_admin_runs.py): the `welcome` workflow and
a trigger of it run to the end. A module that defines its own `welcome` uses that one."""

import pytest

from notifications.models import Trigger

from ..conftest import delay_step, email_step, in_app_step


@pytest.fixture
def welcome(make_workflow):
    """`welcome`: in-app, then a one-second delay, then email, as the API would create it."""
    return make_workflow("welcome", steps=[
        in_app_step(body="Hi {{ recipient.name }}"),
        delay_step(seconds=0),
        email_step(subject="Hello {{ recipient.name }}", html="<p>{{ data.body }}</p>"),
    ])


@pytest.fixture
def triggered(api, welcome, run_tasks):
    """Trigger `welcome` for u1 and u2 through the API and run every task: (trigger, runs)."""
    response = api.post("/api/v1/workflows/welcome/trigger", {
        "recipients": [{"id": "u1", "name": "Ada", "email": "ada@example.com"},
                       {"id": "u2", "name": "Bob", "email": "bob@example.com"}],
        "data": {"body": "Welcome aboard"},
    })
    assert response.status_code == 202, response.content
    run_tasks()
    trigger = Trigger.objects.get(pk=response.json()["trigger_id"])
    return trigger, {run.recipient.external_id: run
                     for run in trigger.runs.select_related("recipient")}
