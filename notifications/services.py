"""Writes: every change to the domain goes through one of these verbs."""

import dataclasses
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from analytics.rollups import Fact, facts_record
from clarion.db import database_unreachable

from . import delivery, erasure
from .engine import layout_for_tenant
from .idempotency import (
    idempotency_abandon,
    idempotency_begin,
    idempotency_finish,
)
from .models import (
    ApiKey,
    ChannelData,
    Message,
    Recipient,
    Run,
    Step,
    StepLog,
    StepType,
    Subscription,
    Template,
    TemplateVersion,
    Tenant,
    Topic,
    Trigger,
    Workflow,
)
from .queue import enqueue, enqueue_many
from .rendering import RenderOptions, TemplateError, render_email, validate_fields
from .rendering.variables import preview_variables
from .workflow_json import StepSpec, step_tree
from .workflow_versions import version_record_live

RECIPIENT_FIELDS = ("name", "email", "phone", "locale", "timezone", "data")
LAST_USED_RESOLUTION = timedelta(minutes=1)  # how often an API key's last use is written
FANOUT_BUDGET_SECONDS = 20.0  # then a fan-out task hands the rest to a new task


# --- API keys ---------------------------------------------------------------------------------

def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, name: str, tenant: Tenant | None = None,
                   scopes: Sequence[str] = ()) -> tuple[ApiKey, str]:
    """A new key and its secret. The secret is returned once and never stored."""
    prefix = "ck_" + secrets.token_hex(4)
    secret = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(name=name, prefix=prefix, secret_hash=hash_secret(secret),
                                tenant=tenant, scopes=list(scopes))
    return key, secret


