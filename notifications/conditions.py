"""Step conditions: a pure function of a condition tree and the run's template
variables (rendering/variables.py).

A tree is ``{"all": [...]}`` or ``{"any": [...]}`` whose items are trees or leaves
``{"path": "data.plan", "op": "eq", "value": "pro"}``. Paths start with ``data``, ``recipient``,
``tenant``, ``actor`` or ``steps`` (what earlier steps of the run did: ``steps.<ref>.status``,
``.seen``, ``.read``, ``.clicked``, ``.delivered``; an approval's ``steps.<ref>.outcome``).
"""

from collections.abc import Mapping
from typing import Any

ROOTS = ("data", "recipient", "tenant", "actor", "steps")
OPS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists", "not_exists")
MISSING = object()


class ConditionError(ValueError):
    """A condition tree that is not well formed; `field` names where, for API errors."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def validate(tree: Any, field: str = "conditions") -> None:
    """Raise ConditionError naming the first malformed part of `tree`."""
    if not isinstance(tree, Mapping):
        raise ConditionError(field, 'Expected an object with "all" or "any".')
    if "path" in tree or "op" in tree:
        _validate_leaf(tree, field)
        return
    keys = set(tree)
    if len(keys) != 1 or not keys <= {"all", "any"}:
        raise ConditionError(field, 'Expected exactly one of "all" or "any".')
    (combinator,) = keys
    items = tree[combinator]
    if not isinstance(items, list) or not items:
        raise ConditionError(f"{field}.{combinator}", "Expected a non-empty list.")
    for index, item in enumerate(items):
        validate(item, f"{field}.{combinator}[{index}]")


def _validate_leaf(leaf: Mapping, field: str) -> None:
    unknown = set(leaf) - {"path", "op", "value"}
    if unknown:
        raise ConditionError(field, f"Unknown keys: {', '.join(sorted(unknown))}.")
    path = leaf.get("path")
    if not isinstance(path, str) or path.split(".", 1)[0] not in ROOTS:
        raise ConditionError(
            f"{field}.path", f"Expected a path starting with one of: {', '.join(ROOTS)}."
        )
    op = leaf.get("op")
    if op not in OPS:
        raise ConditionError(f"{field}.op", f"Expected one of: {', '.join(OPS)}.")
    if op not in ("exists", "not_exists") and "value" not in leaf:
        raise ConditionError(f"{field}.value", f'Required for op "{op}".')
    if op == "in" and not isinstance(leaf["value"], list):
        raise ConditionError(f"{field}.value", 'Expected a list for op "in".')


def resolve(path: str, variables: Mapping) -> Any:
    """The value at a dotted path of `variables` (list indexes allowed), or MISSING."""
    current: Any = variables
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            if -len(current) <= index < len(current):
                current = current[index]
            else:
                return MISSING
        else:
            return MISSING
    return current


def paths(tree: Mapping | None) -> list[str]:
    """The paths the leaves of a well-formed `tree` read, in order."""
    if not tree:
        return []
    if "all" in tree or "any" in tree:
        return [path for item in tree.get("all", tree.get("any")) for path in paths(item)]
    return [tree["path"]]


def evaluate(tree: Mapping | None, variables: Mapping) -> bool:
    """True when the tree holds for `variables`; an absent tree always holds."""
    if not tree:
        return True
    if "all" in tree:
        return all(evaluate(item, variables) for item in tree["all"])
    if "any" in tree:
        return any(evaluate(item, variables) for item in tree["any"])
    return _evaluate_leaf(tree, variables)


def explain(tree: Mapping | None, variables: Mapping) -> list[dict]:
    """The leaves of `tree` with the value each saw and whether it held, for the StepLog."""
    if not tree:
        return []
    if "all" in tree or "any" in tree:
        return [leaf for item in tree.get("all", tree.get("any"))
                for leaf in explain(item, variables)]
    actual = resolve(tree["path"], variables)
    return [
        {
            **tree,
            "actual": None if actual is MISSING else actual,
            "held": _evaluate_leaf(tree, variables),
        }
    ]


def _evaluate_leaf(leaf: Mapping, variables: Mapping) -> bool:
    op = leaf["op"]
    actual = resolve(leaf["path"], variables)
    if op == "exists":
        return actual is not MISSING and actual is not None
    if op == "not_exists":
        return actual is MISSING or actual is None
    if actual is MISSING:
        return op == "neq"
    expected = leaf.get("value")
    try:
        if op == "eq":
            return actual == expected
        if op == "neq":
            return actual != expected
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
        if op == "in":
            return actual in expected
        if op == "contains":
            if isinstance(actual, str):
                return isinstance(expected, str) and expected in actual
            if isinstance(actual, list | tuple):
                return expected in actual
            if isinstance(actual, Mapping):
                return expected in actual
            return False
    except TypeError:
        # Comparing values of different types (e.g. "3" > 2) is false, not an error.
        return False
    raise ValueError(f"unknown op {op!r}")
