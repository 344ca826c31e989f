"""The template editor's parts, shared by the template admin (templates.py) and a draft's
template pages (draft_templates.py): the form with one field per channel field, the variables a
template may read, the live preview, "send a test to me" and the diff of two versions.
"""

import difflib

from django import forms
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from clarion.admin import admin_url

from .. import rendering
from ..api.serializers import LOCALE
from ..channels import CHANNEL_KEYS, template_fields
from ..engine import layout_for_tenant
from ..models import Step, StepType, Template, TemplateVersion, Tenant
from ..providers.sms_segments import sms_size
from ..rendering.variables import (
    RECIPIENT_KEYS,
    TENANT_KEYS,
    WORKFLOW_KEYS,
    preview_variables,
)

DIFF_WRAP = 72
# Steps that have templates: channel steps, and route steps (one template per channel).
TEMPLATED_STEP_TYPES = (*CHANNEL_KEYS, StepType.ROUTE)


def route_channels(step: Step) -> list[str]:
    """The channels of a route step (each has its own templates); [] for any other step."""
    channels = (step.config or {}).get("channels") if step.type == StepType.ROUTE else None
    return [c for c in channels if c in CHANNEL_KEYS] if isinstance(channels, list) else []


def template_channel(step: Step | None, asked: str | None) -> str | None:
    """The channel a template of `step` is for: a channel step's own type; for a route step,
    `asked` when it is one of the route's channels, else None (it must be chosen)."""
    if step is None:
        return None
    if step.type != StepType.ROUTE:
        return step.type
    return asked if asked in route_channels(step) else None


class TemplateForm(forms.ModelForm):
    """One textarea per field of the step's channel. `channel` is set by TemplateAdmin.get_form:
    the fields depend on the step, which is known from the template, `?step=` or the POST."""

    channel: str | None = None
    locale = forms.RegexField(regex=LOCALE, max_length=35, initial="en",
                              label=gettext_lazy("Locale"),
                              error_messages={"invalid": gettext_lazy(
                                  "Expected a locale like 'en' or 'pt-BR'.")})

    class Meta:
        model = Template
        fields = ["step", "locale"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # The editor opens on the latest version (a draft, if one was saved since publishing).
            latest = self.instance.versions.order_by("-number").first()
            for name, value in (latest.fields if latest else {}).items():
                if name in self.fields:
                    self.fields[name].initial = value

    @property
    def channel_fields(self) -> tuple[str, ...]:
        return template_fields(self.channel)

    def clean(self):
        cleaned = super().clean()
        step = cleaned.get("step") or (self.instance.step if self.instance.step_id else None)
        if step is None:
            return cleaned
        stored = "" if step.type != StepType.ROUTE else (self.channel or "")
        # The unique (step, channel, locale) constraint: the form has no channel field (it
        # comes from the step, or `?channel=` for a route), so Django's own check passes it by.
        if (not self.instance.pk and cleaned.get("locale") and Template.objects.filter(
                step=step, channel=stored, locale=cleaned["locale"]).exists()):
            raise ValidationError(_("Template with this Step and Locale already exists."))
        if step.type == StepType.ROUTE and template_channel(step, self.channel) is None:
            raise ValidationError(
                _("Choose which of the route's channels this template is for: %(channels)s.")
                % {"channels": ", ".join(route_channels(step))})
        if (template_channel(step, self.channel) != self.channel
                or not any(name in self.data for name in self.channel_fields)):
            # The step was chosen on this submit: the form now shows its channel's fields.
            raise ValidationError(
                _("Fill in the fields of this %(type)s template, then save.")
                % {"type": step.get_type_display()})
        fields = {name: cleaned.get(name, "") for name in self.channel_fields}
        fields = {name: value for name, value in fields.items() if value}
        try:
            rendering.validate_fields(self.channel, fields)
        except rendering.TemplateError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)
        cleaned["template_fields"] = fields
        cleaned["template_channel"] = stored
        return cleaned


# The editor's labels of the template fields (channels.py names them as the API does).
FIELD_LABELS = {
    "subject": pgettext_lazy("template field", "Subject"),
    "html": pgettext_lazy("template field", "HTML"),
    "text": pgettext_lazy("template field", "Text"),
    "title": pgettext_lazy("template field", "Title"),
    "body": pgettext_lazy("template field", "Body"),
    "data": pgettext_lazy("template field", "Data"),
    "blocks": pgettext_lazy("template field", "Blocks"),
    "parameters": pgettext_lazy("template field", "Parameters"),
    "action_url": pgettext_lazy("template field", "Action URL"),
    "avatar": pgettext_lazy("template field", "Avatar"),
}


class TemplateTextField(forms.CharField):
    """Liquid source, kept as typed except for the browser's CRLF line ends."""

    def __init__(self, **kwargs):
        super().__init__(required=False, strip=False, **kwargs)

    def to_python(self, value):
        return super().to_python(value).replace("\r\n", "\n")


