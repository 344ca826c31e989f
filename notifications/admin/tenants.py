"""Tenants and API keys in the admin. An API key's secret is made by `services.api_key_create`
and shown once; revoking goes through `services.api_key_revoke`."""

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from clarion.admin import ClarionAdmin, adopt
from inbox.services import tenant_inbox_secret_rotate

from .. import services
from ..models import ApiKey, Tenant
from ..providers import ssrf


class TenantForm(forms.ModelForm):
    def clean_logo_url(self):
        value = self.cleaned_data["logo_url"]
        if value:
            try:
                ssrf.check_url_destination(value)
            except ssrf.UnsafeURL as exc:
                raise forms.ValidationError(str(exc)) from None
        return value


@admin.register(Tenant)
class TenantAdmin(ClarionAdmin):
    form = TenantForm
    list_display = ("key", "name", "sender_name", "sender_email", "created_at")
    search_fields = ("key", "name")
    readonly_fields = ("inbox_secret", "created_at", "updated_at")
    actions = ("rotate_inbox_secret", "replace_inbox_secret")

    @admin.display(description=gettext_lazy("inbox secret"))
    def inbox_secret(self, obj):
        """Whether the tenant has one and since when; never the secret itself."""
        if obj is None or not obj.inbox_secrets_encrypted:
            return _("None yet. Select the tenant in the list and run “Rotate inbox secret” to "
                     "make one (it is shown once).")
        text = _("Set %(when)s UTC (shown only when made).") % {
            "when": f"{obj.inbox_secret_rotated_at:%Y-%m-%d %H:%M}"}
        until = obj.inbox_previous_secret_expires_at
        if until is not None and until > timezone.now():
            text += " " + _("The previous one is accepted until %(when)s UTC.") % {
                "when": f"{until:%Y-%m-%d %H:%M}"}
        return text

    def _new_inbox_secrets(self, request, queryset, *, keep_previous_seconds):
        for tenant in queryset:
            had_one = bool(tenant.inbox_secrets_encrypted)
            secret = tenant_inbox_secret_rotate(tenant=tenant,
                                                keep_previous_seconds=keep_previous_seconds)
            until = tenant.inbox_previous_secret_expires_at
            previous = ("" if not had_one else
                        " " + _("HMACs made with the previous one are accepted until "
                                "%(when)s UTC.") % {"when": f"{until:%Y-%m-%d %H:%M}"}
                        if until else " " + _("The previous one no longer works."))
            messages.success(
                request,
                _("The new inbox secret of tenant “%(tenant)s” is %(secret)s — copy it now: it "
                  "is shown only once and cannot be recovered.")
                % {"tenant": tenant.key, "secret": secret} + previous,
            )

    @admin.action(description=gettext_lazy(
        "Rotate inbox secret (the previous one keeps working for a while)"),
                  permissions=["change"])
    def rotate_inbox_secret(self, request, queryset):
        self._new_inbox_secrets(request, queryset, keep_previous_seconds=None)

    @admin.action(description=gettext_lazy(
        "Replace inbox secret now (the previous one stops working)"),
                  permissions=["change"])
    def replace_inbox_secret(self, request, queryset):
        self._new_inbox_secrets(request, queryset, keep_previous_seconds=0)


class ApiKeyStatusFilter(admin.SimpleListFilter):
    title = gettext_lazy("status")
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", pgettext("API key", "Active")),
                ("revoked", pgettext("API key", "Revoked"))]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "tenant"]


@admin.register(ApiKey)
class ApiKeyAdmin(ClarionAdmin):
    list_display = ("name", "prefix", "tenant", "is_active", "created_at", "last_used_at",
                    "revoked_at")
    list_filter = (ApiKeyStatusFilter, "tenant")
    list_select_related = ("tenant",)
    search_fields = ("name", "prefix")
    autocomplete_fields = ("tenant",)
    actions = ("revoke",)
    add_form = ApiKeyAddForm
    change_fields = ("name", "prefix", "tenant", "scopes", "is_active", "created_at",
                     "last_used_at", "revoked_at")

    def get_fields(self, request, obj=None):
        return self.change_fields if obj else ("name", "tenant")

    def get_readonly_fields(self, request, obj=None):
        return self.change_fields[1:] if obj else ()

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, **kwargs)

    @admin.display(boolean=True, description=gettext_lazy("active"))
    def is_active(self, obj):
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        api_key, secret = services.api_key_create(name=obj.name, tenant=obj.tenant)
        adopt(obj, api_key)
        messages.success(
            request,
            _("The secret of API key “%(name)s” is %(secret)s — copy it now: it is shown only "
              "once and cannot be recovered.") % {"name": api_key.name, "secret": secret},
        )

    @admin.action(description=gettext_lazy("Revoke"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            services.api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(
            request, ngettext("Revoked %d API key.", "Revoked %d API keys.", revoked) % revoked
        )
