"""Admin: event endpoints (secret shown once, enable, disabled notice) and the delivery ledger
with its attempts and a replay action."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from clarion.admin import ClarionAdmin, LedgerAdmin, adopt, link, pretty_json, table, when

from . import services
from .models import EVENT_TYPES, EventAttempt, EventDelivery, EventEndpoint


class EventEndpointForm(forms.ModelForm):
    url = forms.CharField(max_length=2000, label=gettext_lazy("URL"),
                         help_text=gettext_lazy("https:// to a public address."))
    events = forms.MultipleChoiceField(choices=[(t, t) for t in EVENT_TYPES],
                                       widget=forms.CheckboxSelectMultiple,
                                       label=gettext_lazy("Events"))

    class Meta:
        model = EventEndpoint
        fields = ("key", "url", "events", "tenant")

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            services.endpoint_url_check(url)
        except services.EndpointError as exc:
            raise ValidationError(str(exc)) from None
        return url


@admin.register(EventEndpoint)
class EventEndpointAdmin(ClarionAdmin):
    form = EventEndpointForm
    list_display = ("key", "url", "tenant", "active", "notice", "failing_since", "updated_at")
    list_filter = ("active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("key", "url")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("active", "disabled_at", "disabled_reason", "failing_since",
                       "created_at", "updated_at")
    actions = ("enable",)

    @admin.display(description=gettext_lazy("notice"))
    def notice(self, obj):
        if obj.active:
            return ""
        return format_html('<strong style="color: #b91c1c">{}</strong>',
                           _("Disabled %(at)s: %(reason)s") % {
                               "at": when(obj.disabled_at), "reason": obj.disabled_reason})

    def save_model(self, request, obj, form, change):
        endpoint, secret = services.endpoint_put(
            key=obj.key, url=obj.url, events=form.cleaned_data["events"], tenant=obj.tenant)
        adopt(obj, endpoint)
        if secret:
            messages.success(request, _(
                "The signing secret of event endpoint “%(endpoint)s” is %(secret)s — copy it "
                "now: it is shown only once.") % {"endpoint": endpoint.key, "secret": secret})

    @admin.action(description=gettext_lazy("Enable (send their pending events)"),
                  permissions=["change"])
    def enable(self, request, queryset):
        for endpoint in queryset.filter(active=False):
            services.endpoint_enable(endpoint=endpoint)
        self.message_user(request, _("Enabled."), messages.SUCCESS)


@admin.register(EventDelivery)
class EventDeliveryAdmin(LedgerAdmin):
    list_display = ("id", "event_type", "endpoint", "ordering_key", "status", "attempts",
                    "last_status_code", "next_attempt_at", "created_at")
    list_filter = ("status", "endpoint", "event__type")
    list_select_related = ("event", "endpoint")
    search_fields = ("ordering_key", "event__id")
    fields = ("event_link", "endpoint_link", "ordering_key", "status", "attempts",
              "next_attempt_at", "last_status_code", "last_error", "payload", "attempt_table")
    readonly_fields = fields
    actions = ("replay",)

    @admin.display(description=gettext_lazy("event"), ordering="event__type")
    def event_type(self, obj):
        return obj.event.type

    @admin.display(description=gettext_lazy("event"))
    def event_link(self, obj):
        return _("%(type)s %(id)s at %(at)s") % {"type": obj.event.type,
                                                 "id": obj.event.webhook_id,
                                                 "at": when(obj.event.created_at)}

    @admin.display(description=gettext_lazy("endpoint"))
    def endpoint_link(self, obj):
        return link(obj.endpoint)

    @admin.display(description=gettext_lazy("payload"))
    def payload(self, obj):
        return pretty_json(obj.event.payload())

    @admin.display(description=gettext_lazy("attempts"))
    def attempt_table(self, obj):
        rows = [(when(a.started_at), a.status_code or "—", f"{a.duration_ms} ms",
                 _("yes") if a.succeeded else _("no"), a.error or a.response[:300])
                for a in obj.delivery_attempts.all()]
        return table((_("started"), _("status"), _("duration"), _("succeeded"),
                      _("error / response")),
                     "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows)

    def has_replay_permission(self, request):
        return request.user.has_perm("events.change_eventdelivery")

    @admin.action(description=gettext_lazy("Replay (send the event again)"),
                  permissions=["replay"])
    def replay(self, request, queryset):
        for delivery in queryset.select_related("event"):
            services.delivery_replay(delivery=delivery)
        count = queryset.count()
        self.message_user(request, ngettext("%(count)d event queued again.",
                                            "%(count)d events queued again.", count)
                          % {"count": count}, messages.SUCCESS)


@admin.register(EventAttempt)
class EventAttemptAdmin(LedgerAdmin):
    list_display = ("started_at", "delivery", "status_code", "succeeded", "duration_ms", "error")
    list_filter = ("succeeded",)
    list_select_related = ("delivery__event", "delivery__endpoint")
