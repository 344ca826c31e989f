"""A workflow's versions in the admin: the list (with "roll back to this"), and a version's page,
which shows the whole workflow side by side with the live version (settings, every step and
every template) and, for the open draft, the review actions: submit for review (Editors),
approve and publish or ask for changes (Publishers), discard.

The rules (who may publish what) are notifications/workflow_versions.py's; publishing itself is
notifications/publishing.py's. These views only ask and answer."""

import difflib
import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from clarion.admin import admin_url

from .. import publishing
from ..models import Workflow, WorkflowVersion
from ..workflow_versions import (
    VersionError,
    document_steps,
    draft_discard,
    draft_document,
    draft_of,
    draft_request_changes,
    draft_submit,
    publish_refusal,
    review_required,
    workflow_document,
)
from .builder.diagram import branch_condition, conditions_note, unless_note

DIFF_WRAP = 70
SETTINGS = ("name", "category", "critical", "active", "default_locale")
State = WorkflowVersion.State


# --- The whole workflow as sections of text, side by side ---------------------------------------

def _json(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def document_sections(document: dict | None) -> dict[str, str]:
    """A version's document as readable sections, in the workflow's order: its settings, its
    data, the steps (nested ones indented under their branch), then each template
    ("Template mail · en", a route's "Template ask · sms · fr") field by field."""
    if not document:
        return {}
    sections = {
        _("Workflow settings"): "\n".join(f"{name}: {_json(document.get(name))}"
                                         for name in SETTINGS),
        _("Data schema and sample data"): (
            f"data_schema: {_json(document.get('data_schema'))}\n"
            f"sample_data: {_json(document.get('sample_data') or {})}"),
        _("Steps"): "\n".join(_step_lines(document.get("steps") or [], "")),
    }
    for step in document_steps(document.get("steps") or []):
        templates = step.get("templates") or {}
        if step["type"] == "route":
            items = [((channel, locale), fields) for channel, by_locale in templates.items()
                     for locale, fields in by_locale.items()]
        else:
            items = [((locale,), fields) for locale, fields in templates.items()]
        for where, fields in sorted(items):
            title = _("Template %(name)s") % {"name": " · ".join((step["ref"], *where))}
            sections[title] = "\n".join(
                f"── {name} ──\n{value}" for name, value in sorted((fields or {}).items()))
    return sections


def _step_lines(steps: list, indent: str):
    """Each step on its lines: its config as JSON; what decides whether it runs (conditions,
    `unless`, a branch's conditions) in the flow diagram's words."""
    for number, step in enumerate(steps, start=1):
        yield f"{indent}{number}. {step['ref']} ({step['type']})"
        if step.get("config"):
            yield f"{indent}   config: {_compact(step['config'])}"
        for note in (conditions_note(step.get("conditions")), unless_note(step.get("unless"))):
            if note:
                yield f"{indent}   {note}"
        for name in ("send_window", "urgent"):
            if step.get(name):
                yield f"{indent}   {name}: {_compact(step[name])}"
        for branch in step.get("branches") or []:
            conditions = branch.get("conditions")
            yield f"{indent}   " + _("branch %(name)s") % {"name": branch["name"]} + (
                f" {branch_condition(conditions)}" if conditions else "")
            yield from _step_lines(branch.get("steps") or [], indent + "      ")
        if step.get("default"):
            yield f"{indent}   " + _("otherwise")
            yield from _step_lines(step["default"].get("steps") or [], indent + "      ")


def document_diff(old: dict | None, new: dict | None, old_label: str,
                  new_label: str) -> tuple[list[tuple[str, str, str]], list[str]]:
    """([(section, "changed" | "added" | "removed", side-by-side HTML table)], [unchanged
    section titles]) between two documents: each section whole, old on the left."""
    before, after = document_sections(old), document_sections(new)
    titles = list(before) + [title for title in after if title not in before]
    differ = difflib.HtmlDiff(wrapcolumn=DIFF_WRAP)
    changed, same = [], []
    for title in titles:
        a, b = before.get(title), after.get(title)
        if a == b:
            same.append(title)
            continue
        kind = "added" if a is None else "removed" if b is None else "changed"
        table = differ.make_table((a or "").splitlines(), (b or "").splitlines(), old_label,
                                  new_label, context=False)
        changed.append((title, kind, mark_safe(table)))  # noqa: S308 (HtmlDiff escapes)
    return changed, same


# --- Views ----------------------------------------------------------------------------------------

def _workflow(model_admin, request, object_id) -> Workflow:
    workflow = get_object_or_404(Workflow, pk=object_id)
    if not model_admin.has_view_or_change_permission(request, workflow):
        raise PermissionDenied
    return workflow


def can_publish(request) -> bool:
    return request.user.has_perm("notifications.publish_workflow")


def versions_url(workflow: Workflow) -> str:
    return reverse("admin:notifications_workflow_versions", args=[workflow.pk])


def version_url(version: WorkflowVersion) -> str:
    return reverse("admin:notifications_workflow_version",
                   args=[version.workflow_id, version.number])


def versions_view(model_admin, request, object_id):
    """Every version of the workflow, newest first, with what it was and who did what."""
    workflow = _workflow(model_admin, request, object_id)
    versions = (workflow.versions.select_related("author", "published_by", "approved_by",
                                                 "submitted_by").order_by("-number"))
    return TemplateResponse(request, "admin/notifications/workflow/versions.html", {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "original": workflow, "title": _("Versions of %(key)s") % {"key": workflow.key},
        "versions": versions, "draft": draft_of(workflow),
        "can_rollback": can_publish(request) and model_admin.has_change_permission(
            request, workflow),
        "workflow_url": admin_url(workflow),
    })


def version_view(model_admin, request, object_id, number):
    """One version beside the live one; for the open draft, the review and publish actions."""
    workflow = _workflow(model_admin, request, object_id)
    version = workflow.versions.filter(number=number).select_related(
        "author", "submitted_by", "approved_by", "published_by").first()
    if version is None:
        raise Http404(_("No version %(number)s of this workflow.") % {"number": number})
    live = workflow.published_version
    live_document = workflow_document(workflow) if live is not None else None
    document = draft_document(version) if version.is_open else version.document
    live_label = (_("Live: version %(number)s") % {"number": live.number} if live
                  else _("Nothing published"))
    label = (_("Draft: version %(number)s") if version.is_open else _("Version %(number)s")) % {
        "number": version.number}
    changed, same = document_diff(live_document, document, live_label, label)
    may_change = model_admin.has_change_permission(request, workflow)
    may_publish = can_publish(request) and may_change
    refusal = publish_refusal(version, request.user) if version.is_open else None
    return TemplateResponse(request, "admin/notifications/workflow/version.html", {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "original": workflow, "version": version, "live": live,
        "title": _("%(key)s: version %(number)s") % {"key": workflow.key,
                                                     "number": version.number},
        "changed": changed, "same": same, "live_label": live_label, "label": label,
        "authors": list(version.authors.all()), "review_required": review_required(),
        "stale": (version.is_open and live is not None and version.base_number is not None
                  and version.base_number != live.number),
        "can_submit": may_change and version.state == State.DRAFT,
        "can_publish": may_publish and version.is_open and refusal is None,
        "publish_refusal": refusal if may_publish else None,
        "can_request_changes": may_publish and version.state == State.IN_REVIEW,
        "can_discard": may_change and version.is_open and live is not None,
        "can_rollback": (may_publish and version.state == State.SUPERSEDED),
        "workflow_url": admin_url(workflow), "versions_url": versions_url(workflow),
        "action_url": reverse("admin:notifications_workflow_version_action",
                              args=[workflow.pk, version.number]),
    })


def version_action_view(model_admin, request, object_id, number):
    """POST `action`: submit, publish, request_changes (with `review_note`), discard or
    rollback. Each is checked against the person's role and the version's state."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    workflow = _workflow(model_admin, request, object_id)
    version = get_object_or_404(WorkflowVersion, workflow=workflow, number=number)
    action = request.POST.get("action", "")
    if not model_admin.has_change_permission(request, workflow):
        raise PermissionDenied
    if action in ("publish", "request_changes", "rollback") and not can_publish(request):
        raise PermissionDenied
    try:
        if action == "submit":
            draft_submit(version=version, user=request.user)
            model_admin.log_change(request, workflow, _("Submitted version %(n)s for review.")
                                   % {"n": version.number})
            messages.success(request, _("Version %(n)s is waiting for a Publisher's review.")
                             % {"n": version.number})
        elif action == "publish":
            published = publishing.workflow_version_publish(version=version, user=request.user)
            model_admin.log_change(request, workflow, _("Published version %(n)s.")
                                   % {"n": published.number})
            messages.success(request, _("Published version %(n)s: it runs from now on.")
                             % {"n": published.number})
            return HttpResponseRedirect(version_url(published))
        elif action == "request_changes":
            draft_request_changes(version=version, user=request.user,
                                  note=request.POST.get("review_note", ""))
            model_admin.log_change(request, workflow, _("Asked for changes to version %(n)s.")
                                   % {"n": version.number})
            messages.success(request, _("Version %(n)s went back to its authors.")
                             % {"n": version.number})
        elif action == "discard":
            draft_discard(version=version)
            model_admin.log_change(request, workflow, _("Discarded the draft version %(n)s.")
                                   % {"n": version.number})
            messages.success(request, _("The draft was discarded; the live version is "
                                        "unchanged."))
            return HttpResponseRedirect(versions_url(workflow))
        elif action == "rollback":
            published = publishing.workflow_version_rollback(version=version, user=request.user)
            model_admin.log_change(request, workflow,
                                   _("Rolled back to version %(old)s as version %(n)s.")
                                   % {"old": version.number, "n": published.number})
            messages.success(request, _("Version %(old)s is live again, as version %(n)s.")
                             % {"old": version.number, "n": published.number})
            return HttpResponseRedirect(version_url(published))
        else:
            messages.error(request, _("Unknown action."))
    except VersionError as exc:
        messages.error(request, exc.message)
    return HttpResponseRedirect(version_url(version))


def draft_redirect_view(model_admin, request, object_id):
    """The open draft's page, or the versions list when there is none."""
    workflow = _workflow(model_admin, request, object_id)
    draft = draft_of(workflow)
    return HttpResponseRedirect(version_url(draft) if draft else versions_url(workflow))
