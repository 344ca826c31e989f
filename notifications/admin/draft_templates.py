"""The template editor for a step a workflow's draft adds: the live version has no such step, so
there is no Template row to edit; its templates are written into the draft's document
(workflow_versions.draft_step_template_put) and become rows with the step when the draft is
published. The page is the template editor's: the fields, the live preview and "send a test to
me", rendered with the draft's sample data (templates.py does the rendering)."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _

from clarion.admin import admin_url

from .. import rendering, services
from ..channels import channel_spec, template_fields
from ..models import Step, Tenant, Workflow, WorkflowVersion
from ..workflow_versions import (
    VersionError,
    draft_new_step,
    draft_step_channel,
    draft_step_row,
    draft_step_template_delete,
    draft_step_template_put,
    draft_step_templates,
)
from .template_editor import preview, send_test_answer, variables_panel


def draft_template_url(workflow: Workflow, ref: str, *, channel: str = "",
                       locale: str = "") -> str:
    """The editor of the template (`channel` of a route step, `locale`) of the draft's new step
    `ref`; without `locale`, the page that adds one."""
    query = {name: value for name, value in (("channel", channel), ("locale", locale)) if value}
    url = reverse("admin:notifications_workflow_draft_template", args=[workflow.pk, ref])
    return f"{url}?{urlencode(query)}" if query else url


def _draft_step(model_admin, request, object_id, ref, *, change: bool
                ) -> tuple[Workflow, WorkflowVersion, dict, Step]:
    workflow = get_object_or_404(Workflow, pk=object_id)
    allowed = (model_admin.has_change_permission(request, workflow) if change
               else model_admin.has_view_or_change_permission(request, workflow))
    if not allowed:
        raise PermissionDenied
    draft, step = draft_new_step(workflow, ref)  # raises VersionError
    return workflow, draft, step, draft_step_row(workflow, draft, step)


def _posted_fields(request, channel: str) -> dict:
    """The posted Liquid of each field of `channel`, as typed except for CRLF line ends."""
    return {name: request.POST[name].replace("\r\n", "\n") for name in template_fields(channel)
            if request.POST.get(name)}


def _posted_tenant(request) -> Tenant | None:
    raw = request.POST.get("preview_tenant", "")
    return Tenant.objects.filter(pk=raw).first() if raw.isdigit() else None


def _json_error(exc: VersionError, status: int) -> JsonResponse:
    """A refusal as the admin's JSON endpoints answer it: the field at fault named."""
    return JsonResponse({"error": "invalid_request", "detail": exc.message,
                         "fields": {exc.field or "template": [exc.message]}}, status=status)


