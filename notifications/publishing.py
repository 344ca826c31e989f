"""Publishing a workflow version: a draft (after review, when CLARION["REQUIRE_REVIEW"] asks for
one) or an older version (a rollback) becomes the rows the engine runs, through the same
`services.workflow_put` as the API's PUT, in one transaction under the workflow's row lock.
Template edits from the template editor go through here too, so that they land in the draft
(or, published on their own, are recorded as a version). See notifications/workflow_versions.py.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .models import Step, Template, TemplateVersion, Workflow, WorkflowVersion
from .services import template_publish, template_save, workflow_put
from .workflow_json import StepSpec
from .workflow_versions import (
    VersionError,
    draft_create_unpublished,
    draft_of,
    draft_save,
    draft_template_set,
    publish_refusal,
    version_record_live,
    workflow_document,
)

State = WorkflowVersion.State
T = TypeVar("T")


def _apply(workflow: Workflow, document: Mapping, user) -> Workflow:
    """Make the rows what `document` says (templates published), recording no version."""
    workflow, _ = workflow_put(
        key=workflow.key, name=document["name"], category=document.get("category", ""),
        critical=bool(document.get("critical")), active=bool(document.get("active", True)),
        default_locale=document.get("default_locale") or "en",
        data_schema=document.get("data_schema"), sample_data=document.get("sample_data"),
        steps=[StepSpec.from_json(step) for step in document.get("steps") or []],
        author=user, source=None)
    return workflow


def _make_published(workflow: Workflow, version: WorkflowVersion, user) -> WorkflowVersion:
    """`version` (its document just applied) becomes the published one; the previous one is
    superseded. Its document is read back from the rows, so it is exactly what runs."""
    previous = workflow.published_version_id
    if previous is not None:
        WorkflowVersion.objects.filter(pk=previous).update(state=State.SUPERSEDED,
                                                          updated_at=timezone.now())
    newest = workflow.versions.exclude(pk=version.pk).order_by("-number").first()
    if newest is not None and newest.number > version.number:
        version.number = newest.number + 1  # published later than a newer version: renumbered
    version.document = workflow_document(workflow)
    version.state, version.published_at, version.published_by = (State.PUBLISHED,
                                                                 timezone.now(), user)
    version.save()
    workflow.published_version = version
    workflow.save(update_fields=["published_version", "updated_at"])
    return version


@transaction.atomic
def workflow_version_publish(*, version: WorkflowVersion, user) -> WorkflowVersion:
    """Publish an open draft: its document becomes the rows the engine runs (the live version
    keeps running until this commits), and the previous published version is superseded.

    Raises VersionError when it may not be published (not a draft any more, e.g. published by
    someone else a moment ago; with review required: not submitted, or `user` changed it)."""
    workflow = Workflow.objects.select_for_update().get(pk=version.workflow_id)
    version = WorkflowVersion.objects.select_for_update().get(pk=version.pk)
    refusal = publish_refusal(version, user)
    if refusal:
        raise VersionError("not_publishable", refusal)
    if user is not None and not version.authors.filter(pk=user.pk).exists():
        version.approved_by = user
    if workflow.published_version_id is None:  # never published: the rows are the draft
        document = workflow_document(workflow, drafts=True)
    else:
        document = version.document
    workflow = _apply(workflow, document, user)
    return _make_published(workflow, version, user)


@transaction.atomic
def workflow_version_rollback(*, version: WorkflowVersion, user) -> WorkflowVersion:
    """Publish again what an earlier published version said, as a new version ("rolled back
    to vN"). An open draft is kept; it is compared with the new live version when published."""
    workflow = Workflow.objects.select_for_update().get(pk=version.workflow_id)
    if version.state not in (State.PUBLISHED, State.SUPERSEDED):
        raise VersionError("not_published", f"Version {version.number} was never published.")
    if version.pk == workflow.published_version_id:
        raise VersionError("already_live", f"Version {version.number} is the published one.")
    number = workflow.versions.aggregate(n=Max("number"))["n"] + 1
    # Made superseded (an open draft may exist, and one version is published): it becomes the
    # published one below, in this transaction.
    rollback = WorkflowVersion.objects.create(
        workflow=workflow, number=number, state=State.SUPERSEDED, document=version.document,
        base_number=workflow.published_version.number if workflow.published_version else None,
        source="rollback", note=f"Rolled back to version {version.number}.", author=user)
    workflow = _apply(workflow, version.document, user)
    return _make_published(workflow, rollback, user)


IMPORT_NOTE = "Imported from JSON in the admin."


@transaction.atomic
def workflow_import(*, key: str, steps: Sequence[StepSpec], settings: Mapping, user,
                    ) -> tuple[Workflow, bool, WorkflowVersion | None]:
    """Import a workflow's API JSON (`steps`, and `settings`: the other fields of the body as
    the API's WorkflowSerializer validated them) into the workflow `key`'s draft, as the
    builder saves: the live version keeps running until the draft is published, with
    workflow_version_publish's rules (review). A new `key` is made unpublished, the JSON its
    first draft. Returns (the workflow, created, the draft: source "import"; None when the
    JSON says what is live and no draft was open)."""

    def write(rows: Workflow | None) -> Workflow:
        workflow, _ = workflow_put(key=key, steps=steps, author=user, source=None, **settings)
        return workflow

    workflow = Workflow.objects.filter(key=key).first()
    if workflow is None:
        workflow = write(None)
        created, draft = True, draft_create_unpublished(workflow=workflow, user=user)
    else:
        created, (_, draft) = False, draft_edit(workflow=workflow, user=user, change=write)
    if draft is not None:
        draft.source, draft.note = "import", IMPORT_NOTE
        draft.save(update_fields=["source", "note"])
    return workflow, created, draft


# --- Templates, from the template editor ----------------------------------------------------

@transaction.atomic
def template_edit(*, step: Step, locale: str, channel: str, fields: Mapping, user,
                  publish: bool) -> tuple[Template, TemplateVersion | None]:
    """Save a template's fields from the template editor (services.template_save) and keep the
    workflow's versions right: saved as a draft, they go into the workflow's open draft;
    published (`publish`, by someone who may), the workflow's new state is recorded as a
    published version, and the open draft, if any, gets them too."""
    template, version = template_save(step=step, locale=locale, fields=fields, author=user,
                                      publish=publish, channel=channel)
    workflow = step.workflow
    if publish and workflow.published_version_id is not None:
        version_record_live(workflow=workflow, user=user, source="template",
                            note=f"Template {template} published on its own.")
        if workflow.versions.filter(state__in=WorkflowVersion.OPEN_STATES).exists():
            draft_template_set(workflow=workflow, step_ref=step.ref, channel=channel,
                               locale=locale, fields=fields, user=user)
    else:
        draft_template_set(workflow=workflow, step_ref=step.ref, channel=channel, locale=locale,
                           fields=fields, user=user)
    return template, version


@transaction.atomic
def template_version_publish(*, version: TemplateVersion, user) -> None:
    """Publish one template version on its own (a Publisher's rollback of a template), recorded
    as a new published version of its workflow."""
    template_publish(version=version)
    workflow = version.template.step.workflow
    if workflow.published_version_id is not None:
        version_record_live(workflow=workflow, user=user, source="template",
                            note=f"Template {version.template} v{version.number} published.")


# --- Editing a draft through the rows ---------------------------------------------------------

class _Undo(Exception):
    """Raised to roll back the rows after reading what a draft makes of them."""


def draft_read(workflow: Workflow, read: Callable[[Workflow], T]) -> T:
    """`read(workflow)` with the rows made what the workflow's open draft says, then undone:
    the builder shows and edits a draft with the same code as the live version, and nothing of
    it is seen outside this savepoint. Without an open draft (or for a never-published workflow,
    whose rows are its draft) `read` sees the rows as they are, and nothing is undone."""
    draft = draft_of(workflow)
    if draft is None or workflow.published_version_id is None:
        return read(workflow)
    return _undone(workflow, draft, read)


def _undone(workflow: Workflow, draft: WorkflowVersion | None,
            read: Callable[[Workflow], T]) -> T:
    """`read(rows)` in a savepoint that is rolled back, the rows made what `draft` says first
    (when there is one)."""
    result = None
    try:
        with transaction.atomic():
            rows = _apply(workflow, draft.document, None) if draft is not None else workflow
            result = read(rows)
            raise _Undo
    except _Undo:
        pass
    return result


@transaction.atomic
def draft_edit(*, workflow: Workflow, user, change: Callable[[Workflow], Workflow | None],
               ) -> tuple[bool, WorkflowVersion | None]:
    """Edit the workflow's draft with `change`, a function that writes the rows (e.g. through
    services.workflow_put with `source=None`) and returns the workflow, or None to give up.

    A published workflow: `change` runs on the rows made what the open draft says (or the live
    version), its result is saved as the draft's document, and the rows are undone. A workflow
    never published: its rows are its draft and stay changed. Returns (done, the draft): done is
    False when `change` gave up; the draft is None when nothing differs from the live version."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    if workflow.published_version_id is None and not workflow.versions.exists():
        version_record_live(workflow=workflow, source="snapshot",
                            note="The workflow as it was before its first draft.")
        workflow.refresh_from_db()
    if workflow.published_version_id is None:
        if change(workflow) is None:
            return False, None
        return True, draft_save(workflow=workflow, document=workflow_document(
            workflow, drafts=True), user=user)
    draft = draft_of(workflow)
    document = _undone(workflow, draft, lambda rows: (
        lambda changed: workflow_document(changed) if changed is not None else None)(
            change(rows)))
    if document is None:
        return False, None
    if draft is None and document == workflow.published_version.document:
        return True, None
    return True, draft_save(workflow=workflow, document=document, user=user)
