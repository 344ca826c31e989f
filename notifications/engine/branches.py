"""Steps with branches: each branch holds its own steps (Step rows whose `parent` is the step and
whose `branch` names the branch). A run takes one branch of such a step; the choice is kept in
`run.state["branches"]` ({ref: branch name}) and the walk goes through the run's *effective*
sequence: the top-level steps, with the steps of each branch the run took spliced in right after
the step that chose it (nested branches alike). So a run that waits inside a branch has a plain
list of refs as its plan, and resuming after an edit works on refs as for any step.

The `branch` step chooses by conditions (first match wins, else "default"). Another step type
can choose by any decision of its own (an approval's outcome) with `choose(p, step, name, …)`.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping

from .. import conditions
from ..models import Run, Step, StepLog
from ..rendering.variables import step_variables
from .context import NEXT, Pass
from .validation import DEFAULT_BRANCH


def branch_choices(run: Run) -> dict[str, str]:
    """{step ref: branch name} of the branches `run` has taken so far."""
    choices = (run.state or {}).get("branches") or {}
    return dict(choices) if isinstance(choices, Mapping) else {}


def effective_steps(steps: Iterable[Step], choices: Mapping[str, str]) -> list[Step]:
    """The sequence a run walks: the top-level steps of `steps` (all of one workflow's steps, in
    position order) with, after each step in `choices`, the steps of the branch it chose."""
    top: list[Step] = []
    children: dict[tuple[int, str], list[Step]] = defaultdict(list)
    for step in steps:
        if step.parent_id is None:
            top.append(step)
        else:
            children[(step.parent_id, step.branch)].append(step)
    sequence: list[Step] = []

    def add(branch_steps: list[Step]) -> None:
        for step in branch_steps:
            sequence.append(step)
            chosen = choices.get(step.ref)
            if chosen is not None:
                add(children.get((step.pk, chosen), []))

    add(top)
    return sequence


def choose(p: Pass, step: Step, name: str, **detail) -> str:
    """Record that the run takes branch `name` of `step` (the walk then goes through that
    branch's steps, right after `step`), with a `branched` timeline entry carrying `detail`."""
    run = p.run
    state = dict(run.state or {})
    state["branches"] = {**branch_choices(run), step.ref: name}
    run.state = state
    p.log(step.ref, StepLog.Event.BRANCHED, branch=name, **detail)
    return NEXT


def refresh_steps(p: Pass, tree: Mapping | None) -> None:
    """Reread `steps.*` into the pass's variables when `tree` reads them: an earlier step of this
    same pass may have made its message, and engagement moves on while a run waits."""
    if any(path.split(".", 1)[0] == "steps" for path in conditions.paths(tree)):
        p.flush()
        p.variables["steps"] = step_variables(p.run)


def pick(branches: list[Mapping], variables: Mapping) -> tuple[str, list[dict]]:
    """(the name of the first of `branches` whose conditions hold for `variables`, else
    "default"; each branch tried, in order, with whether it held and conditions.explain)."""
    checked = []
    for candidate in branches:
        tree = candidate.get("conditions")
        held = conditions.evaluate(tree, variables)
        checked.append({"branch": candidate["name"], "held": held,
                        "conditions": conditions.explain(tree, variables)})
        if held:
            return candidate["name"], checked
    return DEFAULT_BRANCH, checked


def branch(p: Pass, step: Step) -> str:
    """The branch step: take the first branch whose conditions hold, else the default one; the
    `branched` entry says which and shows each branch tried with the values its conditions saw."""
    if step.ref in branch_choices(p.run):  # taken before (a re-walk): never chosen twice
        return NEXT
    branches = list(step.branches or [])
    refresh_steps(p, {"all": [item["conditions"] for item in branches
                              if item.get("conditions")]})
    name, checked = pick(branches, p.variables)
    return choose(p, step, name, checked=checked)
