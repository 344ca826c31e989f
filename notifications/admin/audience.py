"""Who is notified, in the admin: recipients with their channel data, topic subscriptions and
recent runs (deleting one erases them through `services.recipient_erase`), and topics."""

from django.contrib import admin
from django.db.models import Count

from clarion.admin import EMPTY, ClarionAdmin, FormFieldsMixin, link, table, when

from .. import services
from ..models import ChannelData, Recipient, Subscription, Topic


class ChannelDataInline(FormFieldsMixin, admin.TabularInline):
    model = ChannelData
    extra = 0
    fields = ("channel", "provider_kind", "data", "updated_at")
    readonly_fields = ("updated_at",)


class RecipientSubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("topic", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("topic",)
    verbose_name = "topic subscription"


@admin.register(Recipient)
class RecipientAdmin(ClarionAdmin):
    list_display = ("external_id", "name", "email", "phone", "locale", "timezone", "created_at")
    search_fields = ("external_id", "name", "email", "phone")
    search_help_text = "Recipient id, name, email or phone."
    readonly_fields = ("created_at", "updated_at", "recent_runs")
    inlines = (ChannelDataInline, RecipientSubscriptionInline)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "external_id":
            kwargs["strip"] = False  # an id is kept exactly as given, as the API keeps it
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="recent runs")
    def recent_runs(self, obj):
        if obj.pk is None:
            return EMPTY
        runs = obj.runs.select_related("workflow").order_by("-created_at")[:20]
        return table(
            ("Run", "Workflow", "Status", "Created"),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((link(run, str(run.pk)), run.workflow.key, run.get_status_display(),
              when(run.created_at)) for run in runs),
        )

    def delete_model(self, request, obj):
        services.recipient_erase(recipient=obj)

    def delete_queryset(self, request, queryset):
        for recipient in queryset:
            services.recipient_erase(recipient=recipient)


class TopicSubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("recipient", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("recipient",)
    verbose_name = "subscriber"


@admin.register(Topic)
class TopicAdmin(ClarionAdmin):
    list_display = ("key", "name", "tenant", "subscriber_count", "created_at")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("key", "name")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("created_at",)
    inlines = (TopicSubscriptionInline,)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(subscriber_count=Count("subscriptions"))

    @admin.display(description="subscribers", ordering="subscriber_count")
    def subscriber_count(self, obj):
        return obj.subscriber_count
