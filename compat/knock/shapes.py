"""Knock's request bodies read as Clarion's, and Clarion's rows written as Knock's resources.

Knock (`knockapi` SDK, API reference at docs.knock.app) names a user's phone `phone_number`,
keeps any other property of a user beside its fixed ones, names objects by `(collection, id)`
and calls the in-app and webhook channel types `in_app_feed` and `http`. Clarion keeps a user's
other properties in `Recipient.data`, and an object as the topic `<collection>:<id>` (triggering
a workflow for an object reaches its subscribers, as Knock's subscriptions do).
"""

from collections.abc import Mapping

from rest_framework.exceptions import ValidationError

from notifications.models import Recipient, Topic

from ..base import iso

# Knock's user properties that are Clarion recipient fields (Knock name → Clarion name).
USER_FIELDS = {"name": "name", "email": "email", "phone_number": "phone", "locale": "locale",
               "timezone": "timezone", "channel_data": "channel_data"}
# Read-only or Knock-only keys of a user body that Clarion accepts and does not keep.
USER_IGNORED = {"__typename", "updated_at", "created_at"}
# Clarion error paths in Knock's words.
FIELD_NAMES = {"phone": "phone_number"}
CHANNEL_TO_KNOCK = {"in_app": "in_app_feed", "webhook": "http"}
UNSUPPORTED = "Not supported by Clarion's Knock-compatible API."


def object_topic_key(collection: str, object_id: str) -> str:
    """The Clarion topic that stands for Knock's object `(collection, id)`."""
    return f"{collection}:{object_id}"


def _channel_data(value):
    """Knock's inline channel data ({channel: {"data": {...}}}) as Clarion's ({channel: {...}});
    the keys are Clarion channels (`push`, `chat`, or `push:fcm` for one provider kind)."""
    if not isinstance(value, Mapping):
        return value
    return {name: item["data"] if isinstance(item, Mapping) and set(item) == {"data"} else item
            for name, item in value.items()}


def _user_profile(spec: Mapping, path: str, errors: dict, *,
                  inline_preferences: bool = False) -> dict:
    """A Knock user body (inline identify or PUT /v1/users/{id}) as Clarion profile fields;
    properties Clarion has no field for go to `data` (merged into the stored data by callers).
    With `inline_preferences` (identify), `preferences` ({"default": PreferenceSet}) is kept
    under "preferences" for the caller to write."""
    profile: dict = {}
    data: dict = {}
    for name, value in spec.items():
        if name == "channel_data" and value is not None:
            profile["channel_data"] = _channel_data(value)
        elif name in USER_FIELDS:
            if value is not None:
                profile[USER_FIELDS[name]] = value
        elif name == "preferences":
            if value and inline_preferences and isinstance(value, Mapping):
                unknown = sorted(set(value) - {"default"})
                if unknown:
                    errors[f"{path}preferences.{unknown[0]}"] = [
                        'Clarion keeps one preference set per user: "default".']
                profile["preferences"] = {k: v for k, v in value.items() if k == "default"}
            elif value:
                errors[f"{path}preferences"] = [
                    "Inline preferences in a trigger are not supported; identify the user "
                    "with them, or use PUT /v1/users/{id}/preferences/default."]
        elif name not in USER_IGNORED and name != "id":
            data[name] = value  # avatar and the app's own properties
    if data:
        profile["data"] = data
    return profile


def user_profile(spec, path: str = "") -> dict:
    """PUT /v1/users/{id}'s body as Clarion recipient fields; raises ValidationError (422)."""
    if not isinstance(spec, Mapping):
        raise ValidationError({"body": ["Expected a JSON object."]})
    errors: dict = {}
    profile = _user_profile(spec, path, errors, inline_preferences=True)
    if errors:
        raise ValidationError(errors)
    return profile


def merged_data(external_id: str, data: Mapping) -> dict:
    """Knock merges a user's properties into those it has: `data` over the stored ones."""
    stored = (Recipient.objects.filter(external_id=external_id)
              .values_list("data", flat=True).first())
    return {**(stored or {}), **data}


