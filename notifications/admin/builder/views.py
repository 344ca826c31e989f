"""The workflow page: the builder's form is read into the `PUT workflows/{key}` body, checked by
the API's own `WorkflowSerializer` and saved by `services.workflow_put`; a saved workflow is
shown from `selectors.workflow_export` (its GET body). So the API's JSON and the builder are one
representation. JSON export and import stay for engineers."""

import json
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from clarion.admin import admin_url
from clarion.parsers import loads_storable

from ... import engine, publishing, selectors, services
from ...api.serializers import WorkflowSerializer
from ...models import Template, Workflow, WorkflowVersion, key_validator
from ...workflow_json import BranchSpec, StepSpec
from ...workflow_versions import (
    VersionError,
    draft_create_unpublished,
    draft_of,
    review_required,
)
from ..draft_templates import draft_template_url
from . import diagram, render
from .convert import (
    BRANCH_INDEX,
    NEW_TEMPLATES,
    ORIGINAL,
    error_paths,
    error_target,
    form_tree,
    steps_from_form,
    strip_originals,
    text,
)
from .declarations import Problems, addable_kinds, kind_for
from .schema import infer_rows, rows_from_form, rows_from_schema, schema_from_rows

SETTINGS = ("name", "category", "critical", "active", "default_locale")


@dataclass
class BuilderState:
    """What the page shows: the workflow's settings, steps (API JSON) and data fields."""

    key: str = ""
    settings: dict = field(default_factory=lambda: {
        "name": "", "category": "", "critical": False, "active": True, "default_locale": "en"})
    steps: list = field(default_factory=list)  # the API's JSON, each with its saved ref
    rows: list | None = field(default_factory=list)  # data fields; None: raw_schema is kept
    raw_schema: dict | None = None
    check_data: bool = False  # the rows are the data schema triggers are checked against
    sample_json: str = ""


def state_from_workflow(workflow: Workflow) -> BuilderState:
    """The page's state for a saved workflow, from its API JSON."""
    exported = selectors.workflow_export(workflow)
    rows = rows_from_schema(exported["data_schema"], workflow.sample_data)
    return BuilderState(
        key=workflow.key, settings={name: exported[name] for name in SETTINGS},
        steps=mark_originals(exported["steps"]),
        rows=rows, raw_schema=exported["data_schema"] if rows is None else None,
        check_data=bool(exported["data_schema"]),
        sample_json=json.dumps(workflow.sample_data, indent=2, ensure_ascii=False))


def mark_originals(steps: list) -> list:
    """Saved steps, each (nested ones too) knowing its saved ref under ORIGINAL."""
    for step in all_steps(steps):
        step[ORIGINAL] = step["ref"]
    return steps


def all_steps(steps: list):
    """Every step of `steps`, nested steps (branches, default) after their parent."""
    for step in steps:
        if not isinstance(step, dict):
            continue
        yield step
        for branch in step.get("branches") or []:
            if isinstance(branch, dict):
                yield from all_steps(branch.get("steps") or [])
        if isinstance(step.get("default"), dict):
            yield from all_steps(step["default"].get("steps") or [])


def state_from_form(post, problems: Problems) -> BuilderState:
    """The page's state from the posted builder form; conversion errors go to `problems`."""
    tree = form_tree(post)
    state = BuilderState(key=text(tree, "key"))
    state.settings = {"name": text(tree, "name"), "category": text(tree, "category"),
                      "critical": bool(text(tree, "critical")),
                      "active": bool(text(tree, "active")),
                      "default_locale": text(tree, "default_locale") or "en"}
    state.steps = steps_from_form(tree.get("steps"), "steps-", problems)
    raw = text(tree, "data_schema_json")
    if raw:
        state.rows, state.raw_schema = None, json.loads(raw)
    else:
        state.rows = rows_from_form(tree.get("fields"))
    state.check_data = bool(text(tree, "check_data"))
    state.sample_json = tree.get("sample_json", "") if isinstance(tree.get("sample_json"),
                                                                  str) else ""
    return state


