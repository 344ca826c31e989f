"""Recipients (profiles, channel data, erasure), tenants and topics."""

from collections.abc import Iterable, Mapping, Sequence

from django.db import transaction

from clarion.db import instance_maker, rows_upsert

from .. import erasure
from ..models import (
    ChannelData,
    Recipient,
    Subscription,
    Tenant,
    Topic,
)

RECIPIENT_FIELDS = ("name", "email", "phone", "locale", "timezone", "data")

# LOCK_ORDER: a statement upserting recipients writes them in external id order, and a trigger
# of several such statements (profiles of several shapes, an actor's) writes them all in that
# order. Each row it inserts or updates stays locked until the trigger commits, so two triggers
# naming the same people in different orders (a list and its reverse) each waited for a row the
# other held: PostgreSQL's deadlock detector aborted one, a 500. In one order, one waits for the
# other. (services.triggers._trigger_write: the trigger's other locks come before.)


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


def _profiles(specs: Sequence[str | Mapping]) -> dict[str, dict]:
    """{external id: the fields given for it, merged}, in the callers' order."""
    profiles: dict[str, dict] = {}
    for spec in specs:
        profile = dict(spec) if isinstance(spec, Mapping) else {"id": spec}
        external_id = str(profile.pop("id"))
        profiles[external_id] = {**profiles.get(external_id, {}), **profile}
    return profiles


def _upsert_rows(profiles: dict[str, dict]) -> dict[str, int]:
    """INSERT … ON CONFLICT per run of consecutive profiles (in external id order) with the same
    set of given fields (usually one for all); returns the primary keys the statements handed
    back (those of rows written with fields; ids alone, ON CONFLICT DO NOTHING, hand back none).
    All rows in external id order, across statements too (LOCK_ORDER): one statement per set of
    fields, each in order, locked a list's first ids of one set after its last of another."""
    groups: list[tuple[tuple[str, ...], list[Recipient]]] = []
    for external_id, profile in sorted(profiles.items()):
        fields = tuple(sorted(name for name in RECIPIENT_FIELDS if name in profile))
        values = {name: profile[name] for name in fields}
        if not groups or groups[-1][0] != fields:
            groups.append((fields, []))
        groups[-1][1].append(Recipient(external_id=external_id, **values))
    pks = {}
    for fields, rows in groups:
        if fields:
            rows_upsert(Recipient, rows, unique_fields=["external_id"],
                        update_fields=[*fields, "updated_at"])
            pks.update((row.external_id, row.pk) for row in rows if row.pk is not None)
        else:
            Recipient.objects.bulk_create(rows, ignore_conflicts=True)
    return pks


def recipient_upsert_rows(
        specs: Sequence[str | Mapping]) -> tuple[list[str], list[Recipient]] | None:
    """The rows that recipient_ids_upsert_many writes for `specs` in one upsert, for a caller
    that sends it inside a statement of its own (services/trigger_statement.py): (the fields
    set on a conflict, new Recipient rows in external id order: LOCK_ORDER); None unless every
    recipient gives the same profile fields (at least one: ids alone are looked up, not
    upserted) and no channel data."""
    profiles = _profiles(specs)
    shapes = {tuple(sorted(name for name in RECIPIENT_FIELDS if name in profile))
              for profile in profiles.values()}
    if len(shapes) != 1 or () in shapes or any(profile.get("channel_data")
                                               for profile in profiles.values()):
        return None
    [fields] = shapes
    make = instance_maker(Recipient)
    return [*fields, "updated_at"], [
        make(external_id=external_id, **{name: profile[name] for name in fields})
        for external_id, profile in sorted(profiles.items())]  # LOCK_ORDER


def recipient_upsert_many(specs: Sequence[str | Mapping]) -> dict[str, Recipient]:
    """Upsert many recipients (ids, or profiles with "id") in a few statements; merge semantics.

    One INSERT … ON CONFLICT per distinct set of given fields (usually one), then one SELECT:
    a trigger naming a thousand people costs a handful of queries, not thousands.
    """
    profiles = _profiles(specs)
    _upsert_rows(profiles)
    found = Recipient.objects.in_bulk(list(profiles), field_name="external_id")
    recipients = {external_id: found[external_id] for external_id in profiles}  # callers' order
    for external_id, profile in sorted(profiles.items()):  # LOCK_ORDER
        for name, data in (profile.get("channel_data") or {}).items():
            channel, _, kind = name.partition(":")
            channel_data_set(recipient=recipients[external_id], channel=channel, data=data,
                             provider_kind=kind)
    return recipients


def recipient_ids_upsert_many(specs: Sequence[str | Mapping]) -> dict[str, int]:
    """recipient_upsert_many answering {external id: primary key} (callers' order) rather than
    the rows: profiles' keys come back from their INSERT (RETURNING), so a trigger naming people
    with profiles reads nothing more; only ids alone are looked up."""
    profiles = _profiles(specs)
    if any(profile.get("channel_data") for profile in profiles.values()):
        return {external_id: recipient.pk
                for external_id, recipient in recipient_upsert_many(specs).items()}
    pks = _upsert_rows(profiles)
    missing = [external_id for external_id in profiles if external_id not in pks]
    if missing:
        pks.update(Recipient.objects.filter(external_id__in=missing)
                   .values_list("external_id", "pk"))
    return {external_id: pks[external_id] for external_id in profiles}


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