def recipient_spec(spec, path: str, errors: dict):
    """One Knock recipient (a user id, an inline user, or an object reference) as a Clarion
    trigger recipient (an id, a profile with "id", or {"topic": key})."""
    if not isinstance(spec, Mapping):
        return spec  # an id (or a wrong type, refused by Clarion's serializer)
    if "collection" in spec:
        extra = sorted(set(spec) - {"id", "collection"})
        if extra:
            errors[f"{path}{extra[0]}"] = ["Inline object properties are not supported; "
                                           "set them with PUT /v1/objects/{collection}/{id}."]
        return {"topic": object_topic_key(str(spec.get("collection")), str(spec.get("id")))}
    profile = _user_profile(spec, path, errors)
    if "data" in profile and isinstance(spec.get("id"), str):
        profile["data"] = merged_data(spec["id"], profile["data"])
    return {"id": spec.get("id"), **profile}


def inline_tenant(value, errors: dict) -> dict | None:
    """Knock's inline tenant {"id", "name", …} as Clarion tenant fields {"key", "name"}, to be
    upserted before the trigger (Knock identifies inline tenants); None for a tenant key."""
    if not isinstance(value, Mapping):
        return None
    extra = sorted(set(value) - {"id", "name", "properties", "settings"})
    if extra or value.get("settings"):
        errors[f"tenant.{(extra or ['settings'])[0]}"] = [UNSUPPORTED]
    if not isinstance(value.get("id"), str):
        errors["tenant.id"] = ["Expected a tenant key."]
        return None
    return {"key": value["id"], "name": str(value.get("name") or value["id"])}


def trigger_body(body) -> tuple[dict, dict | None]:
    """POST /v1/workflows/{key}/trigger's body as (Clarion's trigger body, an inline tenant to
    upsert first or None); raises ValidationError for what Clarion cannot honour."""
    if not isinstance(body, Mapping):
        raise ValidationError({"body": ["Expected a JSON object."]})
    errors: dict = {}
    allowed = {"recipients", "actor", "data", "tenant", "cancellation_key", "settings"}
    for name in sorted(set(body) - allowed):
        errors[name] = [f"Unknown field; expected one of: {', '.join(sorted(allowed))}."]
    if body.get("settings"):
        errors["settings"] = [UNSUPPORTED]
    clarion: dict = {}
    recipients = body.get("recipients")
    if isinstance(recipients, list):
        clarion["recipients"] = [recipient_spec(spec, f"recipients[{i}].", errors)
                                 for i, spec in enumerate(recipients)]
    elif "recipients" in body:
        clarion["recipients"] = recipients
    if body.get("actor") is not None:
        clarion["actor"] = recipient_spec(body["actor"], "actor.", errors)
    if body.get("data") is not None:
        clarion["data"] = body["data"]
    tenant = None
    if body.get("tenant") is not None:
        tenant = inline_tenant(body["tenant"], errors)
        clarion["tenant"] = tenant["key"] if tenant else body["tenant"]
    if body.get("cancellation_key") is not None:
        clarion["cancellation_key"] = body["cancellation_key"]
    if errors:
        raise ValidationError(errors)
    return clarion, tenant


def user(recipient: Recipient) -> dict:
    """A recipient as Knock's User."""
    data = dict(recipient.data or {})
    return {
        **data,
        "__typename": "User",
        "id": recipient.external_id,
        "name": recipient.name or None,
        "email": recipient.email or None,
        "phone_number": recipient.phone or None,
        "avatar": data.get("avatar"),
        "locale": recipient.locale or None,
        "timezone": recipient.timezone or None,
        "created_at": iso(recipient.created_at),
        "updated_at": iso(recipient.updated_at),
    }