def api_body(state: BuilderState, problems: Problems) -> tuple[dict, dict | None]:
    """(the PUT body, the sample data to save or None) of the page's state."""
    if state.rows is None:
        schema, sample = state.raw_schema, None
    else:
        schema, sample = schema_from_rows(state.rows, problems)
        if not state.check_data:
            schema = None
    return {**state.settings, "data_schema": schema,
            "steps": strip_originals(state.steps)}, sample


def serializer_problems(errors, state: BuilderState, problems: Problems) -> None:
    """The API's 400 `fields`, each put next to the builder field it is about."""
    for path, message in error_paths(errors):
        if path == "data_schema":
            problems.add("fields", message)
            continue
        name, message = error_target(path, state.steps, message)
        problems.add(name, message)
        if name == "steps" and message.startswith("Step refs must be unique"):
            for ref, field_name in step_ref_fields(state.steps, "steps-"):
                if sum(1 for other, _ in step_ref_fields(state.steps, "steps-")
                       if other == ref) > 1:
                    problems.add(field_name, _("Another step is %(ref)r too.") % {"ref": ref})


def step_ref_fields(steps: list, prefix: str):
    """(ref, its form field name) of every step, nested ones included."""
    for index, step in enumerate(steps):
        yield step.get("ref"), f"{prefix}{index}-ref"
        for number, branch in enumerate(step.get("branches") or []):
            yield from step_ref_fields(
                branch.get("steps") or [],
                f"{prefix}{index}-branches-{branch.get(BRANCH_INDEX, number)}-steps-")
        if isinstance(step.get("default"), dict):
            yield from step_ref_fields(step["default"].get("steps") or [],
                                       f"{prefix}{index}-default-steps-")


def flatten(value) -> list[str]:
    return [f"{path}: {message}" if path else message for path, message in error_paths(value)]


def saved_templates(step) -> dict:
    """A saved step's published templates as its JSON has them: {locale: fields}, or a route
    step's {channel: {locale: fields}}."""
    templates: dict = {}
    for template in step.templates.all():
        if not template.published_version_id:
            continue
        if template.channel:
            templates.setdefault(template.channel, {})[template.locale] = template.fields
        else:
            templates[template.locale] = template.fields
    return templates


def attach_route_templates(body_steps: list, state_steps: list, saved: dict,
                           locale: str) -> None:
    """Give each route step of the PUT body its templates, which the API requires (one per
    channel): its saved step's, and those written in the builder for channels without one."""
    for step, state_step in zip(body_steps, state_steps, strict=True):
        if step.get("type") == "route":
            source = saved.get(state_step.get(ORIGINAL))
            templates = saved_templates(source) if source is not None \
                and source.type == "route" else {}
            for channel, fields in (state_step.get(NEW_TEMPLATES) or {}).items():
                templates.setdefault(channel, {locale: fields})
            step["templates"] = templates
        for branch, state_branch in zip(step.get("branches") or [],
                                        state_step.get("branches") or [], strict=False):
            attach_route_templates(branch.get("steps") or [], state_branch.get("steps") or [],
                                   saved, locale)
        if isinstance(step.get("default"), dict):
            attach_route_templates(step["default"].get("steps") or [],
                                   (state_step.get("default") or {}).get("steps") or [],
                                   saved, locale)


