"""Novu's request bodies read as Clarion's, and Clarion's rows written as Novu's DTOs.

Novu (`novu-py` SDK, API reference at docs.novu.co) calls recipients subscribers
(`subscriberId`, `firstName`, `lastName`), the trigger's data its `payload`, and names a trigger
by its `transactionId`, which Clarion keeps as the trigger's cancellation key. A subscriber's
first and last names are Clarion's one `name` (joined by a space; split at the first space on
the way back); `avatar` is kept in the recipient's `data`.
"""

from collections.abc import Mapping

from rest_framework.exceptions import ValidationError

from notifications.models import Recipient, Topic

from ..base import iso

ORGANIZATION_ID = "clarion"
ENVIRONMENT_ID = "clarion"
# Clarion error paths in Novu's words.
TOP_FIELD_NAMES = {"recipients": "to", "data": "payload", "cancellation_key": "transactionId",
                   "id": "subscriberId"}
NESTED_FIELD_NAMES = {"id": "subscriberId", "topic": "topicKey"}
PROFILE_FIELDS = {"email": "email", "phone": "phone", "locale": "locale", "timezone": "timezone",
                  "data": "data"}
SUBSCRIBER_FIELDS = {"subscriberId", "firstName", "lastName", "avatar", *PROFILE_FIELDS}
NOVU_CHANNELS = ("in_app", "email", "sms", "chat", "push")
UNSUPPORTED = "Not supported by Clarion's Novu-compatible API."


def subscriber_profile(spec: Mapping, path: str, errors: dict) -> dict:
    """A Novu subscriber body (without its subscriberId) as Clarion recipient fields."""
    profile: dict = {}
    for name, value in spec.items():
        if name in PROFILE_FIELDS:
            if value is not None:
                profile[PROFILE_FIELDS[name]] = value
        elif name == "channels":
            if value:
                errors[f"{path}channels"] = [
                    "Channel credentials are not supported here; set push tokens and chat "
                    "webhooks with PUT /api/v1/recipients/{id}/channel-data/{channel}."]
        elif name not in SUBSCRIBER_FIELDS:
            errors[f"{path}{name}"] = [
                f"Unknown field; expected one of: {', '.join(sorted(SUBSCRIBER_FIELDS))}."]
    names = [spec.get("firstName"), spec.get("lastName")]
    if any(isinstance(n, str) and n for n in names):
        profile["name"] = " ".join(n for n in names if isinstance(n, str) and n)
    if isinstance(spec.get("avatar"), str):
        data = profile.get("data")
        profile["data"] = {**(data if isinstance(data, Mapping) else {}),
                           "avatar": spec["avatar"]}
    return profile


def _recipient(spec, path: str, errors: dict):
    """One of Novu's `to` entries as a Clarion trigger recipient."""
    if isinstance(spec, Mapping) and (spec.get("type") == "Topic" or "topicKey" in spec):
        if spec.get("exclude"):
            errors[f"{path}exclude"] = [UNSUPPORTED]
        return {"topic": spec.get("topicKey")}
    if isinstance(spec, Mapping):
        if "subscriberId" not in spec:
            errors[f"{path}subscriberId"] = ["This field is required."]
        profile = subscriber_profile({k: v for k, v in spec.items()
                                      if k not in ("subscriberId", "type")}, path, errors)
        return {"id": spec.get("subscriberId"), **profile}
    return spec


def inline_tenant(value, errors: dict) -> dict | None:
    """Novu's inline tenant {"identifier", "name", "data"} as {"key", "name"}; None for a key."""
    if not isinstance(value, Mapping):
        return None
    if value.get("data"):
        errors["tenant.data"] = [UNSUPPORTED]
    if not isinstance(value.get("identifier"), str):
        errors["tenant.identifier"] = ["Expected a tenant identifier."]
        return None
    return {"key": value["identifier"], "name": str(value.get("name") or value["identifier"])}


TRIGGER_FIELDS = {"name", "to", "payload", "transactionId", "actor", "tenant", "overrides",
                  "bridgeUrl", "context", "agentId"}


def trigger_body(body) -> tuple[str, dict, dict | None]:
    """A Novu trigger event as (workflow key, Clarion trigger body without its cancellation key,
    inline tenant or None); raises ValidationError naming Novu's fields."""
    if not isinstance(body, Mapping):
        raise ValidationError({"body": ["Expected a JSON object."]})
    errors: dict = {}
    for name in sorted(set(body) - TRIGGER_FIELDS):
        errors[name] = [f"Unknown field; expected one of: {', '.join(sorted(TRIGGER_FIELDS))}."]
    for name in ("overrides", "bridgeUrl", "context", "agentId"):
        if body.get(name):
            errors[name] = [UNSUPPORTED]
    key = body.get("name")
    if not isinstance(key, str) or not key:
        errors["name"] = ["Expected the workflow identifier."]
    to = body.get("to")
    if to is None:
        errors["to"] = ["This field is required."]
    clarion: dict = {}
    if isinstance(to, list):
        clarion["recipients"] = [_recipient(spec, f"to[{i}].", errors)
                                 for i, spec in enumerate(to)]
    elif to is not None:
        clarion["recipients"] = [_recipient(to, "to.", errors)]
    if body.get("payload") is not None:
        clarion["data"] = body["payload"]
    if body.get("actor") is not None:
        actor = body["actor"]
        clarion["actor"] = _recipient(actor, "actor.", errors) if isinstance(actor, Mapping) \
            else actor
    tenant = None
    if body.get("tenant") is not None:
        tenant = inline_tenant(body["tenant"], errors)
        clarion["tenant"] = tenant["key"] if tenant else body["tenant"]
    transaction_id = body.get("transactionId")
    if transaction_id is not None and not (isinstance(transaction_id, str)
                                           and 0 < len(transaction_id) <= 200):
        errors["transactionId"] = ["Expected a string of 1 to 200 characters."]
    if errors:
        raise ValidationError(errors)
    return key, clarion, tenant


