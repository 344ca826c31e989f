"""Knock's `knock pull` directory as Clarion workflows.

`knock workflow pull --all` writes one directory per workflow, named by its key, holding a
`workflow.json` (`name`, `categories`, `trigger_data_json_schema`, `steps`) and one folder per
channel step with the template's longer fields; a key ending in `@` (`"html_body@":
"email_1/html_body.html"`) names the file, relative to the workflow's directory, that holds the
value. Knock's templates are Liquid with the roots Clarion's have (`recipient`, `actor`, `data`,
`tenant`), so they are kept as they are.

Mapped: channel steps (email, SMS, push, in-app feed, chat) with their templates and step
conditions (an earlier step's `refs.<ref>.engagement_status` / `delivery_status` as
`steps.<ref>.read` …); delays (`delay_for`, `delay_until_field_path`); batches as digests;
branches (the one without conditions is the default). Reported and left out: every other step
type (fetch, throttle, trigger-workflow, AI steps…), visual-block email templates, conditions on
variables or operators Clarion has no equivalent for, branches that end the workflow
(`terminates`).
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path

from . import Unmapped, WorkflowImport

# Knock's channel types (a step's `channel_type`, or inferred from its template's fields).
CHANNEL_TYPES = {"email": "email", "sms": "sms", "push": "push", "in_app_feed": "in_app",
                 "chat": "chat"}
# Knock template field → Clarion template field, per Clarion channel.
TEMPLATE_FIELDS = {
    "email": {"subject": "subject", "html_body": "html", "text_body": "text"},
    "sms": {"text_body": "text"},
    "push": {"title": "title", "text_body": "body"},
    "in_app": {"markdown_body": "body", "action_url": "action_url"},
    "chat": {"markdown_body": "text", "json_body": "blocks"},
}
OPERATORS = {"equal_to": "eq", "not_equal_to": "neq", "greater_than": "gt",
             "greater_than_or_equal_to": "gte", "less_than": "lt", "less_than_or_equal_to": "lte",
             "contains": "contains", "exists": "exists", "not_exists": "not_exists"}
VARIABLE_ROOTS = ("data", "recipient", "actor", "tenant")
UNITS = {"seconds": 1, "minutes": 1, "hours": 1, "days": 1, "weeks": 7}


class KnockExportError(ValueError):
    """The directory is not a `knock pull` export; the message says what is missing."""


def _resolved(value, directory: Path):
    """A template object with its `@` file references read from `directory`."""
    if not isinstance(value, Mapping):
        return value
    out = {}
    for name, item in value.items():
        if name.endswith("@") and isinstance(item, str):
            path = (directory / item).resolve()
            if directory.resolve() not in path.parents:
                raise KnockExportError(f"{item!r} points outside the workflow's directory.")
            out[name[:-1]] = path.read_text()
        else:
            out[name] = _resolved(item, directory)
    return out


def _channel(step: Mapping) -> str | None:
    kind = step.get("channel_type")
    if kind:
        return CHANNEL_TYPES.get(kind)
    template = step.get("template") or {}
    fields = set(template)
    if "default" in template and isinstance(template["default"], Mapping):
        fields = set(template["default"])  # the per-locale form
    if "subject" in fields or "html_body" in fields:
        return "email"
    if "title" in fields:
        return "push"
    if "action_url" in fields:
        return "in_app"
    if "json_body" in fields:
        return "chat"
    if "markdown_body" in fields:
        return "in_app" if "feed" in str(step.get("channel_key", "")) else "chat"
    if "text_body" in fields:
        return "sms"
    return None


def conditions(tree) -> dict:
    """Knock's step conditions ({"all"|"any": [{variable, operator, argument}]}) as Clarion's;
    raises ValueError for what Clarion cannot express."""
    if not isinstance(tree, Mapping) or len(tree) != 1 or not set(tree) <= {"all", "any"}:
        raise ValueError('expected {"all": [...]} or {"any": [...]}')
    (combinator, items), = tree.items()
    leaves = []
    for item in items or []:
        if isinstance(item, Mapping) and set(item) & {"all", "any"}:
            leaves.append(conditions(item))
            continue
        variable, operator = item.get("variable", ""), item.get("operator")
        status = _message_status(variable, operator, item.get("argument"))
        if status is not None:
            leaves.append(status)
            continue
        if operator not in OPERATORS:
            raise ValueError(f"the operator {operator!r} has no Clarion equivalent")
        if variable.split(".", 1)[0] not in VARIABLE_ROOTS:
            raise ValueError(f"the variable {variable!r} is not under "
                             f"{', '.join(VARIABLE_ROOTS)}")
        leaf = {"path": variable, "op": OPERATORS[operator]}
        if operator not in ("exists", "not_exists"):
            leaf["value"] = item.get("argument")
        leaves.append(leaf)
    return {combinator: leaves}


def _message_status(variable: str, operator, argument) -> dict | None:
    """Knock's conditions on an earlier step's message (`refs.<ref>.engagement_status` is
    seen/read/…, `refs.<ref>.delivery_status` is delivered) as Clarion's `steps.<ref>.<status>`;
    None when `variable` is not one of those."""
    parts = variable.split(".")
    if len(parts) != 3 or parts[0] != "refs" or operator not in ("equal_to", "not_equal_to"):
        return None
    known = {"engagement_status": ("seen", "read", "clicked"),
             "delivery_status": ("delivered",)}.get(parts[2], ())
    if argument not in known:
        return None
    return {"path": f"steps.{parts[1]}.{argument}", "op": "eq",
            "value": operator == "equal_to"}


def _branch(step: Mapping, unmapped: list, directory: Path) -> dict:
    """Knock's branch step (branches tried in order, the one without conditions the default)
    as Clarion's; a nested step that cannot be mapped is left out and reported."""
    out = {"ref": step.get("ref"), "type": "branch", "branches": [], "default": {"steps": []}}
    names: set[str] = set()
    for index, branch in enumerate(step.get("branches") or []):
        if branch.get("terminates"):
            raise ValueError(f"its branch {branch.get('name')!r} ends the workflow "
                             "(terminates), which Clarion's branches do not")
        steps = _steps(branch.get("steps") or [], unmapped, directory)
        if not branch.get("conditions"):
            out["default"] = {"steps": steps}
            continue
        name = re.sub(r"[^a-zA-Z0-9_.:-]+", "-", str(branch.get("name") or "")).strip("-")
        name = name or f"branch-{index + 1}"
        if name in names or name == "default":
            name = f"{name}-{index + 1}"
        names.add(name)
        out["branches"].append({"name": name, "conditions": conditions(branch["conditions"]),
                                "steps": steps})
    if not out["branches"]:
        raise ValueError("it has no branch with conditions")
    if step.get("conditions"):
        out["conditions"] = conditions(step["conditions"])
    return out


