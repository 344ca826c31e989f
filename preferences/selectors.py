"""Reads: the rows a decision needs, and what the preference center shows."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from notifications.channels import (
    CHANNEL_KEYS,
    QUIET_HOURS_CHANNELS,
    channel_position,
    channel_spec,
)
from notifications.models import Recipient, Step, Tenant, Workflow

from .models import Category, PreferenceSet, WorkflowDefault
from .resolution import (
    Choices,
    Decision,
    QuietHours,
    decide,
    quiet_hours_of,
    quiet_until,
    zone,
)


@dataclass(frozen=True)
class Layers:
    """A person's choices for one tenant: their sets (most specific first) and the default."""

    person: tuple[Choices, ...]
    tenant_default: Choices | None

    @property
    def all(self) -> tuple[Choices, ...]:
        return (*self.person, *((self.tenant_default,) if self.tenant_default else ()))


def preference_layers(*, recipient: Recipient, tenant: Tenant | None) -> Layers:
    """One query: the person's set for `tenant`, their own set and the tenant's default."""
    where = Q(recipient=recipient, tenant__isnull=True)
    if tenant is not None:
        where |= Q(recipient=recipient, tenant=tenant) | Q(recipient__isnull=True, tenant=tenant)
    rows = {row.scope: Choices.of(row) for row in PreferenceSet.objects.filter(where)}
    person = tuple(rows[s] for s in ("recipient_tenant", "recipient") if s in rows)
    return Layers(person=person, tenant_default=rows.get("tenant_default"))


def preference_layers_many(*, recipient_ids: Iterable[int],
                           tenant: Tenant | None) -> dict[int, Layers]:
    """preference_layers for each of `recipient_ids` (pks) and one `tenant`, in one query:
    {recipient pk: Layers}, every pk present."""
    recipient_ids = list(recipient_ids)
    where = Q(recipient_id__in=recipient_ids, tenant__isnull=True)
    if tenant is not None:
        where |= (Q(recipient_id__in=recipient_ids, tenant=tenant)
                  | Q(recipient__isnull=True, tenant=tenant))
    rows: dict[int | None, dict] = {}
    for row in PreferenceSet.objects.filter(where):
        rows.setdefault(row.recipient_id, {})[row.scope] = Choices.of(row)
    tenant_default = rows.get(None, {}).get("tenant_default")
    return {pk: Layers(person=tuple(rows.get(pk, {})[s] for s in ("recipient_tenant", "recipient")
                                    if s in rows.get(pk, {})),
                       tenant_default=tenant_default)
            for pk in recipient_ids}


def workflow_default(workflow: Workflow) -> dict:
    row = WorkflowDefault.objects.filter(workflow=workflow).first()
    return dict(row.channel_types) if row else {}


def allowed(recipient: Recipient, workflow: Workflow, channel: str,
            tenant: Tenant | None = None, *, layers: Layers | None = None,
            defaults: dict | None = None) -> Decision:
    """May `workflow` reach `recipient` on `channel` (for `tenant`)? With the rule that decided."""
    if layers is None:
        layers = preference_layers(recipient=recipient, tenant=tenant)
    if defaults is None:
        defaults = {} if workflow.critical else workflow_default(workflow)
    return decide(workflow_key=workflow.key, category=workflow.category,
                  critical=workflow.critical, channel=channel, person=layers.person,
                  tenant_default=layers.tenant_default, workflow_default=defaults)


def quiet_hours(layers: Layers) -> QuietHours | None:
    """The quiet-hours window that applies: the most specific set that says anything."""
    return quiet_hours_of(layers.all)


@dataclass(frozen=True)
class Verdict:
    """What a channel step does now: send, stay silent (opted out) or wait (quiet hours)."""

    decision: Decision
    wake_at: datetime | None = None
    quiet_hours: QuietHours | None = None

    @property
    def suppressed(self) -> bool:
        return not self.decision.allowed


def channel_step_verdict(*, recipient: Recipient, workflow: Workflow, tenant: Tenant | None,
                         channel: str, now: datetime, check_quiet_hours: bool = True,
                         urgent: bool = False, memo: dict | None = None) -> Verdict:
    """The engine's one question for every channel step, whatever its channel. `memo` keeps
    the rows read for one pass of a run, so its later steps ask without queries. A critical
    workflow ignores opt-outs; it passes quiet hours only for a step marked `urgent`."""
    memo = {} if memo is None else memo
    if "layers" not in memo:
        memo["layers"] = preference_layers(recipient=recipient, tenant=tenant)
    if "defaults" not in memo:
        memo["defaults"] = {} if workflow.critical else workflow_default(workflow)
    layers = memo["layers"]
    decision = allowed(recipient, workflow, channel, tenant, layers=layers,
                       defaults=memo["defaults"])
    if not decision.allowed or (workflow.critical and urgent) or not check_quiet_hours:
        return Verdict(decision)
    if channel not in QUIET_HOURS_CHANNELS:
        return Verdict(decision)
    window = quiet_hours(layers)
    return Verdict(decision, quiet_until(window, now, zone(recipient.timezone)), window)


# --- The preference center --------------------------------------------------------------------