def source_text(raw) -> str:
    return str(raw or "").replace("\r\n", "\n")


def variables_panel(step: Step, channel: str | None = None) -> list[dict]:
    """What a template of `step` may read, with the sample value the preview uses."""
    workflow = step.workflow
    sample = workflow.sample_data or {}
    rows = []

    def walk(value, name):
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(child, f"{name}.{key}")
        else:
            shown = (value if not isinstance(value, list)
                     else _("list of %(count)s") % {"count": len(value)})
            rows.append({"name": name, "group": "data", "example": str(shown)[:60]})

    walk(sample, "data")
    for prop in sorted((workflow.data_schema or {}).get("properties") or {}):
        if not any(row["name"] == f"data.{prop}" or row["name"].startswith(f"data.{prop}.")
                   for row in rows):
            rows.append({"name": f"data.{prop}", "group": "data", "example": ""})
    described = {
        "recipient": ("the person receiving it", RECIPIENT_KEYS),
        "actor": ("who caused it (when the app says)", ("id", "name", "email")),
        "tenant": ("the customer account it is sent for", TENANT_KEYS),
        "workflow": ("this workflow", WORKFLOW_KEYS),
    }
    for root, (_description, keys) in described.items():
        rows.extend({"name": f"{root}.{key}", "group": root, "example": ""} for key in keys)
    rows.append({"name": "steps.<step ref>", "group": "steps",
                 "example": _("what earlier steps recorded: .status, .read… of their "
                              "message, a digest's .events")})
    if (channel or step.type) == "email":
        rows.extend([
            {"name": "preferences_url", "group": "links",
             "example": _("notification settings")},
            {"name": "unsubscribe_url", "group": "links",
             "example": _("one-click unsubscribe")},
        ])
    return rows



def _check_json(step: Step, fields: dict, channel: str) -> dict:
    check = rendering.check_fields(channel, fields, data_schema=step.workflow.data_schema,
                                   sample_data=step.workflow.sample_data)
    return {"errors": [p.as_dict() for p in check.errors],
            "warnings": [p.as_dict() for p in check.warnings]}


def send_test_answer(message) -> JsonResponse:
    """The editor's answer to "send a test": the Message's status, address, provider and admin
    page; 200 when it was sent, 502 (with the reason) when the provider did not take it."""
    ok = message.status == message.Status.SENT
    return JsonResponse({
        "status": message.status, "to": message.to, "provider": message.provider,
        "error": message.error, "message_url": admin_url(message),
        "detail": (_("Sent to %(to)s through %(provider)s.")
                   % {"to": message.to, "provider": message.provider} if ok else
                   _("Not sent (%(status)s): %(error)s")
                   % {"status": message.get_status_display(), "error": message.error}),
    }, status=200 if ok else 502)


def preview(step: Step, fields: dict, *, locale: str, tenant: Tenant | None, user,
            channel: str | None = None) -> dict:
    """The editor's preview of `fields`: each channel rendered with the sample data, plus
    errors and warnings with lines. Never raises for a bad template: errors are the answer.
    `channel`: of a route step, the channel the template is for (default: the step's type)."""
    channel = channel or step.type
    result = {"channel": channel, "rendered": {}, **_check_json(step, fields, channel)}
    if result["errors"]:
        return result
    variables = preview_variables(workflow=step.workflow, tenant=tenant, locale=locale,
                                  recipient={
        "name": user.get_full_name() or user.get_username(), "email": user.email or ""})
    options = rendering.RenderOptions(locale=locale)
    try:
        if channel == "email":
            email = rendering.render_email(fields, variables, layout_for_tenant(
                tenant.pk if tenant else None), options)
            result["rendered"] = {"subject": email.subject, "html": email.html,
                                  "text": email.text}
        else:
            result["rendered"] = rendering.render_fields(channel, fields, variables, options)
    except rendering.TemplateError as exc:
        result["errors"].append(exc.as_dict())
        return result
    if channel == "chat":
        result["chat"] = {"kind": rendering.chat_preview.kind_of_safe(result["rendered"]),
                          "html": rendering.chat_preview.render(result["rendered"])}
    if channel == "sms":
        size = sms_size(result["rendered"].get("text", ""))
        result["sms"] = {"encoding": size.encoding, "characters": size.characters,
                         "segments": size.segments}
    return result


def version_diff(old: TemplateVersion, new: TemplateVersion) -> list[tuple[str, str]]:
    """(field, side-by-side HTML table) for each field that differs between two versions."""
    differ = difflib.HtmlDiff(wrapcolumn=DIFF_WRAP)
    tables = []
    for name in template_fields(old.template.channel_key):
        before, after = old.fields.get(name, ""), new.fields.get(name, "")
        if before == after:
            continue
        tables.append((name, mark_safe(differ.make_table(  # noqa: S308 (HtmlDiff escapes)
            before.splitlines(), after.splitlines(), f"v{old.number}", f"v{new.number}",
            context=False))))
    return tables
