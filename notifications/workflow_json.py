"""A workflow's JSON, in one place: what `PUT/GET /api/v1/workflows/{key}` (and the admin, and
anything else that edits workflows) reads and writes. `StepSpec.from_json` reads one step (nested
branches included) into the specs `services.workflow_put` saves; `step_export` writes a saved
step back as the same JSON, so a PUT of what GET returned changes nothing.

A step with branches (engine/branches.py) looks like:
    {"ref": "by-plan", "type": "branch",
     "branches": [{"name": "pro", "conditions": {...}, "steps": [...]}],
     "default": {"steps": [...]}}
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .engine.validation import (
    BRANCHING_STEP_TYPES,
    DEFAULT_BRANCH,
    StepConfigError,
    validate_unless,
)
from .models import Step, StepType


@dataclass
class StepSpec:
    """One step as `PUT workflows/{key}` describes it (`from_json` reads that JSON, and
    step_export writes it back)."""

    ref: str
    type: str
    config: dict = field(default_factory=dict)
    conditions: dict | None = None
    # {locale: fields}; a route step's: {channel: {locale: fields}}; None leaves the step's
    # templates as they are (the admin's workflow builder: templates have their own editor)
    templates: dict[str, dict] | None = field(default_factory=dict)
    unless: dict | None = None  # channel steps: {"step": "<earlier ref>", "is": "read"}
    send_window: dict | None = None  # channel steps: {"days", "start", "end", "timezone"}
    urgent: bool = False  # channel steps of a critical workflow: send during quiet hours
    # Steps with branches (engine/branches.py): the branches in order, and the default's steps.
    branches: list["BranchSpec"] = field(default_factory=list)
    default: list["StepSpec"] = field(default_factory=list)

    @classmethod
    def from_json(cls, item: Mapping) -> "StepSpec":
        """The spec of one step of a workflow's JSON (as the API's StepSerializer validated it,
        or as step_export wrote it), nested branches included."""
        return cls(
            ref=item["ref"], type=item["type"], config=dict(item.get("config") or {}),
            conditions=item.get("conditions") or None,
            templates=dict(item.get("templates") or {}), unless=item.get("unless") or None,
            send_window=item.get("send_window") or None, urgent=bool(item.get("urgent")),
            branches=[BranchSpec(name=branch["name"],
                                 conditions=branch.get("conditions") or None,
                                 steps=[cls.from_json(s) for s in branch.get("steps") or []])
                      for branch in item.get("branches") or []],
            default=[cls.from_json(s) for s in (item.get("default") or {}).get("steps") or []],
        )


@dataclass
class BranchSpec:
    """One branch of a step: its name, the conditions that choose it (branch steps), its steps."""

    name: str
    conditions: dict | None = None
    steps: list[StepSpec] = field(default_factory=list)


def step_tree(steps: Sequence[StepSpec], parent_ref: str | None = None, branch: str = ""):
    """(spec, parent ref, branch name, position) for every step of the tree, parents first."""
    for position, spec in enumerate(steps):
        yield spec, parent_ref, branch, position
        for item in spec.branches:
            yield from step_tree(item.steps, spec.ref, item.name)
        if spec.default:
            yield from step_tree(spec.default, spec.ref, DEFAULT_BRANCH)



def step_export(step: Step, children: Mapping[tuple[int, str], list[Step]]) -> dict:
    """One step as the workflow's JSON has it (StepSpec.from_json reads it back):
    `children` maps (step id, branch name) to that branch's steps, in order. A step with
    branches shows them as {"name", "conditions", "steps"} and, for a branch step, its
    "default": {"steps": […]}."""
    item = {"ref": step.ref, "type": step.type}
    if step.config:
        item["config"] = step.config
    if step.conditions:
        item["conditions"] = step.conditions
    if step.unless:
        item["unless"] = step.unless
    if step.send_window:
        item["send_window"] = step.send_window
    if step.urgent:
        item["urgent"] = True
    if step.is_channel:
        item["templates"] = {
            template.locale: template.fields for template in step.templates.all()
        }
    elif step.type == StepType.ROUTE:  # one template per channel: {channel: {locale: …}}
        item["templates"] = {}
        for template in step.templates.all():
            item["templates"].setdefault(template.channel, {})[template.locale] = template.fields
    if step.type in BRANCHING_STEP_TYPES:
        item["branches"] = [
            {**branch, "steps": [step_export(child, children)
                                 for child in children.get((step.pk, branch["name"]), [])]}
            for branch in step.branches or []]
        if BRANCHING_STEP_TYPES[step.type] is None:
            item["default"] = {"steps": [step_export(child, children) for child in
                                         children.get((step.pk, DEFAULT_BRANCH), [])]}
    return item


def step_children(steps: Iterable[Step]) -> tuple[list[Step], dict[tuple[int, str], list[Step]]]:
    """(top-level steps, {(parent id, branch name): its steps}) of one workflow's `steps`, each
    list in position order when `steps` is."""
    top, children = [], defaultdict(list)
    for step in steps:
        if step.parent_id is None:
            top.append(step)
        else:
            children[(step.parent_id, step.branch)].append(step)
    return top, children


def branches_of(step) -> list[tuple[str, list]]:
    """(path of the branch relative to the step, its steps) for each branch of a validated step."""
    found = [(f".branches[{index}]", branch.get("steps") or [])
             for index, branch in enumerate(step.get("branches") or [])]
    if step.get("default"):
        found.append((".default", step["default"].get("steps") or []))
    return found


def step_paths(steps, prefix: str):
    """(ref, path) of each step of a workflow's validated steps, nested ones included."""
    for index, step in enumerate(steps):
        yield step["ref"], f"{prefix}[{index}]"
        for where, branch_steps in branches_of(step):
            yield from step_paths(branch_steps, f"{prefix}[{index}]{where}.steps")


def check_unless(steps, earlier: dict, prefix: str, errors: dict) -> None:
    """Check each step's `unless` against the steps a run walks before it: the earlier steps of
    its own branch and of every branch it is inside, not those of other branches. Errors go to
    `errors` keyed by path (e.g. "steps[2].branches[0].steps[1].unless.step")."""
    earlier = dict(earlier)
    for index, step in enumerate(steps):
        if step.get("unless"):
            try:
                validate_unless(step["unless"], earlier)
            except StepConfigError as exc:
                errors[f"{prefix}[{index}].{exc.field}"] = [str(exc)]
        earlier[step["ref"]] = step["type"]
        for where, branch_steps in branches_of(step):
            check_unless(branch_steps, earlier, f"{prefix}[{index}]{where}.steps", errors)