def api_key_authenticate(*, secret: str) -> ApiKey | None:
    """The unrevoked key whose secret is `secret` (its tenant read along), or None. Notes when
    it was last used, at most once a minute."""
    api_key = (ApiKey.objects.select_related("tenant")
               .filter(secret_hash=hash_secret(secret), revoked_at__isnull=True).first())
    if api_key is not None:
        now = timezone.now()
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
            api_key.last_used_at = now
    return api_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke the key (again: nothing changes). Saved, not updated in bulk, so the audit log
    records who revoked it."""
    api_key = ApiKey.objects.get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])


# --- Recipients -------------------------------------------------------------------------------

def recipient_upsert(*, external_id: str, replace: bool = False,
                     **profile) -> tuple[Recipient, bool]:
    """Create or update a recipient. `replace` resets fields not given (PUT); else merge.

    `profile` may hold RECIPIENT_FIELDS and `channel_data` ({channel or "channel:kind": data}, the
    kind a provider kind such as "fcm").
    """
    channel_data = profile.pop("channel_data", None) or {}
    values = {name: profile[name] for name in RECIPIENT_FIELDS if name in profile}
    if replace:
        values = {name: values.get(name, {} if name == "data" else "") for name in RECIPIENT_FIELDS}
    recipient, created = Recipient.objects.get_or_create(external_id=external_id,
                                                         defaults=values)
    if not created and values:
        changed = [name for name, value in values.items() if getattr(recipient, name) != value]
        for name in changed:
            setattr(recipient, name, values[name])
        if changed:
            recipient.save(update_fields=[*changed, "updated_at"])
    for name, data in channel_data.items():
        channel, _, kind = name.partition(":")
        channel_data_set(recipient=recipient, channel=channel, data=data, provider_kind=kind)
    return recipient, created


def recipient_upsert_many(specs: Sequence[str | Mapping]) -> dict[str, Recipient]:
    """Upsert many recipients (ids, or profiles with "id") in a few statements; merge semantics.

    One INSERT … ON CONFLICT per distinct set of given fields (usually one), then one SELECT:
    a trigger naming a thousand people costs a handful of queries, not thousands.
    """
    profiles: dict[str, dict] = {}
    for spec in specs:
        profile = dict(spec) if isinstance(spec, Mapping) else {"id": spec}
        external_id = str(profile.pop("id"))
        profiles[external_id] = {**profiles.get(external_id, {}), **profile}
    groups: dict[tuple[str, ...], list[Recipient]] = {}
    for external_id, profile in profiles.items():
        fields = tuple(sorted(name for name in RECIPIENT_FIELDS if name in profile))
        values = {name: profile[name] for name in fields}
        groups.setdefault(fields, []).append(Recipient(external_id=external_id, **values))
    for fields, rows in groups.items():
        if fields:
            Recipient.objects.bulk_create(rows, update_conflicts=True,
                                          unique_fields=["external_id"],
                                          update_fields=[*fields, "updated_at"])
        else:
            Recipient.objects.bulk_create(rows, ignore_conflicts=True)
    found = Recipient.objects.in_bulk(list(profiles), field_name="external_id")
    recipients = {external_id: found[external_id] for external_id in profiles}  # callers' order
    for external_id, profile in profiles.items():
        for name, data in (profile.get("channel_data") or {}).items():
            channel, _, kind = name.partition(":")
            channel_data_set(recipient=recipients[external_id], channel=channel, data=data,
                             provider_kind=kind)
    return recipients


def channel_data_set(*, recipient: Recipient, channel: str, data: Mapping,
                     provider_kind: str = "") -> ChannelData:
    """Set the recipient's data for `channel`, for providers of `provider_kind` only (e.g. "fcm")
    or, blank, for any provider of the channel."""
    item, _ = ChannelData.objects.update_or_create(
        recipient=recipient, channel=channel, provider_kind=provider_kind,
        defaults={"data": dict(data)}
    )
    return item


def recipient_erase(*, recipient: Recipient) -> None:
    """Erase a person: see notifications/erasure.py."""
    erasure.recipient_erase(recipient=recipient)


# --- Tenants, topics --------------------------------------------------------------------------

def tenant_upsert(*, key: str, **fields) -> tuple[Tenant, bool]:
    return Tenant.objects.update_or_create(key=key, defaults=fields)


def topic_upsert(*, key: str, name: str = "", tenant: Tenant | None = None) -> tuple[Topic, bool]:
    return Topic.objects.update_or_create(key=key, defaults={"name": name, "tenant": tenant})


@transaction.atomic
def topic_subscribe(*, topic: Topic, recipients: Iterable[Recipient]) -> int:
    """Subscribe recipients to a topic; returns how many were not subscribed before."""
    ids = {r.pk for r in recipients}
    existing = set(topic.subscriptions.filter(recipient_id__in=ids)
                   .values_list("recipient_id", flat=True))
    Subscription.objects.bulk_create(
        [Subscription(topic=topic, recipient_id=pk) for pk in ids - existing],
        ignore_conflicts=True,
    )
    return len(ids - existing)


def topic_unsubscribe(*, topic: Topic, external_ids: Iterable[str]) -> int:
    deleted, _ = topic.subscriptions.filter(recipient__external_id__in=list(external_ids)).delete()
    return deleted


# --- Workflows and templates ------------------------------------------------------------------

@transaction.atomic
def template_save(*, step: Step, locale: str, fields: Mapping, author=None,
                  publish: bool = True, channel: str = "") -> tuple[Template,
                                                                   TemplateVersion | None]:
    """Save a template's fields as a new immutable version, and publish it unless `publish` is
    False (a draft, published later with template_publish). `channel`: of a route step, which
    of its channels the template is for (blank for a channel step).

    Fields identical to the latest or the published version create nothing (returns None); with
    `publish`, that version is published if it was not.
    """
    template, _ = Template.objects.get_or_create(step=step, channel=channel, locale=locale)
    template = Template.objects.select_for_update().get(pk=template.pk)  # numbers stay unique
    clean = {name: value for name, value in fields.items() if value not in (None, "")}
    latest = template.versions.order_by("-number").first()
    for existing in (template.published_version, latest):
        if existing is not None and existing.fields == clean:
            if publish and template.published_version_id != existing.pk:
                template_publish(version=existing)
                template.refresh_from_db()
            return template, None
    version = TemplateVersion.objects.create(template=template,
                                             number=(latest.number if latest else 0) + 1,
                                             fields=clean, author=author)
    if publish:
        template.published_version = version
        template.save(update_fields=["published_version", "updated_at"])
    return template, version


def template_publish(*, version: TemplateVersion) -> None:
    """Make `version` the one that renders (a rollback when it is older). Saved, so the audit
    log records who published which version."""
    template = Template.objects.get(pk=version.template_id)
    template.published_version = version
    template.save(update_fields=["published_version", "updated_at"])


RESENDABLE = (Message.Status.FAILED, Message.Status.UNDELIVERABLE)


@transaction.atomic
def message_resend(*, message: Message) -> bool:
    """Queue a failed (or undeliverable) message again, through the same delivery as its first
    send: every provider may be tried again, with a fresh count of attempts; the earlier
    attempts stay in the ledger. Returns False (and changes nothing) when the message is not
    failed any more, so two people resending at once send it once."""
    queued = Message.objects.filter(pk=message.pk, status__in=RESENDABLE).update(
        status=Message.Status.QUEUED, attempts=0, next_attempt_at=None, error="",
        updated_at=timezone.now())
    if queued:
        enqueue("notifications.tasks.deliver_message", str(message.pk))
    return bool(queued)


class SendTestError(ValueError):
    """A test send that cannot be made: the message says why, for the admin."""


def template_send_test(*, template: Template, user, fields: Mapping | None = None,
                       tenant: Tenant | None = None) -> Message:
    """Render `fields` (default: the published version) with the workflow's sample data and send
    it to `user`'s own email address through the configured provider (email_send_test).
    Raises SendTestError when the template cannot be sent."""
    if template.step.type != "email":
        raise SendTestError("Test sends are made for email templates.")
    fields = dict(template.fields if fields is None else fields)
    version = next((v for v in template.versions.all() if v.fields == fields), None)
    return email_send_test(step=template.step, locale=template.locale, fields=fields, user=user,
                           tenant=tenant, version=version, detail={"template_id": template.pk})


def email_send_test(*, step: Step, locale: str, fields: Mapping, user,
                    tenant: Tenant | None = None, version: TemplateVersion | None = None,
                    detail: Mapping | None = None) -> Message:
    """Render an email step's template `fields` (Liquid source by field name) in `locale` with
    the step's workflow's sample data and send it to `user`'s own email address through the
    configured provider. `step` may be unsaved: a step a workflow's draft adds, on the
    workflow as the draft says (workflow_versions.draft_step_row); its message then names the
    step by ref only.

    The send is recorded like any other: a trigger and a run for the staff member (as recipient
    `staff-<user id>`) with a Message, its delivery attempts and a timeline (`detail` is added
    to its entries). Only this message is delivered, in the caller's request
    (delivery.deliver): other queued messages are left to the workers. Raises SendTestError
    when it cannot be sent (not an email step, no address, a template error)."""
    if step.type != "email":
        raise SendTestError("Test sends are made for email templates.")
    if not user.email:
        raise SendTestError("Your user has no email address: add one to your account first.")
    fields = dict(fields)
    name = user.get_full_name() or user.get_username()
    variables = preview_variables(workflow=step.workflow, tenant=tenant, locale=locale,
                                  recipient={"id": f"staff-{user.pk}", "name": name,
                                             "email": user.email})
    try:
        validate_fields(step.type, fields)
        email = render_email(fields, variables, layout_for_tenant(tenant.pk if tenant else None),
                             RenderOptions(locale=locale))
    except TemplateError as exc:
        raise SendTestError(f"{exc.field or 'template'}: {exc.message}") from exc
    with transaction.atomic():
        recipient, _ = recipient_upsert(external_id=f"staff-{user.pk}", name=name,
                                        email=user.email)
        trigger = Trigger.objects.create(workflow=step.workflow, tenant=tenant,
                                         data=variables["data"], recipients=[recipient.external_id])
        run = Run.objects.create(trigger=trigger, workflow=step.workflow, recipient=recipient,
                                 workflow_version_id=step.workflow.published_version_id,
                                 tenant=tenant, status=Run.Status.COMPLETED)
        detail = {"test_send_by": user.get_username(), **(detail or {}), "locale": locale}
        message = Message.objects.create(
            run=run, step=step if step.pk else None, step_ref=step.ref, recipient=recipient,
            workflow=step.workflow, tenant=tenant, channel=step.type, to=user.email,
            template_version=version,
            content={"subject": email.subject, "html": email.html, "text": email.text},
        )
        StepLog.objects.bulk_create([
            StepLog(run=run, event=StepLog.Event.TRIGGERED, detail=detail),
            StepLog(run=run, step_ref=step.ref, event=StepLog.Event.QUEUED,
                    detail={**detail, "message_id": str(message.id), "to": user.email}),
        ])
    delivery.deliver(str(message.id))  # this message alone, not a batch of others' messages
    message.refresh_from_db()
    return message


@transaction.atomic
def workflow_put(*, key: str, name: str, category: str = "", critical: bool = False,
                 active: bool = True, default_locale: str = "en", data_schema: dict | None = None,
                 steps: Sequence[StepSpec], author=None,
                 sample_data: dict | None = None, source: str | None = "api",
                 note: str = "") -> tuple[Workflow, bool]:
    """Make the workflow `key` exactly as described, and publish it: the result is recorded
    as a new published version (workflow_versions.py; `source` says where it came from, e.g.
    "api" or "import"), unless `source` is None (the caller records the version: publishing a
    draft, or a never-published workflow's draft written in the admin). Describing it as it
    is changes nothing and records nothing.

    Steps are matched by `ref` (so their messages stay linked); steps not described are removed;
    a template version is added only where a template's fields changed; a step whose
    `templates` is None keeps its own. Writers of one workflow take turns (its row is locked).
    """
    workflow, created = Workflow.objects.get_or_create(
        key=key, defaults={"name": name, "category": category, "critical": critical,
                           "active": active, "default_locale": default_locale,
                           "data_schema": data_schema, "sample_data": sample_data or {}},
    )
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if not created:
        values = {"name": name, "category": category, "critical": critical, "active": active,
                  "default_locale": default_locale, "data_schema": data_schema}
        if sample_data is not None:
            values["sample_data"] = sample_data
        changed = [n for n, v in values.items() if getattr(workflow, n) != v]
        for n in changed:
            setattr(workflow, n, values[n])
        if changed:
            workflow.save(update_fields=[*changed, "updated_at"])
    existing = {step.ref: step for step in workflow.steps.all()}
    tree = list(step_tree(steps))
    kept = {spec.ref for spec, *_ in tree}
    removed = {step.pk for ref, step in existing.items() if ref not in kept}
    # A kept step moved out of a removed branch step must not go with it (CASCADE).
    rescued = [step.pk for ref, step in existing.items() if ref in kept
               and step.parent_id in removed]
    if rescued:
        Step.objects.filter(pk__in=rescued).update(parent=None)
        for step in existing.values():
            if step.pk in rescued:
                step.parent_id = None
    if removed:
        Step.objects.filter(pk__in=removed).delete()
    saved: dict[str, Step] = {}
    for spec, parent_ref, branch, position in tree:
        step = existing.get(spec.ref)
        parent = saved[parent_ref] if parent_ref else None
        values = {"position": position, "type": spec.type, "config": spec.config or {},
                  "conditions": spec.conditions or None, "unless": spec.unless or None,
                  "send_window": spec.send_window or None, "urgent": bool(spec.urgent),
                  "parent_id": parent.pk if parent else None, "branch": branch,
                  "branches": [{"name": item.name, **({"conditions": item.conditions}
                                                      if item.conditions else {})}
                               for item in spec.branches] or None}
        if step is None:
            step = Step.objects.create(workflow=workflow, ref=spec.ref, **values)
        else:
            changed = [n for n, v in values.items() if getattr(step, n) != v]
            for n in changed:
                setattr(step, n, values[n])
            if changed:
                step.save(update_fields=changed)
        saved[spec.ref] = step
        if spec.templates is None:
            continue
        if spec.type == StepType.ROUTE:
            wanted = {(channel, locale): fields for channel, by_locale in spec.templates.items()
                      for locale, fields in by_locale.items()}
        else:
            wanted = {("", locale): fields for locale, fields in spec.templates.items()}
        keep = Q(pk__in=[])
        for channel, locale in wanted:
            keep |= Q(channel=channel, locale=locale)
        step.templates.exclude(keep).delete()
        for (channel, locale), fields in wanted.items():
            template_save(step=step, channel=channel, locale=locale, fields=fields,
                          author=author)
    if source is not None:
        version_record_live(workflow=workflow, user=author, source=source, note=note)
        workflow.refresh_from_db(fields=["published_version", "updated_at"])
    return workflow, created


# --- Triggers ---------------------------------------------------------------------------------

@dataclass
class TriggerRequest:
    """A validated trigger: recipients are ids, profile dicts (with "id") or {"topic": key}."""

    workflow: Workflow
    recipients: list
    data: dict = field(default_factory=dict)
    actor: object = None
    tenant: Tenant | None = None
    cancellation_key: str = ""
    api_key: ApiKey | None = None
    idempotency_key: str = ""


def _run_create_many(trigger: Trigger, recipients: Iterable[Recipient], *,
                     via: str = "", new_trigger: bool = False) -> list[Run]:
    """Runs for recipients who have none on this trigger yet, enqueued to advance in batches
    (tasks.advance_runs)."""
    recipients = {r.pk: r for r in recipients}
    existing = set() if new_trigger else set(
        trigger.runs.filter(recipient_id__in=list(recipients)).values_list("recipient_id",
                                                                            flat=True))
    runs = Run.objects.bulk_create([
        Run(trigger=trigger, workflow=trigger.workflow, recipient=recipient,
            workflow_version_id=trigger.workflow.published_version_id, tenant=trigger.tenant)
        for pk, recipient in recipients.items() if pk not in existing
    ])
    detail = {"trigger_id": str(trigger.id)} | ({"via": via} if via else {})
    StepLog.objects.bulk_create(
        [StepLog(run=run, event=StepLog.Event.TRIGGERED, detail=detail) for run in runs]
    )
    ids, size = [str(run.id) for run in runs], settings.CLARION["ADVANCE_BATCH_SIZE"]
    enqueue_many("notifications.tasks.advance_runs",
                 [tuple(ids[i:i + size]) for i in range(0, len(ids), size)])
    if runs:
        facts_record([Fact(metric="triggered", at=runs[0].created_at, count=len(runs),
                           workflow=trigger.workflow.key,
                           tenant=trigger.tenant.key if trigger.tenant_id else "")])
    return runs


@transaction.atomic
def trigger_workflow(request: TriggerRequest) -> tuple[Trigger, list[Run]]:
    """One transaction: the trigger, inline recipient upserts, and a run per direct recipient.

    Topic audiences fan out in a task (they may be large); their runs appear on the trigger.
    """
    topics = [spec["topic"] for spec in request.recipients
              if isinstance(spec, Mapping) and "topic" in spec]
    if isinstance(request.actor, Mapping):
        actor = dict(request.actor)
        recipient_upsert(external_id=str(actor.pop("id")), **actor)
    direct = recipient_upsert_many(
        [spec for spec in request.recipients if not (isinstance(spec, Mapping) and "topic" in spec)]
    )
    trigger = Trigger.objects.create(
        workflow=request.workflow, tenant=request.tenant, api_key=request.api_key,
        actor=request.actor, data=request.data, recipients=request.recipients,
        cancellation_key=request.cancellation_key, idempotency_key=request.idempotency_key,
        fanout=Trigger.Fanout.PENDING if topics else Trigger.Fanout.DONE,
        runs_created=len(direct), recipients_total=None if topics else len(direct),
    )
    runs = _run_create_many(trigger, direct.values(), new_trigger=True)
    if topics:
        enqueue("notifications.tasks.fanout_trigger", str(trigger.id))
    return trigger, runs


def _topic_keys(trigger: Trigger) -> list[str]:
    return [spec["topic"] for spec in trigger.recipients
            if isinstance(spec, Mapping) and "topic" in spec]


def _actor_pk(trigger: Trigger) -> int | None:
    """The primary key of the trigger's actor, left out of its topic audiences (who did the
    thing is not told about it)."""
    actor = trigger.actor
    external_id = actor.get("id") if isinstance(actor, Mapping) else actor
    if external_id in (None, ""):
        return None
    return (Recipient.objects.filter(external_id=str(external_id))
            .values_list("pk", flat=True).first())


def _subscriber_ids(trigger: Trigger, actor_pk: int | None):
    """Recipient pks subscribed to the trigger's topics, distinct, ascending (keyset order;
    the subscription_unique index (topic, recipient) serves it)."""
    ids = (Subscription.objects.filter(topic__key__in=_topic_keys(trigger))
           .order_by("recipient_id").values_list("recipient_id", flat=True).distinct())
    return ids.exclude(recipient_id=actor_pk) if actor_pk is not None else ids


def trigger_fanout(*, trigger_id: str, budget_seconds: float = FANOUT_BUDGET_SECONDS) -> int:
    """Create the runs of a trigger's topic audiences, CLARION["FANOUT_BATCH_SIZE"] subscribers
    at a time, for up to `budget_seconds`; then hand the rest to a new task. Returns how many
    runs it created.

    Each chunk is one transaction under the trigger's row lock: the runs, their StepLogs and
    advance tasks, the keyset cursor (`fanout_after`) and the progress counters commit together,
    so a worker killed mid-fan-out loses nothing and the next task (or the sweeper) resumes
    after the last committed chunk. The unique (trigger, recipient) constraint and the lock make
    a second fan-out of the same trigger create nothing twice. Safe to run twice, concurrently.
    """
    created, started = 0, time.monotonic()
    while True:
        with transaction.atomic():
            trigger = (Trigger.objects.select_for_update(of=("self",))
                       .select_related("workflow", "tenant").filter(pk=trigger_id).first())
            if trigger is None or trigger.fanout == Trigger.Fanout.DONE:
                return created
            now = timezone.now()
            if trigger.cancelled_at is not None:
                Trigger.objects.filter(pk=trigger.pk).update(fanout=Trigger.Fanout.DONE,
                                                             fanout_at=now)
                return created
            actor_pk = _actor_pk(trigger)
            updates: dict = {"fanout_at": now}
            if trigger.recipients_total is None:
                direct = trigger.runs.values_list("recipient_id", flat=True)
                updates["recipients_total"] = direct.count() + _subscriber_ids(
                    trigger, actor_pk).exclude(recipient_id__in=direct).count()
            chunk = list(_subscriber_ids(trigger, actor_pk)
                         .filter(recipient_id__gt=trigger.fanout_after)
                         [:settings.CLARION["FANOUT_BATCH_SIZE"]])
            if not chunk:
                Trigger.objects.filter(pk=trigger.pk).update(fanout=Trigger.Fanout.DONE,
                                                             **updates)
                return created
            runs = _fanout_runs_create(trigger, chunk)
            created += len(runs)
            Trigger.objects.filter(pk=trigger.pk).update(
                fanout_after=chunk[-1], runs_created=F("runs_created") + len(runs), **updates)
            if time.monotonic() - started >= budget_seconds:
                enqueue("notifications.tasks.fanout_trigger", str(trigger.pk))
                return created


# Runs per advance task of a fan-out: a batch writes a table at a time whatever its size
# (engine/writes.py), so large batches cost fewer statements and queue round trips per run
# (bench/fanout.py: 25 → 500 took a 2,000-subscriber fan-out from 79 s to 24 s on the loaded
# machine); two tasks per chunk let two workers take part, each a few seconds long at most
# (well under Q_CLUSTER["timeout"]).
FANOUT_ADVANCE_CHUNK = 250


def _fanout_runs_create(trigger: Trigger, recipient_ids: list[int]) -> list[Run]:
    """Runs for the recipients (pks) of one fan-out chunk that have none on this trigger yet
    (a direct recipient who is also a subscriber), with their StepLogs and advance tasks."""
    existing = set(trigger.runs.filter(recipient_id__in=recipient_ids)
                   .values_list("recipient_id", flat=True))
    runs = Run.objects.bulk_create([
        Run(trigger=trigger, workflow=trigger.workflow, recipient_id=pk, tenant=trigger.tenant,
            workflow_version_id=trigger.workflow.published_version_id)
        for pk in recipient_ids if pk not in existing
    ])
    keys = _topic_keys(trigger)
    via = {}
    if len(keys) > 1:  # which topic reached each recipient: the first named in the trigger
        for pk, key in (Subscription.objects.filter(topic__key__in=keys,
                                                    recipient_id__in=recipient_ids)
                        .values_list("recipient_id", "topic__key")):
            if pk not in via or keys.index(key) < keys.index(via[pk]):
                via[pk] = key
    StepLog.objects.bulk_create([
        StepLog(run=run, event=StepLog.Event.TRIGGERED,
                detail={"trigger_id": str(trigger.id),
                        "via": f"topic:{via.get(run.recipient_id, keys[0])}"})
        for run in runs
    ])
    ids = [str(run.id) for run in runs]
    enqueue_many("notifications.tasks.advance_runs",
                 [tuple(ids[i:i + FANOUT_ADVANCE_CHUNK])
                  for i in range(0, len(ids), FANOUT_ADVANCE_CHUNK)])
    return runs


@transaction.atomic
def workflow_cancel(*, workflow: Workflow, cancellation_key: str,
                    recipient_ids: Sequence[str] | None = None,
                    tenant: Tenant | None = None) -> list[Run]:
    """Stop the unfinished runs of `workflow` triggered with `cancellation_key`.

    Their pending steps never run and their queued messages are not sent (a message already
    handed to a provider cannot be recalled). Without `recipient_ids`, a topic fan-out that is
    still creating runs stops too. `tenant` limits it to one tenant's runs.
    """
    now = timezone.now()
    triggers = Trigger.objects.filter(workflow=workflow, cancellation_key=cancellation_key)
    if tenant is not None:
        triggers = triggers.filter(tenant=tenant)
    if recipient_ids is None:
        triggers.filter(cancelled_at__isnull=True).update(cancelled_at=now)
    runs = Run.objects.select_for_update(of=("self",)).filter(
        trigger__in=triggers, status__in=[Run.Status.RUNNING, Run.Status.WAITING]
    )
    if recipient_ids is not None:
        runs = runs.filter(recipient__external_id__in=list(recipient_ids))
    runs = list(runs.select_related("recipient"))
    unfinished = [Run.Status.RUNNING, Run.Status.WAITING]
    Run.objects.filter(pk__in=[run.pk for run in runs], status__in=unfinished).update(
        status=Run.Status.CANCELLED, wake_at=None, updated_at=now
    )
    # Messages still waiting for (or between) delivery attempts, also of runs already completed.
    # Only `queued` ones, row-locked: a worker's claim (queued → sending) waits for this
    # transaction and then finds them cancelled; one already `sending` is the worker's to
    # finish (its provider may have accepted it), never overwritten here.
    messages = (Message.objects.select_for_update(of=("self",))
                .filter(run__trigger__in=triggers, status=Message.Status.QUEUED))
    if recipient_ids is not None:
        messages = messages.filter(recipient__external_id__in=list(recipient_ids))
    messages = list(messages.values_list("id", "run_id", "step_ref"))
    Message.objects.filter(pk__in=[m[0] for m in messages], status=Message.Status.QUEUED).update(
        status=Message.Status.CANCELLED, next_attempt_at=None, updated_at=now
    )
    detail = {"cancellation_key": cancellation_key}
    StepLog.objects.bulk_create(
        [StepLog(run=run, event=StepLog.Event.CANCELLED, detail=detail) for run in runs]
        + [StepLog(run_id=run_id, step_ref=step_ref, event=StepLog.Event.CANCELLED,
                   detail={**detail, "message_id": str(message_id)})
           for message_id, run_id, step_ref in messages]
    )
    return runs


# --- Idempotency ------------------------------------------------------------------------------

@dataclass(frozen=True)
class TriggerResponse:
    """What a trigger answers: the HTTP status, the body, and whether it is a replay of the
    first response to the same Idempotency-Key."""

    status: int
    body: dict
    replayed: bool = False


def trigger_summary(trigger: Trigger, runs: Sequence[Run]) -> dict:
    """The trigger's answer: {"trigger_id": str, "runs": [{"id": str, "recipient": str}]}."""
    return {
        "trigger_id": str(trigger.id),
        "runs": [{"id": str(run.id), "recipient": run.recipient.external_id} for run in runs],
    }


