"""Reads several callers share: the API's documented JSON shapes of the domain."""

from collections import defaultdict
from collections.abc import Iterable, Mapping

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from .engine.validation import BRANCHING_STEP_TYPES, DEFAULT_BRANCH
from .models import (
    ApiKey,
    DeliveryAttempt,
    Message,
    Recipient,
    Run,
    Step,
    StepLog,
    Subscription,
    Tenant,
    Topic,
    Trigger,
    Workflow,
)
from .rendering.variables import recipient_variables, tenant_variables


def runs_visible_to(api_key: ApiKey) -> QuerySet[Run]:
    runs = Run.objects.all()
    return runs.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else runs


def recipients_visible_to(api_key: ApiKey) -> QuerySet[Recipient]:
    """Recipients are global; a tenant-restricted key sees those its tenant reached (a run) or
    holds (a subscription to one of its topics)."""
    recipients = Recipient.objects.all()
    if not api_key.tenant_id:
        return recipients
    tenant_id = api_key.tenant_id
    return recipients.filter(
        Exists(Run.objects.filter(recipient=OuterRef("pk"), tenant_id=tenant_id))
        | Exists(Subscription.objects.filter(recipient=OuterRef("pk"),
                                             topic__tenant_id=tenant_id)))


def triggers_visible_to(api_key: ApiKey) -> QuerySet[Trigger]:
    triggers = Trigger.objects.all()
    return triggers.filter(tenant_id=api_key.tenant_id) if api_key.tenant_id else triggers


def step_export(step: Step, children: Mapping[tuple[int, str], list[Step]]) -> dict:
    """One step as the workflow's JSON has it (services.StepSpec.from_json reads it back):
    `children` maps (step id, branch name) to that branch's steps, in order. A step with
    branches shows them as {"name", "conditions", "steps"} and, for a branch step, its
    "default": {"steps": […]}."""
    item = {"ref": step.ref, "type": step.type}
    if step.config:
        item["config"] = step.config
    if step.conditions:
        item["conditions"] = step.conditions
    if step.unless:
        item["unless"] = step.unless
    if step.send_window:
        item["send_window"] = step.send_window
    if step.urgent:
        item["urgent"] = True
    if step.is_channel:
        item["templates"] = {
            template.locale: template.fields for template in step.templates.all()
        }
    if step.type in BRANCHING_STEP_TYPES:
        item["branches"] = [
            {**branch, "steps": [step_export(child, children)
                                 for child in children.get((step.pk, branch["name"]), [])]}
            for branch in step.branches or []]
        if BRANCHING_STEP_TYPES[step.type] is None:
            item["default"] = {"steps": [step_export(child, children) for child in
                                         children.get((step.pk, DEFAULT_BRANCH), [])]}
    return item


def step_children(steps: Iterable[Step]) -> tuple[list[Step], dict[tuple[int, str], list[Step]]]:
    """(top-level steps, {(parent id, branch name): its steps}) of one workflow's `steps`, each
    list in position order when `steps` is."""
    top, children = [], defaultdict(list)
    for step in steps:
        if step.parent_id is None:
            top.append(step)
        else:
            children[(step.parent_id, step.branch)].append(step)
    return top, children


def workflow_export(workflow: Workflow) -> dict:
    """The workflow as its PUT body: a PUT of this dict changes nothing."""
    top, children = step_children(workflow.steps.prefetch_related("templates__published_version"))
    steps = [step_export(step, children) for step in top]
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
            (f"{item.channel}:{item.provider_kind}" if item.provider_kind else item.channel):
                item.data
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


def runs_with_history(runs: QuerySet[Run]) -> QuerySet[Run]:
    """`runs` with what a run's detail shows (api.serializers.RunDetailSerializer): messages
    with their attempts, then the timeline, each in order.

    Messages are read before the timeline: a delivery commits a message's outcome together with
    its timeline entry, so a message read as sent always has its `sent` entry below.
    """
    return runs.select_related("workflow", "recipient", "tenant").prefetch_related(
        Prefetch("messages", queryset=Message.objects.select_related("template_version")
                 .order_by("created_at")),
        Prefetch("messages__delivery_attempts",
                 queryset=DeliveryAttempt.objects.order_by("started_at", "id")),
        Prefetch("step_logs", queryset=StepLog.objects.order_by("id")),
    )


def triggers_with_runs(triggers: QuerySet[Trigger]) -> QuerySet[Trigger]:
    """`triggers` with what a trigger's detail shows (api.serializers.TriggerDetailSerializer)."""
    return triggers.select_related("workflow", "tenant").prefetch_related(
        Prefetch("runs", queryset=Run.objects.select_related("recipient")
                 .order_by("created_at", "id")))
