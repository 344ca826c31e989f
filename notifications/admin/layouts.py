"""Layouts in the admin: the HTML and text an email's content is set in, per tenant, with a
preview of the saved layout around a sample email."""

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from clarion.admin import ClarionAdmin

from .. import rendering
from ..models import Layout
from ..rendering.variables import tenant_variables
from .template_editor import source_text


class LayoutForm(forms.ModelForm):
    class Meta:
        model = Layout
        fields = ["name", "tenant", "html", "text"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:  # start from the built-in layout
            self.fields["html"].initial = rendering.default_layout_html()
            self.fields["text"].initial = rendering.DEFAULT_LAYOUT_TEXT

    def clean_html(self):
        html = source_text(self.cleaned_data["html"])
        try:
            template = rendering.parse(html, html=True, field="html")
        except rendering.TemplateError as exc:
            raise ValidationError(exc.message) from exc
        if "content" not in template.variables():
            raise ValidationError(_("The layout must contain {{ content }}."))
        return html

    def clean_text(self):
        text = source_text(self.cleaned_data["text"])
        try:
            rendering.parse(text, html=False, field="text")
        except rendering.TemplateError as exc:
            raise ValidationError(exc.message) from exc
        return text


LAYOUT_SAMPLE = ("<h1>Your order has shipped</h1><p>Hi Ada, your order <strong>A-1042</strong> "
                 "is on its way.</p><p><a href=\"https://example.com/track\">Track it</a></p>")


@admin.register(Layout)
class LayoutAdmin(ClarionAdmin):
    form = LayoutForm
    list_display = ("name", "tenant", "updated_at")
    list_select_related = ("tenant",)
    search_fields = ("name", "tenant__key")
    autocomplete_fields = ("tenant",)
    readonly_fields = ("preview",)

    @admin.display(description=gettext_lazy("preview (saved layout, sample email)"))
    def preview(self, obj):
        """The saved layout around a sample email, with its tenant's branding, in a sandboxed
        frame (no scripts run)."""
        if obj is None or obj.pk is None:
            return _("Save the layout to see it here.")
        variables = {"data": {}, "recipient": {"name": "Ada", "locale": "en"},
                     "tenant": tenant_variables(obj.tenant), "actor": {}, "steps": {},
                     "preferences_url": "https://example.com/p/preview/",
                     "unsubscribe_url": "https://example.com/u/preview/"}
        try:
            email = rendering.render_email({"subject": "Sample", "html": LAYOUT_SAMPLE}, variables,
                                           obj)
        except rendering.TemplateError as exc:
            return format_html('<p class="errornote">{}: {}</p>', exc.field, exc.message)
        return format_html(
            '<iframe sandbox="" srcdoc="{}" title="{}" '
            'style="width: 640px; max-width: 100%; height: 560px; border: 1px solid #ddd">'
            "</iframe><details><summary>{}</summary><pre>{}</pre></details>",
            email.html, _("Layout preview"), _("Plain-text part"), email.text)