def step_specs(steps: list, state_steps: list, saved: dict, prefix: str,
               problems: Problems) -> list[StepSpec]:
    """The validated `steps` as the service takes them, read beside the builder's
    `state_steps` (same order) for each one's saved ref. A saved step keeps its templates; a
    step duplicated or renamed from a saved one gets copies of that step's published
    templates; a ref reused by a step of another type must not take that step's templates."""
    specs = []
    for index, (step, state_step) in enumerate(zip(steps, state_steps, strict=True)):
        existing, templates = saved.get(step["ref"]), None
        if existing is not None and existing.type != step["type"]:
            if existing.templates.exists():
                problems.add(f"{prefix}{index}-ref",
                             _("A %(type)s step named %(ref)r has templates: choose another "
                               "ref.") % {"type": existing.get_type_display(),
                                          "ref": step["ref"]})
            templates = {}
        elif existing is None:
            source = saved.get(state_step.get(ORIGINAL))
            templates = saved_templates(source) if source is not None \
                and source.type == step["type"] else {}
            if step["type"] == "route":
                templates = step["templates"]
        elif step["type"] == "route" and state_step.get(NEW_TEMPLATES):
            templates = step["templates"]  # the saved ones and those written here
        spec = StepSpec.from_json({**step, "branches": [], "default": None})
        spec.templates = templates
        for number, (branch, state_branch) in enumerate(zip(
                step.get("branches") or [], state_step.get("branches") or [], strict=True)):
            spec.branches.append(BranchSpec(
                name=branch["name"], conditions=branch.get("conditions") or None,
                steps=step_specs(branch.get("steps") or [], state_branch.get("steps") or [],
                                 saved, f"{prefix}{index}-branches-{number}-steps-",
                                 problems)))
        if step.get("default"):
            spec.default = step_specs(step["default"].get("steps") or [],
                                      (state_step.get("default") or {}).get("steps") or [],
                                      saved, f"{prefix}{index}-default-steps-", problems)
        specs.append(spec)
    return specs


def save(state: BuilderState, workflow: Workflow | None, user,
         problems: Problems) -> tuple[Workflow | None, WorkflowVersion | None]:
    """Validate the page's state as the API does and save it into the workflow's draft:
    (the workflow, its draft), or (None, None) and `problems`. The draft is None when the
    page says what the live version says. A new workflow's rows are its first draft
    (workflow_versions.py); a published workflow's rows stay as they are."""
    if workflow is None:
        if not key_validator.regex.match(state.key):
            problems.add("key", key_validator.message)
        elif Workflow.objects.filter(key=state.key).exists():
            problems.add("key", _("A workflow with the key %(key)r exists.") % {"key": state.key})
    body, sample = api_body(state, problems)

    def write(rows: Workflow | None) -> Workflow | None:
        """The rows (the draft's, in a savepoint, for a published workflow) made as the page
        says, through services.workflow_put; None when the API's checks refuse it."""
        saved_steps = {step.ref: step for step in rows.steps.prefetch_related(
            "templates__published_version")} if rows else {}
        attach_route_templates(body["steps"], state.steps, saved_steps,
                               state.settings["default_locale"])
        serializer = WorkflowSerializer(data=body)
        if not serializer.is_valid():
            serializer_problems(serializer.errors, state, problems)
        if problems:
            return None
        data = dict(serializer.validated_data)
        specs = step_specs(data.pop("steps"), state.steps, saved_steps, "steps-", problems)
        if problems:
            return None
        saved, _ = services.workflow_put(key=rows.key if rows else state.key, steps=specs,
                                         author=user, sample_data=sample, source=None, **data)
        return saved

    if workflow is None:
        if problems:
            return None, None
        with transaction.atomic():
            saved = write(None)
            if saved is None:
                return None, None
            return saved, draft_create_unpublished(workflow=saved, user=user)
    done, draft = publishing.draft_edit(workflow=workflow, user=user, change=write)
    return (workflow if done else None), draft


# --- Templates' status ------------------------------------------------------------------------

@dataclass
class LiveRows:
    """What the live rows are, read before a draft is applied in a savepoint: the steps' pks and
    each template's published version number (by template pk)."""

    steps: set = field(default_factory=set)
    templates: dict = field(default_factory=dict)

    @classmethod
    def of(cls, workflow: Workflow) -> "LiveRows":
        templates = Template.objects.filter(step__workflow=workflow)
        return cls(steps=set(workflow.steps.values_list("pk", flat=True)),
                   templates=dict(templates.values_list("pk", "published_version__number")))


