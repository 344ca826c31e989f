"""Writes to preferences. Every change goes through preference_set_update()."""

from collections.abc import Mapping

from django.db import IntegrityError, transaction

from events.outbox import NewEvent, events_record
from notifications.models import Channel, Recipient, Tenant

from .models import PreferenceSet
from .serializers import SECTIONS, preference_set_data


def _row(*, recipient: Recipient | None, tenant: Tenant | None) -> PreferenceSet | None:
    return (PreferenceSet.objects.select_related("tenant")
            .filter(recipient=recipient, tenant=tenant).first())


def preference_set_get(*, recipient: Recipient | None, tenant: Tenant | None = None) -> dict:
    """The set of `recipient` (for `tenant`), or the tenant's default when recipient is None,
    as its JSON; an empty set when nothing was decided."""
    return preference_set_data(_row(recipient=recipient, tenant=tenant),
                               tenant_key=tenant.key if tenant else None)


def _merge_entry(old, new):
    """PATCH of one category or workflow. An object merged into a bool keeps the bool's answer
    for the other channels: `false` + {"channel_types": {"sms": true}} is off except SMS."""
    if not isinstance(new, Mapping):
        return new
    if isinstance(old, bool):
        old = {"channel_types": dict.fromkeys(Channel.values, old)}
    if not isinstance(old, Mapping):
        return dict(new)
    return {"channel_types": {**old.get("channel_types", {}), **new["channel_types"]}}


def merged(current: Mapping, changes: Mapping) -> dict:
    """`changes` (a validated partial set) merged into `current` (a whole set)."""
    result = {name: dict(current.get(name) or {}) for name in SECTIONS}
    result["quiet_hours"] = current.get("quiet_hours")
    result["channel_types"].update(changes.get("channel_types", {}))
    for section in ("categories", "workflows"):
        for key, entry in changes.get(section, {}).items():
            result[section][key] = _merge_entry(result[section].get(key), entry)
    if "quiet_hours" in changes:
        result["quiet_hours"] = changes["quiet_hours"]
    return result


@transaction.atomic
def preference_set_update(*, recipient: Recipient | None, tenant: Tenant | None = None,
                          data: Mapping, merge: bool) -> PreferenceSet:
    """Replace (PUT) or merge into (PATCH) a set with validated `data` (see serializers.py).

    recipient None writes the tenant's default set. Concurrent writers are serialized on the
    row: the first insert wins and the loser retries as an update.
    """
    if recipient is None and tenant is None:
        raise ValueError("A preference set belongs to a recipient, a tenant or both.")
    for _ in range(2):
        # order_by(): the model's ordering would join the (nullable) owners, and PostgreSQL
        # cannot lock the nullable side of an outer join.
        row = (PreferenceSet.objects.select_for_update()
               .filter(recipient=recipient, tenant=tenant).order_by("pk").first())
        if row is not None:
            break
        try:
            with transaction.atomic():
                row = PreferenceSet.objects.create(recipient=recipient, tenant=tenant)
            break
        except IntegrityError:
            continue
    current = {name: getattr(row, name) for name in (*SECTIONS, "quiet_hours")}
    if merge:
        values = merged(current, data)
    else:
        values = {name: data.get(name, {}) for name in SECTIONS}
        values["quiet_hours"] = data.get("quiet_hours")
    changed = [name for name, value in values.items() if current[name] != value]
    for name in changed:
        setattr(row, name, values[name])
    if changed:
        row.save(update_fields=[*changed, "updated_at"])
        events_record([NewEvent(
            type="preferences.updated", tenant_id=tenant.pk if tenant else None,
            recipient=recipient.external_id if recipient else "",
            data={"recipient": recipient.external_id if recipient else None,
                  "tenant": tenant.key if tenant else None,
                  "preferences": preference_set_data(row, tenant_key=tenant.key if tenant
                                                     else None)})])
    return row


def unsubscribe_scope(workflow_key: str, category: str) -> dict:
    """What a one-click unsubscribe turns off: the email of the workflow's category, or of
    the workflow itself when it has no category."""
    off = {"channel_types": {"email": False}}
    return {"categories": {category: off}} if category else {"workflows": {workflow_key: off}}


def preferences_unsubscribe(*, recipient: Recipient, tenant: Tenant | None, workflow_key: str,
                            category: str) -> PreferenceSet:
    """RFC 8058 one-click: opt out of the category (or workflow) on email. Idempotent; the
    `recipient.unsubscribed` event is recorded on every call (each is the person's request)."""
    with transaction.atomic():
        row = preference_set_update(recipient=recipient, tenant=tenant, merge=True,
                                    data=unsubscribe_scope(workflow_key, category))
        events_record([NewEvent(
            type="recipient.unsubscribed", tenant_id=tenant.pk if tenant else None,
            recipient=recipient.external_id,
            data={"recipient": recipient.external_id, "tenant": tenant.key if tenant else None,
                  "workflow": workflow_key, "category": category or None, "channel": "email"})])
    return row