def _steps(steps, unmapped: list, directory: Path) -> list[dict]:
    """Knock steps as Clarion's; each that cannot be mapped is left out and reported."""
    out = []
    for index, step in enumerate(steps):
        ref = step.get("ref") or f"step_{index + 1}"
        try:
            if step.get("type") == "branch":
                out.append(_branch({**step, "ref": ref}, unmapped, directory))
            else:
                out.append(_step(_resolved({**step, "ref": ref}, directory)))
        except (ValueError, OSError) as exc:
            unmapped.append(Unmapped(ref, str(step.get("type")), f"{exc}; left out"))
    return out


def _duration(spec) -> dict:
    if not isinstance(spec, Mapping) or spec.get("unit") not in UNITS:
        raise ValueError(f"the duration {spec!r} is not {{unit, value}} in seconds to weeks")
    unit = spec["unit"]
    return {"days" if unit == "weeks" else unit: spec.get("value", 0) * UNITS[unit]}


def _templates(channel: str, template: Mapping) -> dict[str, dict]:
    """A channel step's template(s) by locale: Knock's per-locale form
    ({"default": {...}, "it": {...}}) or one template (the workflow's default locale)."""
    variants = {name: value for name, value in template.items() if isinstance(value, Mapping)
                and set(value) & set(TEMPLATE_FIELDS[channel])}
    if not variants:
        variants = {"default": template}
    out = {}
    for locale, fields in variants.items():
        if "visual_blocks" in fields:
            raise ValueError("visual-block email templates are not imported; "
                             "export the step as HTML")
        clarion = {TEMPLATE_FIELDS[channel][name]: value for name, value in fields.items()
                   if name in TEMPLATE_FIELDS[channel] and value not in (None, "")}
        out["en" if locale == "default" else locale] = clarion
    return out