def templates_status(workflow: Workflow | None,
                     live: LiveRows | None = None) -> dict[str, SafeString]:
    """For each saved channel step (by ref): its templates, one per locale, with their
    published and draft versions and a link to edit each. `live`: the rows are a draft applied
    in a savepoint; links go only to rows that stay, and a template the draft changed says so."""
    if workflow is None:
        return {}
    status = {}
    steps = workflow.steps.prefetch_related("templates__published_version",
                                            "templates__versions")
    for step in steps:
        kind = kind_for(step.type)
        if kind is None or not kind.has_templates:
            continue
        new_step = live is not None and step.pk not in live.steps
        rows = []
        for template in sorted(step.templates.all(), key=lambda t: (t.channel, t.locale)):
            latest = max((v.number for v in template.versions.all()), default=0)
            published = template.published_version.number if template.published_version else 0
            name = f"{template.channel} {template.locale}".strip()
            if new_step:  # kept in the draft's document: its own editor writes them there
                rows.append((draft_template_url(workflow, step.ref, channel=template.channel,
                                                locale=template.locale), name,
                             _("new in this draft")))
                continue
            if live is not None and template.pk not in live.templates:
                rows.append(("", name, _("new in this draft")))
                continue
            if live is not None and published != (live.templates[template.pk] or 0):
                words = _("changed in this draft")
            else:
                words = (_("v%(number)s published") % {"number": published} if published
                         else _("not published"))
                if latest > published:
                    words = _("%(published)s, v%(number)s draft") % {"published": words,
                                                                     "number": latest}
            rows.append((admin_url(template), name, words))
        if new_step:
            add = format_html('<a href="{}">{}</a> <span class="wb-help">{}</span>',
                              draft_template_url(workflow, step.ref), _("Add a template"),
                              _("The step is new in this draft: its templates are published "
                                "with it."))
        else:
            add = format_html('<a href="{}?step={}">{}</a>',
                              reverse("admin:notifications_template_add"), step.pk,
                              _("Add a template"))
        missing = ("" if any(t.locale == workflow.default_locale for t in step.templates.all())
                   else format_html(' <span class="wb-warn">{}</span>',
                                    _("No template in the default locale (%(locale)s).")
                                    % {"locale": workflow.default_locale}))
        status[("channels", step.ref)] = {t.channel for t in step.templates.all()}
        status[step.ref] = format_html(
            '<div class="wb-templates"><strong>{}</strong>{}<ul>{}</ul>{}</div>', _("Templates"),
            missing,
            format_html_join("", "<li>{}: {}</li>", (
                (format_html('<a href="{}">{}</a>', url, name) if url else name, words)
                for url, name, words in rows)), add)
    return status


# --- The views --------------------------------------------------------------------------------

def builder_view(model_admin, request, object_id=None):
    """The workflow's change page (or the add page without `object_id`)."""
    workflow = None
    if object_id is not None:
        if not str(object_id).isdigit():  # e.g. a relative URL resolved against the page's
            raise Http404(_("No workflow %(id)s.") % {"id": object_id})
        workflow = get_object_or_404(Workflow, pk=object_id)
        if not model_admin.has_view_or_change_permission(request, workflow):
            raise PermissionDenied
        can_save = model_admin.has_change_permission(request, workflow)
    else:
        if not model_admin.has_add_permission(request):
            raise PermissionDenied
        can_save = True
    problems = Problems()
    templates = None
    if request.method == "POST":
        if not can_save:
            raise PermissionDenied
        state = state_from_form(request.POST, problems)
        if "_infer" in request.POST:
            problems = Problems()
            infer(state, problems)
        else:
            saved, draft = save(state, workflow, request.user, problems)
            if saved is not None:
                return saved_response(model_admin, request, saved, created=workflow is None,
                                      draft=draft)
            messages.error(request, _("Please correct the errors below: nothing was saved."))
    elif workflow is not None:
        live = LiveRows.of(workflow)
        state, templates = publishing.draft_read(workflow, lambda rows: (
            state_from_workflow(rows),
            templates_status(rows, live if rows is not workflow else None)))
    else:
        state = BuilderState()
    if templates is None and workflow is not None:
        live = LiveRows.of(workflow)
        templates = publishing.draft_read(workflow, lambda rows: templates_status(
            rows, live if rows is not workflow else None))
    return TemplateResponse(request, "admin/notifications/workflow/builder.html",
                            context(model_admin, request, workflow, state, problems, can_save,
                                    templates or {}))


def may_publish_directly(request, workflow: Workflow | None) -> bool:
    """Whether the builder's "Save and publish" is offered: to a Publisher, when no review is
    required (CLARION["REQUIRE_REVIEW"])."""
    return (request.user.has_perm("notifications.publish_workflow")
            and not review_required())


