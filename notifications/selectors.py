"""Reads several callers share: the API's documented JSON shapes of the domain."""

from django.db.models import Prefetch, QuerySet

from .models import (
    ApiKey,
    DeliveryAttempt,
    Message,
    Recipient,
    Run,
    Tenant,
    Topic,
    Trigger,
    Workflow,
)
from .rendering.variables import recipient_variables, tenant_variables


def runs_visible_to(api_key: ApiKey) -> QuerySet[Run]:
    runs = Run.objects.all()
    return runs.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else runs


def triggers_visible_to(api_key: ApiKey) -> QuerySet[Trigger]:
    triggers = Trigger.objects.all()
    return triggers.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else triggers


def workflow_export(workflow: Workflow) -> dict:
    """The workflow as its PUT body: a PUT of this dict changes nothing."""
    steps = []
    for step in workflow.steps.prefetch_related("templates__published_version"):
        item = {"ref": step.ref, "type": step.type}
        if step.config:
            item["config"] = step.config
        if step.conditions:
            item["conditions"] = step.conditions
        if step.is_channel:
            item["templates"] = {
                template.locale: template.fields for template in step.templates.all()
            }
        steps.append(item)
    return {
        "key": workflow.key,
        "name": workflow.name,
        "category": workflow.category,
        "critical": workflow.critical,
        "active": workflow.active,
        "default_locale": workflow.default_locale,
        "data_schema": workflow.data_schema,
        "steps": steps,
    }


def recipient_detail(recipient: Recipient) -> dict:
    """The recipient as the API shows it: what templates see, plus channel data and times."""
    return {
        **recipient_variables(recipient),
        "channel_data": {
            item.channel if not item.provider else f"{item.channel}:{item.provider}": item.data
            for item in recipient.channel_data.all()
        },
        "created_at": recipient.created_at,
        "updated_at": recipient.updated_at,
    }


def tenant_detail(tenant: Tenant) -> dict:
    return tenant_variables(tenant)


def topic_detail(topic: Topic) -> dict:
    return {
        "key": topic.key,
        "name": topic.name,
        "tenant": topic.tenant.key if topic.tenant_id else None,
        "subscribers": topic.subscriptions.count(),
    }


def message_detail(message: Message) -> dict:
    return {
        "id": str(message.id),
        "step": message.step_ref,
        "channel": message.channel,
        "status": message.status,
        "to": message.to,
        "provider": message.provider,
        "provider_message_id": message.provider_message_id,
        "template_version": message.template_version.number if message.template_version else None,
        "content": message.content,
        "error": message.error,
        "attempts": [
            {
                "provider": attempt.provider,
                "started_at": attempt.started_at,
                "duration_ms": attempt.duration_ms,
                "outcome": attempt.outcome,
                "error": attempt.error,
            }
            for attempt in message.delivery_attempts.all()
        ],
        "created_at": message.created_at,
        "sent_at": message.sent_at,
        "delivered_at": message.delivered_at,
        "seen_at": message.seen_at,
        "read_at": message.read_at,
        "clicked_at": message.clicked_at,
    }


def run_detail(run: Run) -> dict:
    # Messages first, then the timeline: a delivery commits a message's outcome together with
    # its timeline entry, so a message read as sent always has its `sent` entry below.
    messages = [message_detail(message) for message in run.messages.select_related(
        "template_version").prefetch_related(
        Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("started_at", "id"))
    ).order_by("created_at")]
    return {
        "id": str(run.id),
        "trigger_id": str(run.trigger_id),
        "workflow": run.workflow.key,
        "recipient": run.recipient.external_id,
        "tenant": run.tenant.key if run.tenant_id else None,
        "status": run.status,
        "cursor": run.cursor,
        "wake_at": run.wake_at,
        "created_at": run.created_at,
        "updated_at": run.updated_at,
        "steps": [
            {"step": log.step_ref, "event": log.event, "detail": log.detail, "at": log.created_at}
            for log in run.step_logs.order_by("id")
        ],
        "messages": messages,
    }


def trigger_detail(trigger: Trigger) -> dict:
    runs = trigger.runs.select_related("recipient").order_by("created_at", "id")
    return {
        "id": str(trigger.id),
        "workflow": trigger.workflow.key,
        "tenant": trigger.tenant.key if trigger.tenant_id else None,
        "actor": trigger.actor,
        "data": trigger.data,
        "cancellation_key": trigger.cancellation_key,
        "fanout": trigger.fanout,
        "created_at": trigger.created_at,
        "runs": [
            {"id": str(run.id), "recipient": run.recipient.external_id, "status": run.status}
            for run in runs
        ],
    }
