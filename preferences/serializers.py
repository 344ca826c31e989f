"""The PreferenceSet JSON (Knock's shape, plus `quiet_hours`), validated for every caller.

    {"channel_types": {"email": false},
     "categories": {"marketing": false, "account": {"channel_types": {"sms": false}}},
     "workflows": {"welcome": {"channel_types": {"email": false}}},
     "quiet_hours": {"start": "22:00", "end": "08:00"}}

Knock's channel type names `in_app_feed` and `http` are read as `in_app` and `webhook`; its
read-only `id` and `__typename` are ignored, so a set exported from Knock can be PUT as it is.
"""

import re

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from clarion.api import Serializer, unknown_field_errors
from notifications.models import Channel

KNOCK_CHANNEL_ALIASES = {"in_app_feed": "in_app", "http": "webhook"}
IGNORED_KEYS = frozenset({"id", "__typename"})
SECTIONS = ("channel_types", "categories", "workflows")
KEY = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,127}$")
HH_MM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
BOOL = "Expected true or false."


def validate_channel_types(value) -> tuple[dict, dict]:
    if not isinstance(value, dict):
        return {}, ["Expected an object of channel: true/false."]
    clean, errors = {}, {}
    for name, allowed in value.items():
        channel = KNOCK_CHANNEL_ALIASES.get(name, name)
        if channel not in Channel.values:
            errors[name] = [f"Unknown channel; expected one of {', '.join(Channel.values)}."]
        elif not isinstance(allowed, bool):
            errors[name] = [BOOL]
        else:
            clean[channel] = allowed
    return clean, errors


def _entries(value, what: str) -> tuple[dict, dict | list]:
    """{key: bool | {"channel_types": {...}}} for categories and workflows."""
    if not isinstance(value, dict):
        return {}, [f"Expected an object of {what} keys."]
    clean, errors = {}, {}
    for key, entry in value.items():
        if not (KEY.match(key) if what == "workflow" else 0 < len(key) <= 128):
            errors[key] = [f"Not a valid {what} key."]
        elif isinstance(entry, bool):
            clean[key] = entry
        elif isinstance(entry, dict):
            unknown = unknown_field_errors(entry, ["channel_types"])
            if unknown:
                errors[key] = unknown
                continue
            channels, problems = validate_channel_types(entry.get("channel_types", {}))
            if problems:
                errors[key] = {"channel_types": problems}
            else:
                clean[key] = {"channel_types": channels}
        else:
            errors[key] = ['Expected true, false or {"channel_types": {…}}.']
    return clean, errors


def _quiet_hours(value) -> tuple[object, dict | list]:
    if value is None or value is False:
        return value, {}
    if not isinstance(value, dict):
        return None, ['Expected null, false or {"start": "22:00", "end": "08:00"}.']
    errors = unknown_field_errors(value, ["start", "end"])
    for name in ("start", "end"):
        if name not in value:
            errors[name] = ["This field is required."]
        elif not isinstance(value[name], str) or not HH_MM.match(value[name]):
            errors[name] = ["Expected a 24-hour time like 22:00."]
    if not errors and value["start"] == value["end"]:
        errors["end"] = ["The end must differ from the start."]
    return ({"start": value["start"], "end": value["end"]} if not errors else None), errors


class PreferenceSetSerializer(Serializer):
    """Validates a whole set (PUT) or part of one (`partial=True`, PATCH). Its sections are
    free-form objects checked here; unknown fields are refused by the Serializer base's rule
    (Knock's read-only `id` and `__typename` aside)."""

    ignored_fields = IGNORED_KEYS

    def field_names(self) -> tuple[list[str], list[str]]:
        # `tenant` is what a GET shows: accepted back when it matches ?tenant=.
        return [*SECTIONS, "quiet_hours"], ["tenant"]

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": ["Expected a JSON object."]})
        clean, errors = {}, self.unknown_fields(data)
        if "tenant" in data and data["tenant"] != self.context.get("tenant_key"):
            # A GET body can be PUT back as it is; a body naming another tenant is a mistake.
            errors["tenant"] = ["Does not match the ?tenant= query parameter, which chooses "
                                "the set to write."]
        checks = {"channel_types": validate_channel_types,
                  "categories": lambda v: _entries(v, "category"),
                  "workflows": lambda v: _entries(v, "workflow"),
                  "quiet_hours": _quiet_hours}
        for name, check in checks.items():
            if name not in data:
                if not self.partial:
                    clean[name] = None if name == "quiet_hours" else {}
                continue
            value, problems = check(data[name])
            if problems:
                errors[name] = problems
            else:
                clean[name] = value
        if errors:
            raise serializers.ValidationError(errors)
        return clean


def preference_set_data(row, *, tenant_key: str | None = None) -> dict:
    """A PreferenceSet row (or None: nothing decided yet) as its JSON."""
    return {
        "tenant": tenant_key,
        "channel_types": dict(row.channel_types) if row is not None else {},
        "categories": dict(row.categories) if row is not None else {},
        "workflows": dict(row.workflows) if row is not None else {},
        "quiet_hours": row.quiet_hours if row is not None else None,
    }


@extend_schema_serializer(component_name="PreferenceSet")
class PreferenceSetDocSerializer(Serializer):
    """The documented shape of a PreferenceSet (validation is PreferenceSetSerializer's)."""

    tenant = serializers.CharField(allow_null=True, required=False,
                                   help_text="The tenant of the set, as ?tenant= chose it.")
    channel_types = serializers.DictField(child=serializers.BooleanField(), required=False,
                                          help_text='e.g. {"email": false}')
    categories = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text='e.g. {"marketing": false, "account": {"channel_types": {"sms": false}}}')
    workflows = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text='e.g. {"welcome": {"channel_types": {"email": false}}}')
    quiet_hours = serializers.JSONField(
        allow_null=True, required=False,
        help_text='{"start": "22:00", "end": "08:00"}; false for none; null to inherit.')


# --- The preference center as JSON (the inbox widget's preferences panel) ----------------------

class CenterChannelSerializer(Serializer):
    channel = serializers.ChoiceField(choices=Channel.values, help_text="The channel's key.")
    name = serializers.CharField(help_text='What people read, e.g. "Push notifications".')
    on = serializers.BooleanField(help_text="Whether it applies now: the person's choices, the "
                                  "tenant's default and the workflow's default resolved.")


class CenterCategorySerializer(Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    channels = CenterChannelSerializer(many=True)


class CenterWorkflowSerializer(Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    channels = CenterChannelSerializer(many=True)


class CenterSectionSerializer(Serializer):
    category = CenterCategorySerializer(allow_null=True,
                                        help_text="null for the workflows without a category.")
    workflows = CenterWorkflowSerializer(many=True)


@extend_schema_serializer(component_name="PreferenceCenter")
class PreferenceCenterSerializer(Serializer):
    """What a preferences panel shows one person: read-only; change it with a PreferenceSet."""

    tenant = serializers.CharField(allow_null=True)
    channels = CenterChannelSerializer(many=True, help_text="Channel-wide toggles.")
    sections = CenterSectionSerializer(many=True)


def preference_set_validated(data, *, tenant, partial: bool) -> dict:
    """`data` (a request body) checked as a whole PreferenceSet (PUT) or part of one
    (`partial=True`, PATCH) for the set of `tenant` (a Tenant or None).

    Returns the clean sections; raises rest_framework's ValidationError naming each bad field."""
    serializer = PreferenceSetSerializer(data=data, partial=partial,
                                         context={"tenant_key": tenant.key if tenant else None})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
