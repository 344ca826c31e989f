"""What a template and a condition can see of a run: plain mappings only."""

from collections.abc import Mapping

from preferences.tokens import preferences_url

from .models import Recipient, Run, Tenant


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
    return {
        # The hosted preference center for this person (and tenant): for every email footer.
        "preferences_url": preferences_url(recipient_id=run.recipient_id,
                                           tenant_id=run.tenant_id),
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
