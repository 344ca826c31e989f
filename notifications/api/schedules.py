"""The schedules API: `PUT/GET/DELETE /api/v1/schedules/{id}` and their occurrences."""

from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import (
    ERRORS,
    ApiError,
    Serializer,
    TenantKeyField,
    check_key,
    not_found,
    tenant_for_api_key,
    validated,
)

from .. import schedules
from ..models import Recipient, Schedule, Topic, Workflow
from ..recurrence import RepeatError, validate_repeat
from .serializers import validate_timezone

MAX_OCCURRENCES = 100


class RepeatSerializer(Serializer):
    """For the schema; the rule is checked by notifications.recurrence.validate_repeat."""

    frequency = serializers.ChoiceField(choices=["hourly", "daily", "weekly", "monthly"])
    at = serializers.CharField(required=False, help_text='Local "HH:MM" (hourly: its minute).')
    days = serializers.ListField(child=serializers.ChoiceField(
        choices=["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), required=False)
    day_of_month = serializers.IntegerField(required=False, min_value=1, max_value=31)


class ScheduleSerializer(Serializer):
    id = serializers.CharField(source="key", read_only=True)
    workflow = serializers.SlugRelatedField(slug_field="key", queryset=Workflow.objects.all())
    recipients = serializers.ListField(child=serializers.CharField(max_length=255),
                                       required=False, default=list, max_length=1000)
    topic = serializers.CharField(required=False, allow_null=True, default=None)
    data = serializers.DictField(required=False, default=dict)
    tenant = TenantKeyField()
    repeat = RepeatSerializer()
    timezone = serializers.CharField(required=False, default="recipient", max_length=64,
                                     help_text='"recipient" (each one\'s own) or an IANA name.')
    starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    active = serializers.BooleanField(required=False, default=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("repeat"), dict):
            try:
                repeat = validate_repeat(data["repeat"])
            except RepeatError as exc:
                raise serializers.ValidationError({f"repeat.{exc.field}".replace(
                    "repeat.repeat", "repeat"): [exc.message]}) from None
        else:
            repeat = None
        value = super().to_internal_value(data)
        value["repeat"] = repeat
        return value

    def validate_timezone(self, value):
        return value if value == "recipient" else validate_timezone(value) or "UTC"

    def validate(self, attrs):
        if bool(attrs["recipients"]) == bool(attrs["topic"]):
            raise serializers.ValidationError(
                {"recipients": ['Give either "recipients" or "topic".']})
        if attrs["starts_at"] and attrs["ends_at"] and attrs["ends_at"] <= attrs["starts_at"]:
            raise serializers.ValidationError({"ends_at": ["Must be after starts_at."]})
        return attrs

    def to_representation(self, schedule):
        body = super().to_representation(schedule)
        body["topic"] = schedule.topic.key if schedule.topic_id else None
        body["tenant"] = schedule.tenant.key if schedule.tenant_id else None
        body["repeat"] = schedule.repeat
        return body


class OccurrencesSerializer(Serializer):
    timezone = serializers.CharField()
    occurrences = serializers.ListField(child=serializers.DateTimeField(),
                                        help_text="UTC, soonest first.")


def _visible(request):
    found = Schedule.objects.select_related("workflow", "tenant", "topic")
    return (found.filter(tenant_id=request.auth.tenant_id) if request.auth.tenant_id
            else found)


def _schedule(request, key: str) -> Schedule:
    schedule = _visible(request).filter(key=key).first()
    if schedule is None:
        raise not_found("schedule", key)
    return schedule


class ScheduleView(APIView):
    @extend_schema(operation_id="schedule_retrieve", summary="A schedule",
                   responses={200: ScheduleSerializer, **ERRORS})
    def get(self, request, key: str):
        return Response(ScheduleSerializer(_schedule(request, key)).data)

    @extend_schema(
        operation_id="schedule_put", summary="Create or replace a schedule",
        description="A recurring trigger of a workflow for `recipients` (ids) or a `topic`. "
        "Occurrences are counted from the PUT on: the next one after now fires, none before.",
        request=ScheduleSerializer,
        responses={200: ScheduleSerializer, 201: ScheduleSerializer, **ERRORS})
    def put(self, request, key: str):
        check_key(key)
        existing = Schedule.objects.filter(key=key).first()
        if existing is not None and request.auth.tenant_id not in (None, existing.tenant_id):
            raise ApiError(403, "forbidden", "This API key is restricted to another tenant.")
        data = validated(ScheduleSerializer, request.data)
        tenant = tenant_for_api_key(request.auth, data["tenant"])
        topic = None
        if data["topic"]:
            topics = Topic.objects.filter(key=data["topic"])
            if request.auth.tenant_id:
                topics = topics.filter(Q(tenant__isnull=True) | Q(tenant_id=request.auth.tenant_id))
            topic = topics.first()
            if topic is None:
                raise serializers.ValidationError({"topic": [f"Unknown topic {data['topic']!r}."]})
        schedule, created = schedules.schedule_put(
            key=key, workflow=data["workflow"], repeat=data["repeat"],
            recipients=data["recipients"], topic=topic, data=data["data"], tenant=tenant,
            timezone=data["timezone"], starts_at=data["starts_at"], ends_at=data["ends_at"],
            active=data["active"])
        return Response(ScheduleSerializer(schedule).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(operation_id="schedule_delete", summary="Delete a schedule",
                   responses={204: None, **ERRORS})
    def delete(self, request, key: str):
        schedules.schedule_delete(schedule=_schedule(request, key))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ScheduleOccurrencesView(APIView):
    @extend_schema(
        operation_id="schedule_occurrences",
        summary="The next occurrences of a schedule for a recipient, in UTC",
        description="From the code that fires them. `recipient` is required when the schedule "
        "is in each recipient's own time zone.",
        parameters=[
            OpenApiParameter("recipient", OpenApiTypes.STR, required=False),
            OpenApiParameter("count", OpenApiTypes.INT, required=False,
                             description=f"1 to {MAX_OCCURRENCES}; default 10."),
        ],
        responses={200: OccurrencesSerializer, **ERRORS})
    def get(self, request, key: str):
        from django.utils import timezone

        schedule = _schedule(request, key)
        try:
            count = int(request.query_params.get("count", 10))
            if not 1 <= count <= MAX_OCCURRENCES:
                raise ValueError
        except ValueError:
            raise serializers.ValidationError(
                {"count": [f"Expected a whole number from 1 to {MAX_OCCURRENCES}."]}) from None
        recipient = None
        recipient_id = request.query_params.get("recipient")
        if recipient_id:
            recipient = Recipient.objects.filter(external_id=recipient_id).first()
            if recipient is None:
                raise not_found("recipient", recipient_id)
        elif schedule.timezone == schedules.RECIPIENT_TIMEZONE:
            raise serializers.ValidationError(
                {"recipient": ["Required: the schedule is in each recipient's time zone."]})
        zone_name = schedules.recipient_zone(schedule, recipient)
        found = schedules.schedule_next(schedule, zone_name, after=timezone.now(), count=count)
        return Response(OccurrencesSerializer({"timezone": zone_name,
                                               "occurrences": found}).data)