def _step(step: Mapping) -> dict:
    """One Knock step as a Clarion step; raises ValueError saying why it cannot be."""
    ref, kind = step.get("ref"), step.get("type")
    settings = step.get("settings") or {}
    if kind == "channel":
        channel = _channel(step)
        if channel is None:
            raise ValueError(f"no Clarion channel for channel type {step.get('channel_type')!r}")
        out = {"ref": ref, "type": channel,
               "templates": _templates(channel, step.get("template") or {})}
    elif kind == "delay":
        if settings.get("delay_until_field_path"):
            path = settings["delay_until_field_path"]
            if path.split(".", 1)[0] not in VARIABLE_ROOTS:
                raise ValueError(f"the field path {path!r} is not under data or recipient")
            out = {"ref": ref, "type": "delay", "config": {"until": path}}
        else:
            out = {"ref": ref, "type": "delay", "config": _duration(settings.get("delay_for"))}
    elif kind == "batch":
        config = {"window": _duration(settings.get("batch_window"))}
        if settings.get("batch_key"):
            config["key"] = f"data.{settings['batch_key']}"
        if settings.get("batch_window_type") not in (None, "fixed"):
            raise ValueError(f"the {settings['batch_window_type']!r} batch window has no "
                             "Clarion equivalent")
        out = {"ref": ref, "type": "digest", "config": config}
    else:
        raise ValueError(f"Knock {kind} steps have no Clarion equivalent")
    if step.get("conditions"):
        out["conditions"] = conditions(step["conditions"])
    return out


def read_workflow(directory: Path) -> WorkflowImport:
    """One workflow directory of a `knock pull` export."""
    path = directory / "workflow.json"
    try:
        workflow = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise KnockExportError(f"{path}: {exc}") from None
    key = (workflow.get("__readonly") or {}).get("key") or directory.name
    unmapped: list[Unmapped] = []
    steps = _steps(workflow.get("steps") or [], unmapped, directory)
    categories = workflow.get("categories") or []
    if len(categories) > 1:
        unmapped.append(Unmapped("workflow", "categories",
                                 f"Clarion keeps one category; kept {categories[0]!r}, "
                                 f"not {', '.join(map(repr, categories[1:]))}"))
    body = {"name": workflow.get("name") or key, "category": categories[0] if categories else "",
            "steps": steps}
    if workflow.get("trigger_data_json_schema"):
        body["data_schema"] = workflow["trigger_data_json_schema"]
    return WorkflowImport(key=key, body=body, unmapped=unmapped)


def read_export(root: Path) -> list[WorkflowImport]:
    """Every workflow of a `knock pull` export: `root` is one workflow's directory, a directory
    of workflow directories, or a directory with a `workflows/` one."""
    root = Path(root)
    if (root / "workflow.json").is_file():
        return [read_workflow(root)]
    if (root / "workflows").is_dir():
        root = root / "workflows"
    found = sorted(d for d in root.iterdir() if (d / "workflow.json").is_file()) \
        if root.is_dir() else []
    if not found:
        raise KnockExportError(f"No workflow.json under {root} (expected the directory "
                               "`knock workflow pull --all` writes).")
    return [read_workflow(d) for d in found]
