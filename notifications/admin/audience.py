"""Who is notified, in the admin: recipients with their channel data, topic subscriptions and
recent runs (deleting one erases them through `services.recipient_erase`), and topics."""

from django.contrib import admin
from django.db.models import Count
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clarion.admin import EMPTY, ClarionAdmin, FormFieldsMixin, link, table, when

from .. import services, support
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
    verbose_name = gettext_lazy("topic subscription")
    verbose_name_plural = gettext_lazy("topic subscriptions")


@admin.register(Recipient)
class RecipientAdmin(ClarionAdmin):
    list_display = ("external_id", "name", "email", "phone", "locale", "timezone", "created_at")
    search_fields = ("external_id", "name", "email", "phone")
    search_help_text = gettext_lazy("Recipient id, name, email or phone.")
    readonly_fields = ("created_at", "updated_at", "recent_runs", "recent_messages")
    inlines = (ChannelDataInline, RecipientSubscriptionInline)

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "external_id":
            kwargs["strip"] = False  # an id is kept exactly as given, as the API keeps it
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description=gettext_lazy("latest runs"))
    def recent_runs(self, obj):
        """The latest runs, each with why its steps were skipped, suppressed, held or failed."""
        if obj.pk is None:
            return EMPTY
        summaries = support.recipient_recent_runs(obj)
        if not summaries:
            return _("No runs.")
        return table(
            (_("Run"), _("Workflow"), _("Tenant"), _("Status"), _("Why not sent (or not yet)"),
             _("Created")),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((link(item.run, str(item.run.pk)), item.run.workflow.key,
              item.run.tenant.key if item.run.tenant_id else EMPTY,
              item.run.get_status_display(),
              format_html_join("", "<div>{}</div>", ((reason,) for reason in item.reasons))
              or EMPTY,
              when(item.run.created_at)) for item in summaries),
        )

    @admin.display(description=gettext_lazy("latest messages"))
    def recent_messages(self, obj):
        """The latest messages with their status and the reason for a suppression or failure."""
        if obj.pk is None:
            return EMPTY
        messages = support.recipient_recent_messages(obj)
        if not messages:
            return _("No messages.")
        return table(
            (_("Message"), _("Workflow"), _("Channel"), _("Status"), _("Reason"), _("To"),
             _("Provider"), _("Created"), _("Run")),
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td><td>{}</td></tr>",
            ((link(message, message.step_ref), message.workflow.key,
              message.get_channel_display(), message.get_status_display(),
              message.error or EMPTY, message.to or EMPTY, message.provider or EMPTY,
              when(message.created_at), link(message.run, _("timeline")))
             for message in messages),
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
    verbose_name = gettext_lazy("subscriber")
    verbose_name_plural = gettext_lazy("subscribers")


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

    @admin.display(description=gettext_lazy("subscribers"), ordering="subscriber_count")
    def subscriber_count(self, obj):
        return obj.subscriber_count