def infer(state: BuilderState, problems: Problems) -> None:
    """Replace the data fields by those of the pasted sample data (keeping `required` marks)."""
    try:
        sample = json.loads(state.sample_json or "{}")
    except ValueError as exc:
        problems.add("sample_json", _("Not JSON: %(error)s.") % {"error": exc})
        return
    if not isinstance(sample, dict):
        problems.add("sample_json", _('Expected a JSON object like the trigger\'s data, e.g. '
                                      '{"order": {"id": "A-1"}}.'))
        return
    required = {row["name"] for row in state.rows or [] if row["required"]}
    state.rows, state.raw_schema = infer_rows(sample), None
    for row in state.rows:
        row["required"] = row["name"] in required


def saved_response(model_admin, request, workflow: Workflow, *, created: bool,
                   draft: WorkflowVersion | None = None):
    """After a save: published at once ("Save and publish", by a Publisher when no review is
    required), or kept as the draft; then back to the list, or to the page."""
    if created:
        model_admin.log_addition(request, workflow, [{"added": {}}])
    else:
        model_admin.log_change(request, workflow, [{"changed": {"fields": ["steps"]}}])
    messages.success(request, format_html(_("The workflow “{}” was saved."), workflow.key))
    if draft is not None and "_save_draft" not in request.POST \
            and may_publish_directly(request, workflow):
        try:
            published = publishing.workflow_version_publish(version=draft, user=request.user)
        except VersionError as exc:
            messages.warning(request, exc.message)
        else:
            messages.info(request, _("Published as version %(n)s.") % {"n": published.number})
            draft = None
    if draft is not None:
        messages.info(request, format_html(
            '{} <a href="{}">{}</a>',
            _("Saved in the draft (version %(n)s); the live version keeps running until the "
              "draft is published.") % {"n": draft.number},
            reverse("admin:notifications_workflow_version", args=[workflow.pk, draft.number]),
            _("Review the draft")))
    elif not created and "_save_draft" in request.POST:
        messages.info(request, _("Nothing differs from the live version."))
    if "_continue" in request.POST or "_save_draft" in request.POST:
        return HttpResponseRedirect(admin_url(workflow))
    return HttpResponseRedirect(reverse("admin:notifications_workflow_changelist"))


def context(model_admin, request, workflow, state: BuilderState, problems: Problems,
            can_save: bool, templates: dict) -> dict:
    opts = model_admin.model._meta
    kinds = addable_kinds(engine.SUPPORTED_STEP_TYPES)
    draft = draft_of(workflow) if workflow else None
    return {
        **model_admin.admin_site.each_context(request),
        "draft": draft, "live": workflow.published_version if workflow else None,
        "can_publish_directly": may_publish_directly(request, workflow),
        "versions_url": (reverse("admin:notifications_workflow_versions", args=[workflow.pk])
                         if workflow else ""),
        "draft_url": (reverse("admin:notifications_workflow_version",
                              args=[workflow.pk, draft.number]) if draft else ""),
        "opts": opts, "original": workflow, "state": state, "problems": problems.by_name,
        "title": (_("Workflow %(key)s") % {"key": workflow.key} if workflow
                  else _("Add workflow")),
        "can_save": can_save, "kinds": kinds,
        "steps_html": render.steps_html(state.steps, "steps", problems,
                                        templates=templates, kinds=kinds),
        "new_templates": render.new_step_templates(kinds),
        "data_fields_html": (render.data_fields_html(state.rows, problems)
                             if state.rows is not None else ""),
        "raw_schema_json": (json.dumps(state.raw_schema, indent=2, ensure_ascii=False)
                            if state.rows is None else ""),
        "diagram": diagram.flow_html(state.steps,
                                     start=trigger_label(state.key)),
        "step_errors": problems.get("steps"), "all_errors": problems.get("__all__"),
        "field_errors": {name: problems.get(name) for name in (
            "key", *SETTINGS, "fields", "sample_json")},
        "channel_refs": [step.get("ref") for step in all_steps(state.steps)
                         if getattr(kind_for(step.get("type", "")), "channel", False)],
        "export_url": (reverse("admin:notifications_workflow_export", args=[workflow.pk])
                       if workflow else ""),
        "import_url": reverse("admin:notifications_workflow_import"),
        "has_delete_permission": workflow is not None
                                 and model_admin.has_delete_permission(request, workflow),
    }


