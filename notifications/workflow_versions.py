"""A workflow's versions: draft → in review → published → superseded (docs/workflows.md, "Draft,
review, publish").

A version's `document` is the workflow's whole JSON: `GET workflows/{key}`'s body (settings, steps
and every template's fields per locale, per channel for a route step) plus `sample_data`. The
Step and Template rows are the published version, which the engine runs; `Workflow.
published_version` names it. Changes collect in the workflow's one open draft:

- a workflow that was published: the builder and the template editor write into the draft's
  document, and the rows (the live version) stay as they are until the draft is published;
- a workflow never published yet (made in the admin): its rows are its draft (nothing runs it:
  triggers are refused until it is published), and its draft's document is read from them.

Publishing applies a document to the rows (notifications/publishing.py). Every write to the rows
from outside a draft (the API's PUT, the Knock and Novu importers, a template published on its
own) records a new published version here, so the published version's document is always what
runs. The admin's JSON import goes into the draft, as the builder's save does.
"""

import copy
import re
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from .channels import CHANNEL_KEYS
from .models import Step, StepType, Template, Workflow, WorkflowVersion
from .rendering import TemplateError, validate_fields
from .selectors import workflow_export

State = WorkflowVersion.State


class VersionError(Exception):
    """A version action that cannot be done: `code` (e.g. "own_draft"), a sentence for people,
    and the input `field` it is about when there is one (e.g. "locale", "subject")."""

    def __init__(self, code: str, message: str, field: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def review_required() -> bool:
    """CLARION["REQUIRE_REVIEW"]: a draft is published only after someone who did not change
    it approves it."""
    return bool(settings.CLARION.get("REQUIRE_REVIEW"))


# --- Documents ----------------------------------------------------------------------------------

def workflow_document(workflow: Workflow, *, drafts: bool = False) -> dict:
    """The workflow's rows as a version's document: its API JSON plus "sample_data".

    `drafts`: each template's newest version (a draft saved since publishing included) instead
    of its published one; templates with no version at all are left out."""
    document = {**workflow_export(workflow), "sample_data": workflow.sample_data or {}}
    if drafts:
        latest = {}
        for template in (Template.objects.filter(step__workflow=workflow)
                         .select_related("step").prefetch_related("versions")):
            newest = max(template.versions.all(), key=lambda v: v.number, default=None)
            latest[(template.step.ref, template.channel, template.locale)] = (
                dict(newest.fields) if newest else None)
        for step in document_steps(document["steps"]):
            if "templates" not in step:
                continue
            if step["type"] == StepType.ROUTE:
                step["templates"] = {
                    channel: {locale: latest[(step["ref"], channel, locale)]
                              for locale in by_locale if latest.get((step["ref"], channel,
                                                                     locale)) is not None}
                    for channel, by_locale in step["templates"].items()}
            else:
                step["templates"] = {locale: latest[(step["ref"], "", locale)]
                                     for locale in step["templates"]
                                     if latest.get((step["ref"], "", locale)) is not None}
    return document


def document_steps(steps: list):
    """Every step of a document's `steps`, nested ones (branches, default) after their parent."""
    for step in steps or []:
        yield step
        for branch in step.get("branches") or []:
            yield from document_steps(branch.get("steps") or [])
        yield from document_steps((step.get("default") or {}).get("steps") or [])


def document_step(document: Mapping, ref: str) -> dict | None:
    """The step `ref` of a document (nested ones included), or None."""
    return next((s for s in document_steps(document.get("steps") or []) if s["ref"] == ref),
                None)


# --- Reading ------------------------------------------------------------------------------------

def draft_of(workflow: Workflow) -> WorkflowVersion | None:
    """The workflow's open draft (draft or in review), or None."""
    return workflow.versions.filter(state__in=WorkflowVersion.OPEN_STATES).first()


def is_unpublished(workflow: Workflow) -> bool:
    """True for a workflow whose first draft is not published yet: its rows are that draft,
    and triggers are refused. (A workflow from before versions has no versions at all: it is
    live.)"""
    return workflow.published_version_id is None and workflow.versions.exists()


def draft_document(version: WorkflowVersion) -> dict:
    """What an open draft says now: its document, or, for a never-published workflow (whose
    rows are the draft), the rows read with their newest template versions."""
    if version.workflow.published_version_id is None:
        return workflow_document(version.workflow, drafts=True)
    return version.document


# A template's locale, as the API's serializer checks it ("en", "pt-BR").
LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")


def draft_new_step(workflow: Workflow, ref: str) -> tuple[WorkflowVersion, dict]:
    """(the open draft, its step `ref` as the draft's document has it) for a step the draft
    adds to a published workflow: the live version has no step `ref`, so there is no Step row
    for its templates to hang off; they live in the draft's document until it is published.

    Raises VersionError: "no_draft" (no open draft, or the workflow was never published: its
    rows are its draft), "unknown_step" (the draft has no step `ref`), "live_step" (the live
    version has it: its templates are edited in the template editor), "no_templates" (a
    function step)."""
    draft = draft_of(workflow)
    if draft is None or workflow.published_version_id is None:
        raise VersionError("no_draft", _("The workflow “%(key)s” has no draft adding steps.")
                           % {"key": workflow.key})
    step = document_step(draft.document, ref)
    if step is None:
        raise VersionError("unknown_step", _("The draft has no step “%(ref)s”.") % {"ref": ref},
                           "step")
    if workflow.steps.filter(ref=ref).exists():
        raise VersionError("live_step", _("The step “%(ref)s” is live: edit its templates in "
                                          "the template editor.") % {"ref": ref}, "step")
    if "templates" not in step:
        raise VersionError("no_templates", _("A %(type)s step has no templates.")
                           % {"type": step["type"]}, "step")
    return draft, step


def draft_step_row(workflow: Workflow, draft: WorkflowVersion, step: Mapping) -> Step:
    """An unsaved Step for a step of `draft` (from draft_new_step), on an unsaved copy of the
    workflow with the draft's settings and sample data: what the template editor's preview and
    test send render with. Neither is ever saved."""
    document = draft.document
    as_drafted = copy.copy(workflow)
    for name in ("name", "category", "default_locale", "data_schema", "sample_data"):
        if name in document:
            setattr(as_drafted, name, document[name])
    return Step(workflow=as_drafted, ref=step["ref"], type=step["type"],
                config=dict(step.get("config") or {}))


def draft_step_channel(step: Mapping, channel: str) -> str:
    """The channel a template of a draft's `step` is for: a channel step's own type (`channel`
    must be empty or that type); of a route step, `channel`, one of the route's channels.
    Raises VersionError("channel", …, field="channel")."""
    if step["type"] != StepType.ROUTE:
        if channel not in ("", step["type"]):
            raise VersionError("channel", _("This step's templates are for %(type)s.")
                               % {"type": step["type"]}, "channel")
        return step["type"]
    channels = [c for c in (step.get("config") or {}).get("channels") or []
                if c in CHANNEL_KEYS]
    if channel not in channels:
        raise VersionError("channel", _("Expected one of the route's channels: %(channels)s.")
                           % {"channels": ", ".join(channels)}, "channel")
    return channel


def publish_refusal(version: WorkflowVersion, user) -> str | None:
    """Why `user` may not publish `version` now, in a sentence, or None. Holds the rules, not
    the permission (the caller checks `publish_workflow`)."""
    if not version.is_open:
        return _("Version %(number)s is %(state)s: only a draft can be published.") % {
            "number": version.number, "state": version.get_state_display().lower()}
    if review_required():
        if version.state != State.IN_REVIEW:
            return _("This draft has not been submitted for review yet.")
        if user is not None and version.authors.filter(pk=user.pk).exists():
            return _("You changed this draft: someone else must approve and publish it.")
    return None


# --- Writing ------------------------------------------------------------------------------------

def _next_number(workflow: Workflow) -> int:
    return (workflow.versions.aggregate(n=Max("number"))["n"] or 0) + 1


def _locked(workflow: Workflow) -> Workflow:
    """The workflow's row, locked until the transaction ends: version numbers and the one open
    draft / one published version stay right under concurrent writers."""
    return Workflow.objects.select_for_update().get(pk=workflow.pk)


@transaction.atomic
def version_record_live(*, workflow: Workflow, user=None, source: str = "api",
                        note: str = "") -> WorkflowVersion | None:
    """Record the rows as a new published version (the previous one superseded), unless they
    are what the published version already says (returns None). For writes to the rows that
    bypass a draft: the API's PUT, the Knock and Novu importers, a template published on its
    own. (The admin's JSON import goes into the draft: publishing.workflow_import.)"""
    workflow = _locked(workflow)
    document = workflow_document(workflow)
    current = workflow.published_version
    if current is not None and current.document == document:
        return None
    if current is not None:
        WorkflowVersion.objects.filter(pk=current.pk).update(state=State.SUPERSEDED,
                                                            updated_at=timezone.now())
    else:  # a never-published workflow: its draft is what was just published
        workflow.versions.filter(state__in=WorkflowVersion.OPEN_STATES).delete()
    version = WorkflowVersion.objects.create(
        workflow=workflow, number=_next_number(workflow), state=State.PUBLISHED,
        document=document, base_number=current.number if current else None, source=source,
        note=note[:500], author=user, published_at=timezone.now(), published_by=user)
    if user is not None:
        version.authors.add(user)
    workflow.published_version = version
    workflow.save(update_fields=["published_version", "updated_at"])
    return version


@transaction.atomic
def draft_open(*, workflow: Workflow, user=None) -> WorkflowVersion:
    """The workflow's open draft, made from the published version when there is none (a
    workflow from before versions is first recorded as published as it is)."""
    workflow = _locked(workflow)
    draft = draft_of(workflow)
    if draft is not None:
        return draft
    if workflow.published_version_id is None:
        version_record_live(workflow=workflow, source="snapshot",
                            note="The workflow as it was before its first draft.")
        workflow.refresh_from_db()
    return WorkflowVersion.objects.create(
        workflow=workflow, number=_next_number(workflow), state=State.DRAFT,
        document=workflow_document(workflow, drafts=True),
        base_number=workflow.published_version.number, author=user)


def _changed_by(draft: WorkflowVersion, user) -> None:
    """A change to an open draft: its author noted; a draft in review goes back to draft (what
    was reviewed is not what it says any more)."""
    fields = ["updated_at"]
    if draft.state == State.IN_REVIEW:
        draft.state, draft.submitted_at, draft.submitted_by = State.DRAFT, None, None
        fields += ["state", "submitted_at", "submitted_by"]
    if draft.author_id is None and user is not None:
        draft.author = user
        fields.append("author")
    draft.save(update_fields=fields)
    if user is not None:
        draft.authors.add(user)


@transaction.atomic
def draft_create_unpublished(*, workflow: Workflow, user) -> WorkflowVersion:
    """The first draft of a workflow just made in the admin (its rows are the draft; nothing
    runs it until it is published)."""
    workflow = _locked(workflow)
    draft = WorkflowVersion.objects.create(
        workflow=workflow, number=_next_number(workflow), state=State.DRAFT,
        document=workflow_document(workflow, drafts=True), author=user)
    draft.authors.add(user)
    return draft


@transaction.atomic
def draft_save(*, workflow: Workflow, document: Mapping, user) -> WorkflowVersion:
    """Replace the open draft's document (opening a draft if there is none). For a workflow
    never published, whose rows are the draft, the caller has written the rows and `document`
    is read back from them."""
    draft = draft_open(workflow=workflow, user=user)
    draft = WorkflowVersion.objects.select_for_update().get(pk=draft.pk)
    draft.document = dict(document)
    draft.save(update_fields=["document"])
    _changed_by(draft, user)
    return draft


@transaction.atomic
def draft_template_set(*, workflow: Workflow, step_ref: str, channel: str, locale: str,
                       fields: Mapping | None, user) -> WorkflowVersion:
    """Put one template's fields into the open draft (None: remove that template), as the
    template editor saves it. A step the draft no longer has is left as it is."""
    draft = draft_open(workflow=workflow, user=user)
    draft = WorkflowVersion.objects.select_for_update().get(pk=draft.pk)
    if workflow.published_version_id is None:
        draft.document = workflow_document(workflow, drafts=True)
    else:
        step = document_step(draft.document, step_ref)
        if step is not None and "templates" in step:
            templates = step["templates"].setdefault(channel, {}) if channel else step["templates"]
            if fields is None:
                templates.pop(locale, None)
            else:
                templates[locale] = dict(fields)
    draft.save(update_fields=["document"])
    _changed_by(draft, user)
    return draft


@transaction.atomic
def draft_step_template_put(*, workflow: Workflow, step_ref: str, channel: str = "",
                            locale: str, fields: Mapping, user) -> WorkflowVersion:
    """Write one template (Liquid `fields` for one `locale`; of a route step, for one of its
    channels) of a step the open draft adds to a published workflow (draft_new_step). It is
    kept in the draft's document, shown in the draft's diff, and becomes a Template row with
    its step when the draft is published. Returns the draft.

    Raises VersionError naming the input at fault in `field`: those of draft_new_step and
    draft_step_channel; "locale" for a locale not like "en" or "pt-BR"; a template field's name
    (e.g. "subject") for a missing field or a Liquid syntax error."""
    workflow = _locked(workflow)
    _draft, step = draft_new_step(workflow, step_ref)
    kind = draft_step_channel(step, channel)
    if not isinstance(locale, str) or not LOCALE.match(locale):
        raise VersionError("locale", _("Expected a locale like 'en' or 'pt-BR'."), "locale")
    fields = {name: value for name, value in fields.items() if value}
    try:
        validate_fields(kind, fields)
    except TemplateError as exc:
        raise VersionError("template", exc.message, exc.field or "template") from exc
    return draft_template_set(workflow=workflow, step_ref=step_ref,
                              channel=channel if step["type"] == StepType.ROUTE else "",
                              locale=locale, fields=fields, user=user)


@transaction.atomic
def draft_step_template_delete(*, workflow: Workflow, step_ref: str, channel: str = "",
                               locale: str, user) -> WorkflowVersion:
    """Take one template (`locale`; of a route step, of `channel`) of a step the open draft
    adds out of the draft. Returns the draft. Raises VersionError as draft_step_template_put
    does, and "locale" when the draft has no such template."""
    workflow = _locked(workflow)
    _draft, step = draft_new_step(workflow, step_ref)
    draft_step_channel(step, channel)
    if locale not in draft_step_templates(step, channel):
        raise VersionError("locale", _("The draft's step “%(ref)s” has no %(locale)s template.")
                           % {"ref": step_ref, "locale": locale}, "locale")
    return draft_template_set(workflow=workflow, step_ref=step_ref,
                              channel=channel if step["type"] == StepType.ROUTE else "",
                              locale=locale, fields=None, user=user)


def draft_step_templates(step: Mapping, channel: str = "") -> dict[str, dict]:
    """{locale: fields} of a draft's `step` (of a route step: of its `channel`)."""
    templates = step.get("templates") or {}
    if step["type"] == StepType.ROUTE:
        templates = templates.get(channel) or {}
    return dict(templates)


@transaction.atomic
def draft_submit(*, version: WorkflowVersion, user) -> WorkflowVersion:
    """Ask for review: the draft goes to "in review" (a Publisher's queue on the home page)."""
    version = WorkflowVersion.objects.select_for_update().get(pk=version.pk)
    if version.state != State.DRAFT:
        raise VersionError("not_draft", f"Version {version.number} is "
                                        f"{version.get_state_display().lower()}, not a draft.")
    if version.workflow.published_version_id is None:
        version.document = workflow_document(version.workflow, drafts=True)
    version.state, version.submitted_at, version.submitted_by = (State.IN_REVIEW,
                                                                 timezone.now(), user)
    version.review_note = ""
    version.save(update_fields=["state", "submitted_at", "submitted_by", "review_note",
                                "document", "updated_at"])
    return version


@transaction.atomic
def draft_request_changes(*, version: WorkflowVersion, user, note: str) -> WorkflowVersion:
    """A reviewer sends a draft in review back to its authors with `note`."""
    version = WorkflowVersion.objects.select_for_update().get(pk=version.pk)
    if version.state != State.IN_REVIEW:
        raise VersionError("not_in_review", f"Version {version.number} is not in review.")
    version.state, version.review_note = State.DRAFT, note.strip()
    version.save(update_fields=["state", "review_note", "updated_at"])
    return version


@transaction.atomic
def draft_discard(*, version: WorkflowVersion) -> None:
    """Throw an open draft away; the published version stays. A never-published workflow's
    draft is its rows: delete the workflow instead."""
    version = WorkflowVersion.objects.select_for_update().get(pk=version.pk)
    if not version.is_open:
        raise VersionError("not_open", f"Version {version.number} is not a draft.")
    if version.workflow.published_version_id is None:
        raise VersionError("unpublished", "This workflow was never published: its draft is "
                                          "the workflow itself. Delete the workflow instead.")
    version.delete()

