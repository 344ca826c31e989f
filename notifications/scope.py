"""What a template and a condition can see of a run: plain mappings only.

Templates read only these mappings (python-liquid never reaches Python attributes), so this
module is the whole list of what a template author can see; docs/templates.md describes it.
"""

from collections.abc import Mapping

from preferences.tokens import preferences_url, unsubscribe_url

from .models import Recipient, Run, Tenant, Workflow


def recipient_scope(recipient: Recipient | None) -> dict:
    if recipient is None:
        return {}
    return {
        "id": recipient.external_id,
        "name": recipient.name,
        "email": recipient.email,
        "phone": recipient.phone,
        "locale": recipient.locale,
        "timezone": recipient.timezone,
        "data": dict(recipient.data or {}),
    }


def tenant_scope(tenant: Tenant | None) -> dict:
    if tenant is None:
        return {}
    return {
        "key": tenant.key,
        "name": tenant.name,
        "logo_url": tenant.logo_url,
        "primary_color": tenant.primary_color,
        "sender_name": tenant.sender_name,
        "sender_email": tenant.sender_email,
        "footer": tenant.footer,
        "settings": dict(tenant.settings or {}),
    }


def actor_scope(actor) -> dict:
    """The trigger's actor: a known recipient's profile, or the object the caller sent."""
    if actor is None:
        return {}
    actor_id = actor.get("id") if isinstance(actor, Mapping) else actor
    recipient = Recipient.objects.filter(external_id=str(actor_id)).first()
    if recipient is not None:
        return recipient_scope(recipient)
    return dict(actor) if isinstance(actor, Mapping) else {"id": str(actor)}


def run_scope(run: Run) -> dict:
    workflow = run.workflow
    return {
        # The hosted preference center for this person (and tenant), and the unsubscribe page of
        # this workflow's category (none for critical workflows): for every email footer.
        "preferences_url": preferences_url(recipient_id=run.recipient_id,
                                           tenant_id=run.tenant_id),
        "unsubscribe_url": "" if workflow.critical else unsubscribe_url(
            recipient_id=run.recipient_id, tenant_id=run.tenant_id, workflow_key=workflow.key,
            category=workflow.category),
        "data": dict(run.trigger.data or {}),
        "recipient": recipient_scope(run.recipient),
        "tenant": tenant_scope(run.tenant),
        "actor": actor_scope(run.trigger.actor),
        "steps": dict((run.state or {}).get("steps", {})),
        "workflow": {
            "key": run.workflow.key,
            "name": run.workflow.name,
            "category": run.workflow.category,
        },
    }


def preview_scope(*, workflow: Workflow, tenant: Tenant | None = None,
                  recipient: Mapping | None = None, locale: str = "") -> dict:
    """The scope the template editor previews and test-sends with: the workflow's sample data
    as `data`, and `recipient` (by default a sample person) in the template's locale."""
    person = {"id": "preview", "name": "Ada Lovelace", "email": "ada@example.com",
              "phone": "+15550001111", "locale": locale or workflow.default_locale,
              "timezone": "UTC", "data": {}}
    person.update(recipient or {})
    return {
        "data": dict(workflow.sample_data) if isinstance(workflow.sample_data, Mapping) else {},
        "recipient": person,
        "tenant": tenant_scope(tenant),
        "actor": {"id": "sample-actor", "name": "Grace Hopper"},
        "steps": {},
        "workflow": {"key": workflow.key, "name": workflow.name, "category": workflow.category},
        "preferences_url": "https://example.com/p/preview/",
        "unsubscribe_url": "https://example.com/u/preview/",
    }
