"""The editor's checks: syntax errors, and variables a template reads that nothing provides."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from .fields import is_html_field
from .sandbox import TemplateError, parse
from .variables import RECIPIENT_KEYS, TENANT_KEYS, VARIABLE_ROOTS, WORKFLOW_KEYS


@dataclass
class Problem:
    """One error or warning of the editor: the field, a message, and where (1-based)."""

    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "line": self.line,
                "column": self.column}


@dataclass
class Check:
    """What the admin shows beside the editor: errors block saving, warnings do not."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _known_paths(value, prefix: str, into: set[str]) -> None:
    into.add(prefix)
    if isinstance(value, Mapping):
        for key, child in value.items():
            _known_paths(child, f"{prefix}.{key}", into)
    elif isinstance(value, list):
        for child in value[:5]:
            _known_paths(child, prefix, into)


def _schema_paths(schema, prefix: str, into: set[str]) -> None:
    """Add the paths a JSON Schema's `properties` (and array `items`) describe."""
    into.add(prefix)
    if not isinstance(schema, Mapping):
        return
    if schema.get("type") == "array" or "items" in schema:
        _schema_paths(schema.get("items", {}), prefix, into)
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, child in properties.items():
            _schema_paths(child, f"{prefix}.{key}", into)


def check_fields(channel: str, fields: Mapping, *, data_schema=None, sample_data=None,
                 extra_roots: tuple[str, ...] = ()) -> Check:
    """Syntax errors, and variables the template reads that nothing provides, with lines.

    A `data.…` path is unknown when the workflow's data schema or sample data describes `data`
    and neither mentions that path; `recipient.…`, `tenant.…` and `workflow.…` have fixed keys.
    """
    result = Check()
    known: set[str] = set()
    data_described = bool(data_schema) or bool(sample_data)
    if data_schema:
        _schema_paths(data_schema, "data", known)
    if isinstance(sample_data, Mapping):
        _known_paths(sample_data, "data", known)
    roots = {*VARIABLE_ROOTS, *extra_roots}
    fixed = {"recipient": RECIPIENT_KEYS, "tenant": TENANT_KEYS, "workflow": WORKFLOW_KEYS}
    for name, source in fields.items():
        if not source:
            continue
        try:
            template = parse(source, html=is_html_field(channel, name), field=name)
        except TemplateError as exc:
            result.errors.append(Problem(name, exc.message, exc.line, exc.column))
            continue
        for occurrences in template.analyze().globals.values():
            for variable in occurrences:
                segments = [s for s in variable.segments if isinstance(s, str)]
                if not segments:
                    continue
                line, column = variable.span.line_col(source)
                path = ".".join(segments)
                problem = _unknown(segments, roots, fixed, known, data_described)
                if problem:
                    result.warnings.append(Problem(
                        name, f"{path}: {problem} (line {line}, column {column + 1})",
                        line, column + 1))
    return result


def _unknown(segments, roots, fixed, known, data_described) -> str:
    root = segments[0]
    if root not in roots:
        return f"unknown variable; templates can read {', '.join(sorted(roots))}"
    if root in fixed and len(segments) > 1:
        key = segments[1]
        if key in ("size", "first", "last"):
            return ""
        if key not in fixed[root]:
            return f"{root} has no '{key}'; it has {', '.join(fixed[root])}"
    if root == "data" and data_described:
        for depth in range(2, len(segments) + 1):
            if segments[depth - 1] in ("size", "first", "last"):
                return ""
            path, parent = ".".join(segments[:depth]), ".".join(segments[:depth - 1])
            if path in known:
                continue
            # Unknown only where the parent's keys are described (a leaf may hold anything).
            if any(k.startswith(parent + ".") for k in known):
                return "not in the workflow's data schema or sample data"
            return ""
    return ""