def trigger_label(key: str | None) -> str:
    """The diagram's first node: what starts the workflow `key` (none yet: unnamed)."""
    return (_("Trigger %(key)s") % {"key": key}) if key else _("Trigger this workflow")


def diagram_view(model_admin, request):
    """The flow diagram of the builder's form as posted (unsaved), for the page to redraw it
    as the steps change."""
    if request.method != "POST" or not model_admin.has_view_or_change_permission(request):
        raise PermissionDenied
    state = state_from_form(request.POST, Problems())
    return HttpResponse(diagram.flow_html(state.steps,
                                          start=trigger_label(state.key)))


def export_view(model_admin, request, object_id):
    """The workflow's API JSON as a download (`GET workflows/{key}`)."""
    workflow = get_object_or_404(Workflow, pk=object_id)
    if not model_admin.has_view_or_change_permission(request, workflow):
        raise PermissionDenied
    body = json.dumps(selectors.workflow_export(workflow), indent=2, ensure_ascii=False)
    response = HttpResponse(body + "\n", content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{workflow.key}.json"'
    return response


def uploaded_text(upload) -> tuple[str, str]:
    """An uploaded JSON file's text, as (text, problem): the problem (translated) is non-empty
    when the file is larger than the API takes in a request body (DATA_UPLOAD_MAX_MEMORY_SIZE,
    bytes; the file is not read past it) or is not UTF-8 (RFC 8259 section 8.1), and the text
    is then empty."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    raw = upload.read(limit + 1) if limit is not None else upload.read()
    if limit is not None and len(raw) > limit:
        return "", _("The file is larger than %(size)s, the most a request may send.") % {
            "size": filesizeformat(limit)}
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError:
        return "", _("The file is not UTF-8 text, which JSON must be.")


def import_view(model_admin, request):
    """Create or replace a workflow from its API JSON, templates included (`GET
    workflows/{key}`'s body), for engineers. It goes into the workflow's draft, as the
    builder's save does: published at once only by a Publisher, when no review is required,
    who did not ask for a draft (publishing.workflow_import). The API's PUT publishes."""
    if not (model_admin.has_add_permission(request)
            and model_admin.has_change_permission(request)):
        raise PermissionDenied
    errors, body, data = [], "", None
    if request.method == "POST":
        upload = request.FILES.get("file")
        body, problem = uploaded_text(upload) if upload else (request.POST.get("json", ""), "")
        if problem:
            errors.append(problem)
        else:
            try:
                data = loads_storable(body)
            except ValueError as exc:
                errors.append(_("Not JSON: %(error)s.") % {"error": exc})
        if data is not None:
            key = data.get("key") if isinstance(data, dict) else None
            if not isinstance(key, str) or not key_validator.regex.match(key):
                errors.append(f'"key": {key_validator.message}')
            serializer = WorkflowSerializer(data=data)
            if not serializer.is_valid():
                errors += flatten(serializer.errors)
            if not errors:
                existing = Workflow.objects.filter(key=key).first()
                if existing is not None and not model_admin.has_change_permission(request,
                                                                                   existing):
                    raise PermissionDenied
                validated = dict(serializer.validated_data)
                specs = [StepSpec.from_json(step) for step in validated.pop("steps")]
                workflow, created, draft = publishing.workflow_import(
                    key=key, steps=specs, settings=validated, user=request.user)
                saved_response(model_admin, request, workflow, created=created, draft=draft)
                return HttpResponseRedirect(admin_url(workflow))
    return TemplateResponse(request, "admin/notifications/workflow/import.html", {
        **model_admin.admin_site.each_context(request), "opts": model_admin.model._meta,
        "title": _("Import a workflow"), "errors": errors, "body": body,
        "can_publish_directly": may_publish_directly(request, None)})
