"""Importers of other products' workflow exports (Knock's `knock pull` directory, Novu's workflow
JSON). Each reads its format into `WorkflowImport`s (the Clarion workflow JSON that
PUT /api/v1/workflows/{key} takes, and the steps it could not map, each with why);
`workflow_import` checks one with the API's own serializer and writes it with
`services.workflow_put`, leaving out (and reporting) any step Clarion refuses."""

import re
from dataclasses import dataclass, field

from django.db import transaction
from rest_framework.exceptions import ValidationError

from clarion.api import flatten
from notifications import services
from notifications.api.serializers import WorkflowSerializer
from notifications.models import key_validator


@dataclass
class Unmapped:
    """A step (or a part of a workflow) the importer left out, and why."""

    ref: str
    kind: str
    reason: str

    def __str__(self):
        return f"{self.ref} ({self.kind}): {self.reason}"


@dataclass
class WorkflowImport:
    key: str
    body: dict  # PUT /api/v1/workflows/{key}'s body
    unmapped: list[Unmapped] = field(default_factory=list)


@dataclass
class ImportOutcome:
    key: str
    created: bool | None  # None: not written (dry run, or nothing valid)
    steps: int
    unmapped: list[Unmapped]


STEP_ERROR = re.compile(r"^steps\[(\d+)\]")


def workflow_import(item: WorkflowImport, *, dry_run: bool = False) -> ImportOutcome:
    """Validate `item.body` as the workflow API does and write it (unless `dry_run`).

    A step the serializer refuses (a template that does not parse, a config out of range) is
    left out and reported with the serializer's words; a problem outside the steps (the name,
    the data schema) leaves the whole workflow out, reported under the ref "workflow".
    Returns what was done."""
    unmapped = list(item.unmapped)
    body = dict(item.body)
    if not key_validator.regex.match(item.key):
        unmapped.append(Unmapped("workflow", "workflow", f"{item.key!r}: {key_validator.message}"))
        return ImportOutcome(item.key, None, 0, unmapped)
    while True:
        try:
            data = WorkflowSerializer(data=body)
            data.is_valid(raise_exception=True)
            break
        except ValidationError as exc:
            problems = flatten(exc.detail)
            bad = sorted({int(m.group(1)) for path in problems
                          if (m := STEP_ERROR.match(path))})
            if not bad:
                unmapped.append(Unmapped("workflow", "workflow", "; ".join(
                    f"{path}: {' '.join(messages)}" for path, messages in problems.items())))
                return ImportOutcome(item.key, None, 0, unmapped)
            steps = body["steps"]
            for index in bad:
                step = steps[index]
                reasons = "; ".join(
                    f"{STEP_ERROR.sub('', path).lstrip('.') or 'step'}: {' '.join(messages)}"
                    for path, messages in problems.items()
                    if (m := STEP_ERROR.match(path)) and m.group(1) == str(index))
                unmapped.append(Unmapped(step.get("ref", str(index)), step.get("type", "?"),
                                         f"Clarion refused it: {reasons}"))
            body["steps"] = [s for i, s in enumerate(steps) if i not in bad]
    values = dict(data.validated_data)
    steps = [services.StepSpec.from_json(step) for step in values.pop("steps")]
    if dry_run:
        return ImportOutcome(item.key, None, len(steps), unmapped)
    with transaction.atomic():
        _, created = services.workflow_put(key=item.key, steps=steps, **values)
    return ImportOutcome(item.key, created, len(steps), unmapped)


def report(outcome: ImportOutcome) -> list[str]:
    """The lines a command prints for one workflow."""
    if outcome.created is None and outcome.steps == 0 and any(
            u.ref == "workflow" for u in outcome.unmapped):
        head = f"{outcome.key}: not imported"
    else:
        verb = ("checked" if outcome.created is None else
                "created" if outcome.created else "updated")
        head = f"{outcome.key}: {verb} with {outcome.steps} step(s)"
    return [head, *(f"  not mapped: {u}" for u in outcome.unmapped)]
