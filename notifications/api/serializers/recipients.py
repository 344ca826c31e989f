"""Recipients: ids, profiles, channel data, and the recipient and actor fields of a trigger."""

import re
import zoneinfo

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from clarion.api import Serializer, unknown_field_errors, validated_reusing

from ...addresses import validate_display_name, validate_email_address
from ...models import (
    Channel,
    Topic,
    validate_recipient_id,
)

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def recipient_id(value) -> str:
    """A recipient id as given (a string, or an integer turned into one), checked against the
    one rule (`models.validate_recipient_id`); raises DRF's ValidationError with the rule."""
    value = str(value)
    try:
        validate_recipient_id(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None
    return value


class RecipientIdField(serializers.CharField):
    """A recipient id in a body: kept exactly as given (not trimmed), checked by the one rule."""

    default_error_messages = {"blank": "A recipient id has 1 to 255 characters."}
    accepts_numbers = True  # ids a client keeps as numbers: 42 is the id "42"

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        return recipient_id(super().to_internal_value(data))


def validate_timezone(value: str) -> str:
    if value:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise serializers.ValidationError(
                f"Unknown time zone {value!r}; use an IANA name like 'Europe/Paris'."
            ) from None
    return value


def validate_phone(value: str) -> str:
    if value and not E164.match(value):
        raise serializers.ValidationError("Expected an E.164 number like +15550001111.")
    return value


def validate_locale(value: str) -> str:
    if value and not LOCALE.match(value):
        raise serializers.ValidationError("Expected a locale like 'en' or 'pt-BR'.")
    return value


class ChannelDataMapField(serializers.DictField):
    """{channel: {…}} or {"channel:kind": {…}} (a provider kind, e.g. "push:fcm"): per-channel
    data such as push tokens.

    The same keys the recipient's GET shows, so a GET body can be PUT back.
    """

    child = serializers.DictField()

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        errors = {}
        for name in sorted(value):
            channel, _, kind = name.partition(":")
            if channel not in Channel.values:
                errors[name] = [f"Unknown channel; expected one of {', '.join(Channel.values)}."]
            elif len(kind) > 64:
                errors[name] = ["A provider kind has at most 64 characters."]
        if errors:
            raise serializers.ValidationError(errors)
        return value


class RecipientProfileSerializer(Serializer):
    name = serializers.CharField(max_length=255, required=False, allow_blank=True,
                                 validators=[validate_display_name])
    email = serializers.EmailField(max_length=320, required=False, allow_blank=True,
                                   validators=[validate_email_address])
    phone = serializers.CharField(max_length=16, required=False, allow_blank=True,
                                  validators=[validate_phone])
    locale = serializers.CharField(max_length=35, required=False, allow_blank=True,
                                   validators=[validate_locale])
    timezone = serializers.CharField(max_length=64, required=False, allow_blank=True,
                                     validators=[validate_timezone])
    data = serializers.DictField(required=False)
    channel_data = ChannelDataMapField(required=False)


class InlineRecipientSerializer(RecipientProfileSerializer):
    id = RecipientIdField()


def inline_recipient(data) -> dict:
    """A recipient profile given inline (a trigger's recipient or actor) validated by
    InlineRecipientSerializer (one per thread, used again); raises its ValidationError."""
    return dict(validated_reusing(InlineRecipientSerializer, data))


class RecipientSerializer(RecipientProfileSerializer):
    """A recipient as GET shows it and PUT takes it (a GET body can be PUT back)."""

    id = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)


_PROFILE_SCHEMA = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "maxLength": 255},
        "name": {"type": "string"},
        "email": {"type": "string", "format": "email"},
        "phone": {"type": "string", "description": "E.164"},
        "locale": {"type": "string"},
        "timezone": {"type": "string", "description": "IANA time zone"},
        "data": {"type": "object"},
        "channel_data": {"type": "object", "additionalProperties": {"type": "object"}},
    },
    "additionalProperties": False,
}


@extend_schema_field({
    "oneOf": [
        {"type": "string", "description": "A recipient id"},
        _PROFILE_SCHEMA,
        {"type": "object", "required": ["topic"], "properties": {"topic": {"type": "string"}},
         "additionalProperties": False},
    ]
})
class RecipientSpecField(serializers.Field):
    """A recipient in a trigger: an id, a profile object with "id", or {"topic": key}."""

    # Raised directly, not through self.fail(): fail() would str.format() the braces.
    invalid_message = 'Expected a recipient id, an object with "id", or {"topic": "<key>"}.'

    def to_internal_value(self, data):
        if isinstance(data, str | int) and not isinstance(data, bool):
            return recipient_id(data)
        if isinstance(data, dict) and "topic" in data:
            unknown = unknown_field_errors(data, ["topic"])
            if unknown:
                raise serializers.ValidationError(unknown)
            key = data["topic"]
            topics = Topic.objects.filter(key=key) if isinstance(key, str) else Topic.objects.none()
            api_key = self.context.get("api_key")
            if api_key is not None and api_key.tenant_id is not None:
                # A tenant-restricted key does not see (or reach) another tenant's topics.
                topics = topics.filter(Q(tenant__isnull=True) | Q(tenant_id=api_key.tenant_id))
            if not topics.exists():
                raise serializers.ValidationError({"topic": [f"Unknown topic {key!r}."]})
            return {"topic": key}
        if isinstance(data, dict):
            return inline_recipient(data)
        raise serializers.ValidationError(self.invalid_message)

    def to_representation(self, value):
        return value


@extend_schema_field({"oneOf": [{"type": "string"}, _PROFILE_SCHEMA], "nullable": True})
class ActorField(serializers.Field):
    """Who did the thing: a recipient id, or a profile object with "id"."""

    def to_internal_value(self, data):
        if isinstance(data, str) and 0 < len(data) <= 255:
            return recipient_id(data)
        if isinstance(data, dict):
            return inline_recipient(data)
        raise serializers.ValidationError('Expected a recipient id or an object with "id".')

    def to_representation(self, value):
        return value