def error_path(path: str, to_was_list: bool) -> str:
    """A translated error path; `to[0]` is `to` when the request's `to` was one entry."""
    if not to_was_list and path.startswith("to[0]"):
        return "to" + path[len("to[0]"):]
    return path


def _names(recipient: Recipient) -> tuple[str | None, str | None]:
    first, _, last = (recipient.name or "").partition(" ")
    return first or None, last or None


def subscriber(recipient: Recipient) -> dict:
    """A recipient as Novu's SubscriberResponseDto."""
    data = dict(recipient.data or {})
    avatar = data.pop("avatar", None)
    first, last = _names(recipient)
    return {
        "_id": str(recipient.pk),
        "subscriberId": recipient.external_id,
        "firstName": first,
        "lastName": last,
        "email": recipient.email or None,
        "phone": recipient.phone or None,
        "avatar": avatar,
        "locale": recipient.locale or None,
        "timezone": recipient.timezone or None,
        "data": data,
        "channels": [],
        "_organizationId": ORGANIZATION_ID,
        "_environmentId": ENVIRONMENT_ID,
        "deleted": False,
        "createdAt": iso(recipient.created_at),
        "updatedAt": iso(recipient.updated_at),
    }


def topic(topic: Topic) -> dict:
    """A topic as Novu's TopicResponseDto."""
    return {"_id": str(topic.pk), "key": topic.key, "name": topic.name or None,
            "createdAt": iso(topic.created_at), "updatedAt": iso(topic.created_at)}


def subscription(topic_row: Topic, recipient: Recipient, created_at) -> dict:
    """One topic subscription as Novu's SubscriptionResponseDto."""
    first, last = _names(recipient)
    return {
        "_id": f"{topic_row.pk}:{recipient.pk}",
        "identifier": f"{topic_row.key}:{recipient.external_id}",
        "topic": {"_id": str(topic_row.pk), "key": topic_row.key, "name": topic_row.name or None},
        "subscriber": {"_id": str(recipient.pk), "subscriberId": recipient.external_id,
                       "avatar": (recipient.data or {}).get("avatar"), "firstName": first,
                       "lastName": last, "email": recipient.email or None},
        "createdAt": iso(created_at), "updatedAt": iso(created_at),
    }


def preference_changes(body) -> tuple[dict, str | None]:
    """PATCH /v2/subscribers/{id}/preferences' body as (Clarion PreferenceSet changes, the
    workflow key or None for the global channels)."""
    if not isinstance(body, Mapping):
        raise ValidationError({"body": ["Expected a JSON object."]})
    errors: dict = {}
    allowed = {"channels", "workflowId", "schedule", "context"}
    for name in sorted(set(body) - allowed):
        errors[name] = [f"Unknown field; expected one of: {', '.join(sorted(allowed))}."]
    for name in ("schedule", "context"):
        if body.get(name):
            errors[name] = [UNSUPPORTED]
    channels = body.get("channels") or {}
    clean: dict = {}
    if not isinstance(channels, Mapping):
        errors["channels"] = ["Expected an object of channel: true/false."]
    else:
        for name, on in channels.items():
            if on is None:
                continue
            if name not in NOVU_CHANNELS:
                errors[f"channels.{name}"] = [
                    f"Unknown channel; expected one of: {', '.join(NOVU_CHANNELS)}."]
            elif not isinstance(on, bool):
                errors[f"channels.{name}"] = ["Expected true or false."]
            else:
                clean[name] = on
    workflow_key = body.get("workflowId")
    if workflow_key is not None and not isinstance(workflow_key, str):
        errors["workflowId"] = ["Expected a workflow identifier."]
    if errors:
        raise ValidationError(errors)
    if workflow_key:
        return {"workflows": {workflow_key: {"channel_types": clean}}}, workflow_key
    return {"channel_types": clean}, None


def preferences(center: Mapping, own_channels: Mapping) -> dict:
    """The preference center's JSON (preferences.selectors.preference_center_data) as Novu's
    GetSubscriberPreferencesDto: the global channels (each of Novu's: as the center resolves it
    where a workflow uses it, else the person's own choice, else on), then each workflow's."""
    def channels(toggles):
        return {t["channel"]: t["on"] for t in toggles if t["channel"] in NOVU_CHANNELS}

    resolved = channels(center["channels"])
    global_channels = {c: resolved.get(c, own_channels.get(c, True)) for c in NOVU_CHANNELS}
    workflows = []
    for section in center["sections"]:
        for workflow in section["workflows"]:
            own = channels(workflow["channels"])
            workflows.append({
                "enabled": any(own.values()) if own else True,
                "channels": own,
                "overrides": [],
                "workflow": {"slug": workflow["key"], "identifier": workflow["key"],
                             "name": workflow["name"]},
            })
    return {"global": {"enabled": any(global_channels.values()) if global_channels else True,
                       "channels": global_channels},
            "workflows": workflows}