def trigger_workflow_idempotent(*, request: TriggerRequest, idempotency_key: str | None,
                                request_fingerprint: object) -> TriggerResponse:
    """Trigger once per (API key, Idempotency-Key): the first request triggers and its answer is
    stored; the same key with the same `request_fingerprint` (any JSON-able value, e.g. the path
    and body) within IDEMPOTENCY_TTL_SECONDS answers it again and triggers nothing.

    Without `idempotency_key` it simply triggers. The key is claimed in a transaction of its own
    (so a concurrent request sees it in progress); the trigger and the stored answer commit
    together; a trigger that fails releases the key. Raises IdempotencyConflict while the first
    request runs (409), IdempotencyMismatch for another request with the same key (422). The
    rule is the IETF draft "The Idempotency-Key HTTP Header Field" (its error scenarios).
    """
    if idempotency_key is None:
        return TriggerResponse(202, trigger_summary(*trigger_workflow(request)))
    request_hash = hashlib.sha256(
        json.dumps(request_fingerprint, sort_keys=True, default=str).encode()
    ).hexdigest()
    record, replay = idempotency_begin(api_key=request.api_key, key=idempotency_key,
                                       request_hash=request_hash)
    if replay:
        return TriggerResponse(record.response_status, record.response_body, replayed=True)
    request = dataclasses.replace(request, idempotency_key=idempotency_key)
    try:
        with transaction.atomic():
            body = trigger_summary(*trigger_workflow(request))
            idempotency_finish(record=record, status=202, body=body)
    except BaseException as error:
        # With the database out of reach, releasing the key could only wait for it again and
        # make the answer (a 503) twice as late; the claim is then taken as dead after
        # IDEMPOTENCY_LOCK_SECONDS, and a retry meanwhile is a 409 with Retry-After.
        if not database_unreachable(error):
            idempotency_abandon(record=record)
        raise
    return TriggerResponse(202, body)