def knock_object(topic: Topic, collection: str, object_id: str) -> dict:
    """A topic as Knock's Object."""
    return {"__typename": "Object", "id": object_id, "collection": collection,
            "properties": {"name": topic.name} if topic.name else {},
            "created_at": iso(topic.created_at), "updated_at": iso(topic.created_at)}


def subscription(topic: Topic, collection: str, object_id: str, recipient: Recipient,
                 created_at) -> dict:
    """One topic subscription as Knock's Subscription."""
    return {"__typename": "Subscription", "object": knock_object(topic, collection, object_id),
            "recipient": user(recipient), "properties": None,
            "inserted_at": iso(created_at), "updated_at": iso(created_at)}


# --- Preference sets ----------------------------------------------------------------------------

PREFERENCE_FIELDS = {"channel_types", "categories", "workflows"}
PREFERENCE_UNSUPPORTED = {"channels", "commercial_subscribed"}
PREFERENCE_IGNORED = {"__typename", "id"}
STRATEGIES = ("merge", "replace")


def _entry_conditions(section: str, entries, errors: dict) -> None:
    """Knock's per-entry `conditions` and `channels` have no Clarion equivalent."""
    if not isinstance(entries, Mapping):
        return
    for key, entry in entries.items():
        if isinstance(entry, Mapping):
            for name in ("conditions", "channels"):
                if entry.get(name):
                    errors[f"{section}.{key}.{name}"] = [UNSUPPORTED]


def preference_body(body, *, inline: bool = False) -> tuple[dict, bool]:
    """A Knock PreferenceSet request as (Clarion PreferenceSet data, merge?). Knock's
    `__persistence_strategy__` is "replace" (the default) or "merge"; a set given inline in an
    identify (`inline`) is merged unless it says "replace"."""
    if not isinstance(body, Mapping):
        raise ValidationError({"preferences.default" if inline else "body": [
            "Expected a JSON object."]})
    errors: dict = {}
    strategy = body.get("__persistence_strategy__", "merge" if inline else "replace")
    if strategy not in STRATEGIES:
        errors["__persistence_strategy__"] = ['Expected "merge" or "replace".']
    data: dict = {}
    for name, value in body.items():
        if name in PREFERENCE_FIELDS:
            if value is not None:
                data[name] = value
                if name != "channel_types":
                    _entry_conditions(name, value, errors)
        elif name in PREFERENCE_UNSUPPORTED:
            if value not in (None, {}, True):
                errors[name] = [UNSUPPORTED]
        elif name not in PREFERENCE_IGNORED and name != "__persistence_strategy__":
            known = sorted(PREFERENCE_FIELDS | PREFERENCE_UNSUPPORTED
                           | {"__persistence_strategy__"})
            errors[name] = [f"Unknown field; expected one of: {', '.join(known)}."]
    if isinstance(data.get("channel_types"), Mapping):
        for channel, setting in data["channel_types"].items():
            if isinstance(setting, Mapping):
                errors[f"channel_types.{channel}"] = ["Channel type conditions are not "
                                                      "supported; expected true or false."]
    if errors:
        raise ValidationError(errors)
    return data, strategy == "merge"


def _knock_channels(channel_types: Mapping) -> dict:
    return {CHANNEL_TO_KNOCK.get(name, name): on for name, on in channel_types.items()}


def _knock_entries(entries: Mapping) -> dict:
    out = {}
    for key, entry in entries.items():
        if isinstance(entry, Mapping):
            out[key] = {"channel_types": _knock_channels(entry.get("channel_types", {}))}
        else:
            out[key] = entry
    return out


def preference_set(data: Mapping, set_id: str = "default") -> dict:
    """Clarion's PreferenceSet JSON as Knock's PreferenceSet."""
    return {
        "__typename": "PreferenceSet",
        "id": set_id,
        "channel_types": _knock_channels(data.get("channel_types") or {}),
        "categories": _knock_entries(data.get("categories") or {}),
        "workflows": _knock_entries(data.get("workflows") or {}),
        "channels": None,
        "commercial_subscribed": None,
    }
