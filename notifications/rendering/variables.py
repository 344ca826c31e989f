"""Template variables: what a template and a step condition can read of a run, as plain mappings.

Templates read only these mappings (python-liquid never reaches Python attributes), so this
module is the whole list of what a template author can see; docs/templates.md describes it.
"""

from collections.abc import Mapping

from preferences.tokens import preferences_url, unsubscribe_url

from ..models import Recipient, Run, Tenant, Workflow

# The top-level variables, and the keys of those whose keys are fixed (the editor warns about
# any other key; see checks.py).
VARIABLE_ROOTS = ("data", "recipient", "actor", "tenant", "steps", "workflow",
                  "preferences_url", "unsubscribe_url")
RECIPIENT_KEYS = ("id", "name", "email", "phone", "locale", "timezone", "data")
TENANT_KEYS = ("key", "name", "logo_url", "primary_color", "sender_name", "sender_email",
               "footer", "settings")
WORKFLOW_KEYS = ("key", "name", "category")


def recipient_variables(recipient: Recipient | None) -> dict:
    """`recipient`: the person's profile ({} for none), keyed by RECIPIENT_KEYS."""
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


def tenant_variables(tenant: Tenant | None) -> dict:
    """`tenant`: the tenant's branding and settings ({} for none), keyed by TENANT_KEYS."""
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


def actor_variables(actor) -> dict:
    """The trigger's actor: a known recipient's profile, or the object the caller sent."""
    if actor is None:
        return {}
    actor_id = actor.get("id") if isinstance(actor, Mapping) else actor
    recipient = Recipient.objects.filter(external_id=str(actor_id)).first()
    if recipient is not None:
        return recipient_variables(recipient)
    return dict(actor) if isinstance(actor, Mapping) else {"id": str(actor)}


def run_variables(run: Run) -> dict:
    """Every variable a run's templates and step conditions read, keyed by VARIABLE_ROOTS."""
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
        "recipient": recipient_variables(run.recipient),
        "tenant": tenant_variables(run.tenant),
        "actor": actor_variables(run.trigger.actor),
        "steps": dict((run.state or {}).get("steps", {})),
        "workflow": {
            "key": run.workflow.key,
            "name": run.workflow.name,
            "category": run.workflow.category,
        },
    }


def preview_variables(*, workflow: Workflow, tenant: Tenant | None = None,
                      recipient: Mapping | None = None, locale: str = "") -> dict:
    """The variables the template editor previews and test-sends with: the workflow's sample
    data as `data`, and `recipient` (by default a sample person) in the template's locale."""
    person = {"id": "preview", "name": "Ada Lovelace", "email": "ada@example.com",
              "phone": "+15550001111", "locale": locale or workflow.default_locale,
              "timezone": "UTC", "data": {}}
    person.update(recipient or {})
    return {
        "data": dict(workflow.sample_data) if isinstance(workflow.sample_data, Mapping) else {},
        "recipient": person,
        "tenant": tenant_variables(tenant),
        "actor": {"id": "sample-actor", "name": "Grace Hopper"},
        "steps": {},
        "workflow": {"key": workflow.key, "name": workflow.name, "category": workflow.category},
        "preferences_url": "https://example.com/p/preview/",
        "unsubscribe_url": "https://example.com/u/preview/",
    }