def draft_template_view(model_admin, request, object_id, ref):
    """GET: the editor of one template of the draft's new step `ref` (`?channel=` of a route
    step, `?locale=`; without a locale, a new one). POST: save it into the draft."""
    try:
        workflow, draft, step, row = _draft_step(model_admin, request, object_id, ref,
                                                 change=request.method == "POST")
    except VersionError as exc:
        raise Http404(exc.message) from exc
    can_edit = model_admin.has_change_permission(request, workflow)
    asked = request.POST.get("channel", request.GET.get("channel", ""))
    try:
        channel = draft_step_channel(step, asked)
    except VersionError as exc:
        if step["type"] != "route" or asked:
            raise Http404(exc.message) from exc
        channel = ""  # a route step: the page asks which of its channels
    templates = draft_step_templates(step, asked) if channel else {}
    locale = request.GET.get("locale", "")
    if locale and locale not in templates:
        raise Http404(_("The draft's step “%(ref)s” has no %(locale)s template.")
                      % {"ref": ref, "locale": locale})
    values, errors, status = dict(templates.get(locale) or {}), {}, 200
    if request.method == "POST" and "_delete" in request.POST and locale:
        draft_step_template_delete(workflow=workflow, step_ref=ref, channel=asked,
                                   locale=locale, user=request.user)
        model_admin.log_change(request, workflow, _(
            "Took the %(locale)s template of the draft's new step %(ref)s out of the draft.")
            % {"locale": locale, "ref": ref})
        messages.success(request, _("The %(locale)s template of “%(ref)s” is no longer in the "
                                    "draft.") % {"locale": locale, "ref": ref})
        return HttpResponseRedirect(draft_template_url(
            workflow, ref, channel=asked if step["type"] == "route" else ""))
    if request.method == "POST":
        adding = not locale
        locale = locale or request.POST.get("locale", "").strip()
        values = _posted_fields(request, channel)
        try:
            if adding and locale in templates:  # the add page never overwrites one
                raise VersionError("locale", _(
                    "The draft has a %(locale)s template of this step already: open it from "
                    "the list above to change it.") % {"locale": locale}, "locale")
            draft_step_template_put(workflow=workflow, step_ref=ref, channel=asked,
                                    locale=locale, fields=values, user=request.user)
        except VersionError as exc:
            errors[exc.field or "template"] = exc.message
            status = 400
        else:
            model_admin.log_change(request, workflow, _(
                "Wrote the %(locale)s template of the draft's new step %(ref)s.")
                % {"locale": locale, "ref": ref})
            messages.success(request, format_html(
                '{} <a href="{}">{}</a>',
                _("Saved in the draft (version %(n)s): the %(locale)s template of “%(ref)s” is "
                  "published with the step.") % {"n": draft.number, "locale": locale,
                                                  "ref": ref},
                reverse("admin:notifications_workflow_version",
                        args=[workflow.pk, draft.number]),
                _("Review the workflow's draft")))
            return HttpResponseRedirect(draft_template_url(
                workflow, ref, channel=asked if step["type"] == "route" else "",
                locale=locale))
    route_channels = ([(c, draft_template_url(workflow, ref, channel=c))
                       for c in (step.get("config") or {}).get("channels") or []]
                      if step["type"] == "route" and not channel else [])
    title = " · ".join(part for part in (ref, asked if step["type"] == "route" else "",
                                         locale) if part)
    check = (rendering.check_fields(channel, values, data_schema=row.workflow.data_schema,
                                    sample_data=row.workflow.sample_data)
             if channel and values and not errors else None)
    return TemplateResponse(request, "admin/notifications/workflow/draft_template.html", {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "original": workflow, "draft": draft, "step": step,
        "title": _("Draft template %(name)s") % {"name": title} if locale else
        _("Add a template to the draft's step %(ref)s") % {"ref": ref},
        "locale": locale, "new": not templates.get(locale),
        "default_locale": row.workflow.default_locale,
        "fields": [{"name": name, "value": values.get(name, ""), "error": errors.get(name),
                    "rows": 14 if name == "html" else 3} for name in template_fields(channel)],
        "errors": errors, "channel_label": channel_spec(channel).label if channel else "",
        "warnings": check.warnings if check else [],
        "route_channels": route_channels, "can_edit": can_edit,
        "workflow_url": admin_url(workflow),
        "draft_url": reverse("admin:notifications_workflow_version",
                             args=[workflow.pk, draft.number]),
        "locales": [(name, draft_template_url(workflow, ref, channel=asked, locale=name))
                    for name in sorted(templates)],
        # the template editor's panel (template/preview_panel.html)
        "clarion_step": row, "clarion_channel": channel, "clarion_locale": locale,
        "clarion_variables": variables_panel(row, channel) if channel else [],
        "clarion_filters": sorted(rendering.LOCALE_FILTERS),
        "clarion_tenants": Tenant.objects.order_by("key").only("pk", "key", "name"),
        "clarion_preview_url": reverse("admin:notifications_workflow_draft_template_preview",
                                       args=[workflow.pk, ref]),
        "clarion_send_test_url": (
            reverse("admin:notifications_workflow_draft_template_send_test",
                    args=[workflow.pk, ref]) if can_edit and channel == "email" else ""),
    }, status=status)


def draft_template_preview_view(model_admin, request, object_id, ref):
    """POST the editor's fields (and `channel`, `locale`, `preview_tenant`): the JSON preview
    of templates.preview, rendered with the draft's sample data. 400 JSON naming the field
    for a channel the step does not have."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        _workflow, _draft, step, row = _draft_step(model_admin, request, object_id, ref,
                                                   change=False)
        channel = draft_step_channel(step, request.POST.get("channel", ""))
    except VersionError as exc:
        return _json_error(exc, 400 if exc.code == "channel" else 404)
    locale = request.POST.get("locale") or row.workflow.default_locale
    return JsonResponse(preview(row, _posted_fields(request, channel), locale=locale,
                                tenant=_posted_tenant(request), user=request.user,
                                channel=channel))


def draft_template_send_test_view(model_admin, request, object_id, ref):
    """POST the editor's fields (email steps): send them, rendered with the draft's sample
    data, to the user's own address (services.email_send_test)."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        _workflow, _draft, step, row = _draft_step(model_admin, request, object_id, ref,
                                                   change=True)
    except VersionError as exc:
        return _json_error(exc, 404)
    locale = request.POST.get("locale") or row.workflow.default_locale
    try:
        message = services.email_send_test(
            step=row, locale=locale, fields=_posted_fields(request, row.type), user=request.user,
            tenant=_posted_tenant(request), detail={"draft_step": ref})
    except services.SendTestError as exc:
        return JsonResponse({"error": "test_send_failed", "detail": str(exc)}, status=400)
    return send_test_answer(message)
