"""The ProviderConfig admin: credentials typed as JSON, shown masked, stored encrypted; a
"send test" page per provider; the circuit breaker's state, and an action to close it."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..channels import PROVIDER_CHANNELS
from ..models import Channel, ProviderConfig
from ..providers import registry
from ..providers.base import ConfigurationError, ProviderError
from ..providers.services import (
    masked_credentials,
    provider_config_check,
    provider_config_put,
    provider_send_test,
)


def _kind_choices():
    return [(kind, f"{cls.label or kind} ({cls.channel})")
            for kind, cls in registry.kinds().items()]


class ProviderConfigForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=_kind_choices, label=gettext_lazy("Kind"),
                             help_text=gettext_lazy("The provider kind: which service it is."))
    credentials = forms.JSONField(
        required=False, initial=dict, label=gettext_lazy("Credentials"),
        help_text=gettext_lazy(
            "A JSON object, e.g. {\"account_sid\": \"AC…\", \"auth_token\": \"…\", "
            "\"from\": \"+15550001111\"}. Secrets are shown masked: leave a masked value "
            "as it is to keep the stored one."))

    class Meta:
        model = ProviderConfig
        fields = ("key", "channel", "kind", "tenant", "priority", "active", "credentials",
                  "options")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "channel" in self.fields:  # absent when the page is read-only (view permission)
            self.fields["channel"].choices = [c for c in Channel.choices
                                              if c[0] in PROVIDER_CHANNELS]
        if self.instance.pk:
            self.initial["credentials"] = masked_credentials(self.instance)
            if "key" in self.fields:
                self.fields["key"].disabled = True

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        credentials = cleaned.get("credentials") or {}
        if not isinstance(credentials, dict):
            self.add_error("credentials", _("Expected a JSON object."))
            return cleaned
        existing = ProviderConfig.objects.filter(pk=self.instance.pk).first()
        try:
            # Validates without saving; the admin's save_model writes through the service.
            provider_config_check(config=existing, channel=cleaned["channel"],
                                  kind=cleaned["kind"], credentials=credentials,
                                  options=cleaned.get("options"))
        except ConfigurationError as exc:
            for name, problems in exc.fields.items():
                field = name.split(".", 1)[0]
                self.add_error(field if field in self.fields else None,
                               f"{name}: {' '.join(problems)}")
        return cleaned


class SendTestForm(forms.Form):
    to = forms.CharField(
        label=gettext_lazy("To"), max_length=4000, widget=forms.Textarea(attrs={"rows": 2}),
        help_text=gettext_lazy(
            "An email address, an E.164 phone number, a push token (FCM, APNs), a Web "
            "Push subscription's JSON (what the browser's PushSubscription.toJSON() "
            "returns: {\"endpoint\": …, \"keys\": {\"p256dh\": …, \"auth\": …}}), "
            "a chat webhook URL or channel, or a webhook URL, depending on the channel."))
    text = forms.CharField(label=gettext_lazy("Text"), required=False,
                           widget=forms.Textarea(attrs={"rows": 3}))


@admin.register(ProviderConfig)
class ProviderConfigAdmin(admin.ModelAdmin):
    form = ProviderConfigForm
    list_display = ("key", "channel", "kind", "tenant", "priority", "active", "circuit",
                    "send_test_link")
    list_filter = ("channel", "kind", "active", "tenant")
    list_select_related = ("tenant",)
    search_fields = ("key", "kind")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("consecutive_failures", "circuit_open_until", "last_error")
    actions = ("send_test", "close_circuit")

    def get_fields(self, request, obj=None):
        fields = list(ProviderConfigForm.Meta.fields)
        return fields + list(self.readonly_fields) if obj else fields

    @admin.display(description=gettext_lazy("credentials"))
    def credentials(self, obj):
        """What a read-only page (view permission) shows: masked, never the decrypted values."""
        return masked_credentials(obj)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        config, _ = provider_config_put(
            key=obj.key if change else data["key"], channel=data["channel"], kind=data["kind"],
            priority=data["priority"], active=data["active"], tenant=data.get("tenant"),
            credentials=data.get("credentials") or {}, options=data.get("options") or {})
        form.instance = config
        obj.pk = config.pk

    @admin.display(description=gettext_lazy("circuit"))
    def circuit(self, obj):
        if obj.circuit_open_until:
            return format_html(_("<b>open</b> until {}"),
                               f"{obj.circuit_open_until:%Y-%m-%d %H:%M:%S}")
        if obj.consecutive_failures:
            return ngettext("closed (%(count)d failure)", "closed (%(count)d failures)",
                            obj.consecutive_failures) % {"count": obj.consecutive_failures}
        return _("closed")

    @admin.display(description="")
    def send_test_link(self, obj):
        url = reverse("admin:notifications_providerconfig_send_test", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Send test"))

    @admin.action(description=gettext_lazy("Send a test message"))
    def send_test(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select one provider to send a test message through."),
                              messages.WARNING)
            return None
        return HttpResponseRedirect(
            reverse("admin:notifications_providerconfig_send_test", args=[queryset.get().pk]))

    @admin.action(description=gettext_lazy("Close the circuit (forget failures)"))
    def close_circuit(self, request, queryset):
        count = queryset.update(consecutive_failures=0, circuit_open_until=None)
        self.message_user(request, ngettext("Closed the circuit of %(count)d provider.",
                                            "Closed the circuit of %(count)d providers.",
                                            count) % {"count": count},
                          messages.SUCCESS)

    def get_urls(self):
        return [
            path("<path:object_id>/send-test/",
                 self.admin_site.admin_view(self.send_test_view),
                 name="notifications_providerconfig_send_test"),
            *super().get_urls(),
        ]

    def send_test_view(self, request, object_id):
        config = self.get_object(request, unquote(object_id))
        if config is None:
            return HttpResponseRedirect(reverse("admin:notifications_providerconfig_changelist"))
        if not self.has_change_permission(request, config):
            raise PermissionDenied
        form = SendTestForm(request.POST or None)
        result = None
        if request.method == "POST" and form.is_valid():
            try:
                sent = provider_send_test(config=config, to=form.cleaned_data["to"],
                                          text=form.cleaned_data["text"])
            except ProviderError as exc:
                kind = _("transient") if exc.transient else _("permanent")
                result = {"ok": False, "text": _("Refused (%(kind)s): %(error)s") % {
                              "kind": kind, "error": exc},
                          "exchange": exc.exchange}
            except (KeyError, ValueError) as exc:
                result = {"ok": False, "text": _("Not sent: %(error)s") % {"error": exc},
                          "exchange": None}
            else:
                result = {"ok": True, "text": _("Accepted, provider message id %(id)s") % {
                              "id": sent.provider_message_id},
                          "exchange": sent.exchange}
            exchange = result.pop("exchange")
            result["exchange"] = json.dumps(exchange.__dict__, indent=2, default=str) \
                if exchange is not None else ""
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "original": config, "form": form, "result": result,
                   "title": _("Send a test message through %(provider)s") % {
                       "provider": config.key}}
        return TemplateResponse(request, "admin/notifications/providerconfig/send_test.html",
                                context)
