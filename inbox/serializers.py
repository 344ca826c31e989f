"""Request and response shapes of the inbox API (validation and the OpenAPI schema)."""

from rest_framework import serializers

from clarion.api import QuerySerializer, Serializer, TenantKeyField

from .selectors import ARCHIVED, DEFAULT_LIMIT, MAX_LIMIT, STATUSES


class FeedQuerySerializer(QuerySerializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=DEFAULT_LIMIT)
    after = serializers.IntegerField(min_value=0, required=False,
                                     help_text="Cursor: the page of older items after this one.")
    before = serializers.IntegerField(min_value=0, required=False,
                                      help_text="Cursor: the newer items before this one.")
    status = serializers.ChoiceField(choices=STATUSES, default="all")
    archived = serializers.ChoiceField(choices=ARCHIVED, default="exclude")
    tenant = TenantKeyField()
    category = serializers.CharField(required=False, max_length=128)
    tags = serializers.CharField(required=False, max_length=1000,
                                 help_text="Comma-separated; items carrying every one of them.")

    def validate(self, attrs):
        if attrs.get("after") is not None and attrs.get("before") is not None:
            raise serializers.ValidationError({"before": ["Use either `after` or `before`."]})
        attrs["tags"] = tuple(t.strip() for t in attrs.get("tags", "").split(",") if t.strip())
        return attrs


class TenantQuerySerializer(QuerySerializer):
    tenant = TenantKeyField()


class BulkMarkSerializer(Serializer):
    """A mark-all request: the newest item the client has shown bounds what it marks."""

    up_to = serializers.IntegerField(
        min_value=0, help_text="The id of the newest item the client has shown: items with a "
        "higher id (arrived since) are left as they are. Required.")
    tenant = TenantKeyField()


class InboxTokenRequestSerializer(Serializer):
    tenant = TenantKeyField(help_text="Restrict the token to this tenant's items.")


class InboxSecretRotateSerializer(Serializer):
    keep_previous_seconds = serializers.IntegerField(
        min_value=0, required=False,
        help_text="How long HMACs made with the secret being replaced keep working (default: "
        "INBOX_SECRET_ROTATION_SECONDS; 0: they stop at once).")


class InboxSecretSerializer(Serializer):
    secret = serializers.CharField(help_text="The new inbox secret; shown only this once.")
    rotated_at = serializers.DateTimeField()
    previous_expires_at = serializers.DateTimeField(
        allow_null=True, help_text="Until when the previous secret is still accepted; null: it "
        "is not (none, or keep_previous_seconds 0).")


class InboxTokenSerializer(Serializer):
    token = serializers.CharField()
    expires_at = serializers.DateTimeField()


class InboxCountsSerializer(Serializer):
    unread_count = serializers.IntegerField()
    unseen_count = serializers.IntegerField()
    total_count = serializers.IntegerField(help_text="Items not archived.")


class InboxItemSerializer(Serializer):
    id = serializers.IntegerField()
    body = serializers.CharField()
    action_url = serializers.CharField()
    avatar = serializers.CharField()
    content = serializers.DictField()
    workflow = serializers.CharField()
    category = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    tenant = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    seen_at = serializers.DateTimeField(allow_null=True)
    read_at = serializers.DateTimeField(allow_null=True)
    archived_at = serializers.DateTimeField(allow_null=True)


class PageInfoSerializer(Serializer):
    after = serializers.CharField(allow_null=True, help_text="Pass as `after` for older items; "
                                  "null on the last page.")
    before = serializers.CharField(allow_null=True, help_text="Pass as `before` for newer items.")


class FeedSerializer(Serializer):
    items = InboxItemSerializer(many=True)
    page_info = PageInfoSerializer()
    meta = InboxCountsSerializer()


class BulkResultSerializer(Serializer):
    updated = serializers.IntegerField()
    meta = InboxCountsSerializer()