@dataclass
class Row:
    """One line of the preference center: a category or a workflow, a toggle per channel."""

    kind: str  # "category" | "workflow"
    key: str
    name: str
    description: str
    channels: list[tuple[str, bool]]  # (channel, effectively on)


@dataclass
class Section:
    category: Row | None
    workflows: list[Row]


def workflow_channels(workflows) -> dict[int, list[str]]:
    """{workflow id: the channels its steps send on (a route step's channels included), in
    step order} in one query."""
    channels: dict[int, list[str]] = {}
    steps = Step.objects.filter(workflow__in=workflows, type__in=[*CHANNEL_KEYS, "route"])
    for workflow_id, step_type, config in steps.order_by("position").values_list(
            "workflow_id", "type", "config"):
        sends_on = (config.get("channels") if isinstance(config, dict) else None) \
            if step_type == "route" else [step_type]
        if not isinstance(sends_on, list):
            continue
        for channel in sends_on:
            if channel in CHANNEL_KEYS and channel not in channels.setdefault(workflow_id, []):
                channels[workflow_id].append(channel)
    return channels


def decisions(*, recipient: Recipient, tenant: Tenant | None) -> list[tuple[Workflow, str,
                                                                            Decision]]:
    """What applies now to every active workflow × channel, with the deciding rule (admin)."""
    workflows = list(Workflow.objects.filter(active=True).order_by("category", "key"))
    channels = workflow_channels(workflows)
    layers = preference_layers(recipient=recipient, tenant=tenant)
    defaults = {row.workflow_id: row.channel_types
                for row in WorkflowDefault.objects.filter(workflow__in=workflows)}
    return [(w, c, allowed(recipient, w, c, tenant, layers=layers,
                           defaults=defaults.get(w.pk, {})))
            for w in workflows for c in channels.get(w.pk, [])]


def preference_center(*, recipient: Recipient, tenant: Tenant | None) -> tuple[list, list]:
    """(channel toggles, sections): each category with its workflows, as they resolve now.

    Lists active, non-critical workflows with channel steps; the toggles show the effective
    decision, so a tenant's or a workflow's default shows as it applies to this person. Every
    row lists its channels in the channel table's order (notifications/channels.py).
    """
    workflows = list(Workflow.objects.filter(active=True, critical=False).order_by("name", "key"))
    channels_of = workflow_channels(workflows)
    workflows = [w for w in workflows if channels_of.get(w.pk)]
    layers = preference_layers(recipient=recipient, tenant=tenant)
    defaults = {row.workflow_id: row.channel_types
                for row in WorkflowDefault.objects.filter(workflow__in=workflows)}
    names = {c.key: c for c in Category.objects.all()}

    all_channels = sorted({c for w in workflows for c in channels_of[w.pk]}, key=channel_position)
    channel_row = [(c, _channel_on(layers, c)) for c in all_channels]
    by_category: dict[str, list] = {}
    for workflow in workflows:
        by_category.setdefault(workflow.category, []).append(workflow)
    order = sorted(by_category, key=lambda k: (k == "", names[k].position if k in names else 0,
                                               k))
    sections = []
    for key in order:
        members = by_category[key]
        category = None
        if key:
            used = sorted({c for w in members for c in channels_of[w.pk]}, key=channel_position)
            known = names.get(key)
            category = Row("category", key, known.name if known else key.replace("-", " ").title(),
                           known.description if known else "",
                           [(c, _category_on(layers, key, c)) for c in used])
        rows = [Row("workflow", w.key, w.name or w.key, "",
                    [(c, allowed(recipient, w, c, tenant, layers=layers,
                                 defaults=defaults.get(w.pk, {})).allowed)
                     for c in sorted(channels_of[w.pk], key=channel_position)])
                for w in members]
        sections.append(Section(category, rows))
    return channel_row, sections


def _channel_on(layers: Layers, channel: str) -> bool:
    return decide(workflow_key="", category="", critical=False, channel=channel,
                  person=layers.person, tenant_default=layers.tenant_default).allowed


def _category_on(layers: Layers, category: str, channel: str) -> bool:
    return decide(workflow_key="", category=category, critical=False, channel=channel,
                  person=layers.person, tenant_default=layers.tenant_default).allowed


def channel_label(channel: str) -> str:
    """The channel's name as a recipient reads it, in the active language."""
    spec = channel_spec(channel)
    return str(spec.person_label) if spec else channel


def preference_center_data(*, recipient: Recipient, tenant: Tenant | None) -> dict:
    """The hosted center's toggles as JSON (PreferenceCenterSerializer): channels, then each
    category with its workflows, each toggle on or off as it applies to the person now."""
    def toggles(channels):
        return [{"channel": c, "name": channel_label(c), "on": on} for c, on in channels]

    channels, sections = preference_center(recipient=recipient, tenant=tenant)
    return {
        "tenant": tenant.key if tenant else None,
        "channels": toggles(channels),
        "sections": [
            {"category": ({"key": s.category.key, "name": s.category.name,
                           "description": s.category.description,
                           "channels": toggles(s.category.channels)}
                          if s.category else None),
             "workflows": [{"key": w.key, "name": w.name, "channels": toggles(w.channels)}
                           for w in s.workflows]}
            for s in sections
        ],
    }
