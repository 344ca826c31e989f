"""Template variables: what the builders give a template is what the editor checks against."""

from notifications.models import Recipient, Workflow
from notifications.rendering.variables import (
    RECIPIENT_KEYS,
    TENANT_KEYS,
    VARIABLE_ROOTS,
    WORKFLOW_KEYS,
    preview_variables,
    recipient_variables,
    tenant_variables,
)


def test_the_built_variables_have_exactly_the_keys_the_editor_knows(acme):
    person = Recipient.objects.create(external_id="u1", name="Ada", email="ada@example.com")
    workflow = Workflow.objects.create(key="welcome", name="Welcome",
                                       sample_data={"plan": "pro"})
    variables = preview_variables(workflow=workflow, tenant=acme)
    assert set(variables) == set(VARIABLE_ROOTS)
    assert set(recipient_variables(person)) == set(RECIPIENT_KEYS)
    assert set(variables["recipient"]) == set(RECIPIENT_KEYS)
    assert set(tenant_variables(acme)) == set(TENANT_KEYS)
    assert set(variables["workflow"]) == set(WORKFLOW_KEYS)
    assert variables["data"] == {"plan": "pro"}
