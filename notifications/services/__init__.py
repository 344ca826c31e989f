"""Writes: every change to the domain goes through one of these verbs, by concept: API keys,
the audience (recipients, tenants, topics), authoring (workflows, templates), messages and
triggers."""

from ..workflow_json import StepSpec  # what workflow_put takes, one per step
from .audience import (
    RECIPIENT_FIELDS,
    channel_data_set,
    recipient_erase,
    recipient_upsert,
    recipient_upsert_many,
    tenant_upsert,
    topic_subscribe,
    topic_unsubscribe,
    topic_upsert,
)
from .authoring import (
    SendTestError,
    email_send_test,
    template_publish,
    template_save,
    template_send_test,
    workflow_put,
)
from .keys import (
    LAST_USED_RESOLUTION,
    api_key_authenticate,
    api_key_create,
    api_key_revoke,
    hash_secret,
)
from .messages import (
    RESENDABLE,
    message_resend,
)
from .trigger_statement import workflow_unchanged
from .triggers import (
    FANOUT_ADVANCE_CHUNK,
    FANOUT_BUDGET_SECONDS,
    TriggerRequest,
    TriggerResponse,
    WorkflowChanged,
    trigger_fanout,
    trigger_workflow,
    trigger_workflow_idempotent,
    workflow_cancel,
)

__all__ = [
    "StepSpec",
    "RECIPIENT_FIELDS",
    "channel_data_set",
    "recipient_erase",
    "recipient_upsert",
    "recipient_upsert_many",
    "tenant_upsert",
    "topic_subscribe",
    "topic_unsubscribe",
    "topic_upsert",
    "SendTestError",
    "email_send_test",
    "template_publish",
    "template_save",
    "template_send_test",
    "workflow_put",
    "LAST_USED_RESOLUTION",
    "api_key_authenticate",
    "api_key_create",
    "api_key_revoke",
    "hash_secret",
    "RESENDABLE",
    "message_resend",
    "FANOUT_ADVANCE_CHUNK",
    "FANOUT_BUDGET_SECONDS",
    "TriggerRequest",
    "TriggerResponse",
    "WorkflowChanged",
    "workflow_unchanged",
    "trigger_fanout",
    "trigger_workflow",
    "trigger_workflow_idempotent",
    "workflow_cancel",
]
