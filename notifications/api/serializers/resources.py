"""Tenants, topics and their subscriptions, and recipients' channel data."""

from rest_framework import serializers

from clarion.api import Serializer, TenantKeyField

from ...addresses import validate_display_name, validate_email_address
from ...models import (
    color_validator,
)
from ...providers import ssrf
from .recipients import (
    RecipientSpecField,
)


class TenantSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200, validators=[validate_display_name])
    logo_url = serializers.URLField(required=False, allow_blank=True, default="")
    primary_color = serializers.CharField(max_length=32, required=False, allow_blank=True,
                                          default="", validators=[color_validator])
    sender_name = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                        default="", validators=[validate_display_name])
    sender_email = serializers.EmailField(required=False, allow_blank=True, default="",
                                          validators=[validate_email_address])
    footer = serializers.CharField(required=False, allow_blank=True, default="",
                                   trim_whitespace=False)
    settings = serializers.DictField(required=False, default=dict)
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0,
        help_text="Days its runs, messages and events are kept; null: the global "
                  "CLARION_RETENTION_DAYS; 0: forever.")

    def validate_logo_url(self, value: str) -> str:
        if value:
            try:
                ssrf.check_url_destination(value)
            except ssrf.UnsafeURL as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value


class TopicSerializer(Serializer):
    key = serializers.CharField(read_only=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    tenant = TenantKeyField()
    subscribers = serializers.IntegerField(read_only=True)



class SubscriptionsSerializer(Serializer):
    recipients = serializers.ListField(child=RecipientSpecField(), allow_empty=False,
                                       max_length=1000)

    def validate_recipients(self, value):
        if any(isinstance(item, dict) and "topic" in item for item in value):
            raise serializers.ValidationError("A topic cannot subscribe to a topic.")
        return value


class ChannelDataSerializer(Serializer):
    data = serializers.DictField()
    provider_kind = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default="",
        help_text="Only for providers of this kind (fcm, apns, webpush…); blank: any of them.")
