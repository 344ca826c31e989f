"""Workflows and templates: saved, published, and sent as a test."""

from collections.abc import Mapping, Sequence

from django.db import transaction
from django.db.models import Q

from .. import delivery
from ..engine import layout_for_tenant
from ..models import (
    Message,
    Run,
    Step,
    StepLog,
    StepType,
    Template,
    TemplateVersion,
    Tenant,
    Trigger,
    Workflow,
)
from ..rendering import RenderOptions, TemplateError, render_email, validate_fields
from ..rendering.variables import preview_variables
from ..workflow_json import StepSpec, step_tree
from ..workflow_versions import version_record_live
from .audience import (
    recipient_upsert,
)


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
