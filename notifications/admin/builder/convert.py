"""The builder's form ↔ the workflow's JSON (the `PUT workflows/{key}` body).

The form's field names spell where each value sits: `steps-2-limit` is the `limit` field of the
third step, `steps-2-when-items-0-path` the path of its first condition, `fields-1-type` the type
of the second data field. `form_tree` turns posted names into nested dicts, `step_from_form`
turns one step's fields into its JSON through its declaration (declarations.py), and
`step_values` goes back, for showing a saved step. Conversion errors are collected in a
`Problems`, by field name, to be shown next to the field.
"""

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _

from ...engine import DURATION_UNITS
from .declarations import KINDS, Field, Problems, StepKind

EMPTY = object()  # a field left empty: nothing goes into the JSON
STEP_KEYS = ("ref", "type", "conditions")  # shown by every step card, not by its fields


# --- Posted names → nested dicts ----------------------------------------------------------------

def form_tree(data) -> dict:
    """The posted form (a QueryDict) as nested dicts split on "-": {"steps": {"0": {"ref":
    "mail", …}}}. A name posted several times (checkbox lists) keeps a list of its values."""
    tree: dict = {}
    for name in data:
        values = data.getlist(name) if hasattr(data, "getlist") else [data[name]]
        *parents, last = name.split("-")
        node = tree
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):  # "a" posted and "a-b" too: keep the deeper one
                child = node[part] = {}
            node = child
        node[last] = values if len(values) > 1 or last.endswith("days") else values[0]
    return tree


def items(node: Any) -> list[tuple[str, dict]]:
    """The numbered children of a tree node, in index order, with their index as posted."""
    if not isinstance(node, dict):
        return []
    numbered = [(key, value) for key, value in node.items()
                if key.isdigit() and isinstance(value, dict)]
    return sorted(numbered, key=lambda pair: int(pair[0]))


def text(node: Mapping, name: str) -> str:
    value = node.get(name, "")
    if isinstance(value, list):
        value = value[-1] if value else ""
    return value.strip() if isinstance(value, str) else ""


# --- Values typed in a field ↔ JSON values ------------------------------------------------------

def parse_value(raw: str, op: str | None = None) -> Any:
    """A condition value as typed: a number, true/false/null, a quoted string or a JSON list
    is read as JSON; anything else is the text itself. For `in`, text without brackets is a
    comma-separated list."""
    raw = raw.strip()
    if op == "in" and not raw.startswith("["):
        return [parse_value(part) for part in raw.split(",") if part.strip()]
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(value, float) and not math.isfinite(value):
        return raw
    return value


def show_value(value: Any, op: str | None = None) -> str:
    """The text a field shows for a JSON value: the inverse of `parse_value`."""
    if value is EMPTY or value is None and op in ("exists", "not_exists"):
        return ""
    if isinstance(value, str):
        return value if parse_value(value) == value and value == value.strip() \
            else json.dumps(value, ensure_ascii=False)
    if op == "in" and isinstance(value, list) and all(
            isinstance(item, str) and "," not in item and show_value(item) == item
            for item in value):
        return ", ".join(value)
    return json.dumps(value, ensure_ascii=False)


def duration_parts(value: Any) -> tuple[str, str]:
    """(amount, unit) a duration dict shows as: its one unit, or its total in the largest unit
    that divides it evenly ({"hours": 1, "minutes": 30} → 90 minutes)."""
    if not isinstance(value, Mapping):
        return "", "minutes"
    units = [unit for unit in DURATION_UNITS if unit in value]
    if len(units) == 1:
        return number_text(value[units[0]]), units[0]
    if not units:
        return "", "minutes"
    try:
        seconds = sum(float(value[unit]) * DURATION_UNITS[unit] for unit in units)
    except (TypeError, ValueError):
        return "", "minutes"
    for unit, factor in reversed(DURATION_UNITS.items()):
        if seconds % factor == 0:
            return number_text(seconds / factor), unit
    return number_text(seconds), "seconds"


def number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if value is not None else ""


def parse_number(raw: str, *, integer: bool) -> int | float:
    """A number typed in a field; ValueError with the message for the person."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(_("Enter a whole number.") if integer else _("Enter a number.")) from None
    if not math.isfinite(value):
        raise ValueError(_("Enter a number."))
    if value.is_integer():
        return int(value)
    if integer:
        raise ValueError(_("Enter a whole number."))
    return value


def field_from_form(spec: Field, node: Mapping) -> Any:
    """The JSON value of one declared field from its step's posted fields (EMPTY when left
    empty); ValueError for text that is not what the field takes."""
    if spec.kind == "duration":
        amount, unit = text(node, f"{spec.name}_amount"), text(node, f"{spec.name}_unit")
        if not amount:
            return EMPTY
        if unit not in DURATION_UNITS:
            raise ValueError(_("Choose one of: %(choices)s.") % {
                "choices": ", ".join(DURATION_UNITS)})
        return {unit: parse_number(amount, integer=False)}
    if spec.kind == "checkbox":
        return True if text(node, spec.name) else EMPTY
    if spec.kind == "days":
        raw = node.get(spec.name) or []
        chosen = [raw] if isinstance(raw, str) else list(raw)
        return [value for value, _ in spec.choices if value in chosen] or EMPTY
    raw = text(node, spec.name)
    if not raw:
        return EMPTY
    if spec.kind in ("integer", "number"):
        return parse_number(raw, integer=spec.kind == "integer")
    if spec.kind == "list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def field_values(spec: Field, step: Mapping) -> dict[str, Any]:
    """The form values showing `spec`'s part of a step's JSON: {form field name: value}."""
    value = get_path(step, spec.json_path)
    if spec.kind == "duration":
        if spec.json_path == "config" and isinstance(value, Mapping):
            value = {unit: amount for unit, amount in value.items() if unit in DURATION_UNITS}
            value = value or EMPTY
        amount, unit = duration_parts(value)
        return {f"{spec.name}_amount": amount, f"{spec.name}_unit": unit}
    if value is EMPTY:
        return {spec.name: [] if spec.kind == "days" else ""}
    if spec.kind == "checkbox":
        return {spec.name: bool(value)}
    if spec.kind == "days":
        return {spec.name: list(value) if isinstance(value, list) else []}
    if spec.kind in ("integer", "number"):
        return {spec.name: number_text(value)}
    if spec.kind == "list" and isinstance(value, list):
        return {spec.name: ", ".join(str(item) for item in value)}
    return {spec.name: value if isinstance(value, str) else json.dumps(value)}


# --- JSON paths -------------------------------------------------------------------------------

def get_path(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, Mapping) or part not in data:
            return EMPTY
        data = data[part]
    return data


def set_path(data: dict, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    if path == "config" and isinstance(value, Mapping):  # a delay's duration is its config
        data.setdefault("config", {}).update(value)
    else:
        data[last] = value


def remove_path(data: dict, path: str) -> None:
    *parents, last = path.split(".")
    for part in parents:
        data = data.get(part)
        if not isinstance(data, dict):
            return
    if path == "config" and isinstance(data.get("config"), dict):
        for unit in DURATION_UNITS:
            data["config"].pop(unit, None)
        return
    data.pop(last, None)


def merge(base: dict, extra: Mapping) -> dict:
    """`extra` (JSON the builder has no field for) under `base` (what the fields say)."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base.setdefault(key, value)
    return base


# --- Conditions ---------------------------------------------------------------------------------

def conditions_from_form(node: Any, prefix: str, problems: Problems) -> dict | None:
    """The condition tree of a group's posted fields ({"mode": "all", "items": {…}}); None for
    "no conditions" or a group with no rows filled in."""
    if not isinstance(node, dict):
        return None
    mode = text(node, "mode")
    if mode not in ("all", "any"):
        return None
    tree_items = []
    for index, item in items(node.get("items")):
        name = f"{prefix}items-{index}-"
        if "mode" in item:
            sub = conditions_from_form(item, name, problems)
            if sub:
                tree_items.append(sub)
            continue
        path, op, raw = text(item, "path"), text(item, "op"), text(item, "value")
        if not (path or raw):
            continue  # an empty row
        leaf: dict[str, Any] = {"path": path, "op": op}
        if op not in ("exists", "not_exists"):
            leaf["value"] = parse_value(raw, op)
        tree_items.append(leaf)
    return {mode: tree_items} if tree_items else None


def condition_rows(tree: Any) -> dict:
    """A condition tree as the builder's group ({"mode", "items": [leaf | group]}); a single
    leaf at the top becomes a group of one ("all")."""
    if not isinstance(tree, Mapping) or not tree:
        return {"mode": "", "items": []}
    if "path" in tree or "op" in tree:
        return {"mode": "all", "items": [dict(tree)]}
    mode = "any" if "any" in tree else "all"
    rows = []
    for item in tree.get(mode) or []:
        if isinstance(item, Mapping) and ("all" in item or "any" in item):
            rows.append(condition_rows(item))
        else:
            rows.append(dict(item) if isinstance(item, Mapping) else {})
    return {"mode": mode, "items": rows}


CONDITION_STEP = re.compile(r"\.(all|any)\[(\d+)\]")


def condition_field_name(error_key: str) -> str:
    """The form field (relative to its step) of an error about its conditions:
    "conditions.all[0].any[1].value" → "when-items-0-items-1-value"."""
    rest = error_key[len("conditions"):]
    parts = ["when"]
    for match in CONDITION_STEP.finditer(rest):
        parts += ["items", match.group(2)]
    tail = CONDITION_STEP.sub("", rest).lstrip(".")
    parts.append(tail if tail in ("path", "op", "value") else "mode")
    return "-".join(parts)


# --- Steps ------------------------------------------------------------------------------------

def step_from_form(node: Mapping, prefix: str, problems: Problems) -> dict:
    """One step's JSON from its posted fields; conversion errors go to `problems` under the
    field's full name (`prefix` + its name). Fields the builder does not show travel in the
    step's hidden `extra` JSON and are kept."""
    step_type = text(node, "type")
    step: dict[str, Any] = {"ref": text(node, "ref"), "type": step_type}
    kind = KINDS.get(step_type)
    for spec in kind.fields if kind else ():
        try:
            value = field_from_form(spec, node)
        except ValueError as exc:
            problems.add(prefix + (f"{spec.name}_amount" if spec.kind == "duration"
                                   else spec.name), str(exc))
            continue
        if value is not EMPTY:
            set_path(step, spec.json_path, value)
    conditions = conditions_from_form(node.get("when"), prefix + "when-", problems)
    if conditions:
        step["conditions"] = conditions
    if kind is not None and kind.templates and isinstance(node.get("tpl"), dict):
        written = {channel: {name: value.replace("\r\n", "\n") for name, value in fields.items()
                             if isinstance(value, str) and value.strip()}
                   for channel, fields in node["tpl"].items() if isinstance(fields, dict)}
        written = {channel: fields for channel, fields in written.items() if fields}
        if written:
            step[NEW_TEMPLATES] = written
    if kind is not None and kind.nested:
        step["branches"] = []
        for index, branch in items(node.get("branches")):
            where = f"{prefix}branches-{index}-"
            item: dict[str, Any] = {"name": text(branch, "name"), BRANCH_INDEX: index}
            branch_conditions = conditions_from_form(branch.get("when"), where + "when-",
                                                     problems)
            if branch_conditions:
                item["conditions"] = branch_conditions
            item["steps"] = steps_from_form(branch.get("steps"), where + "steps-", problems)
            if kind.fixed_branches and not item["steps"]:
                continue  # an outcome with nothing to do
            step["branches"].append(item)
        if not kind.fixed_branches:
            default = node.get("default") if isinstance(node.get("default"), dict) else {}
            step["default"] = {"steps": steps_from_form(default.get("steps"),
                                                        f"{prefix}default-steps-", problems)}
    try:
        extra = json.loads(text(node, "extra") or "{}")
    except ValueError:
        extra = {}
    if isinstance(extra, Mapping):
        merge(step, extra)
    return step


def steps_from_form(node: Any, prefix: str, problems: Problems) -> list[dict]:
    """The steps of a posted list ({"0": {…}, "1": {…}}), in index order; each keeps its saved
    ref (the hidden `original`) under ORIGINAL, which `strip_originals` removes."""
    steps = []
    for index, item in items(node):
        step = step_from_form(item, f"{prefix}{index}-", problems)
        step[ORIGINAL] = text(item, "original")
        steps.append(step)
    return steps


ORIGINAL = "__original"  # a step's saved ref, while the builder reads the form
# A route step's templates written in the builder for channels that have none yet:
# {channel: {field: text}}, saved in the workflow's default locale.
NEW_TEMPLATES = "__new_templates"
BRANCH_INDEX = "__index"  # a branch's index in the form (an approval leaves out empty ones)


def strip_originals(steps: list) -> list:
    """The steps without ORIGINAL or `templates` (the builder leaves templates to the editor),
    nested steps included: the API's JSON."""
    clean = []
    for step in steps:
        item = {key: value for key, value in step.items()
                if key not in (ORIGINAL, NEW_TEMPLATES, "templates")}
        if isinstance(item.get("branches"), list):
            item["branches"] = [{**{k: v for k, v in branch.items() if k != BRANCH_INDEX},
                                 "steps": strip_originals(branch.get("steps") or [])}
                                if isinstance(branch, dict) else branch
                                for branch in item["branches"]]
        if isinstance(item.get("default"), dict):
            item["default"] = {**item["default"],
                               "steps": strip_originals(item["default"].get("steps") or [])}
        clean.append(item)
    return clean


def step_values(step: Mapping, kind: StepKind | None) -> tuple[dict, dict]:
    """(form values by field name, the JSON the fields do not show) for one step's JSON."""
    values: dict[str, Any] = {"ref": step.get("ref", ""), "type": step.get("type", "")}
    shown = (*STEP_KEYS, "templates", ORIGINAL, NEW_TEMPLATES, *(("branches", "default")
                                                  if kind and kind.nested else ()))
    extra = json.loads(json.dumps({key: value for key, value in step.items()
                                   if key not in shown}))
    for spec in kind.fields if kind else ():
        values.update(field_values(spec, step))
        remove_path(extra, spec.json_path)
    if isinstance(extra.get("config"), dict):
        prune(extra["config"])
    for name in ("config", "unless", "send_window"):
        if extra.get(name) == {}:
            del extra[name]
    return values, extra


def prune(data: dict) -> None:
    """Remove the objects left empty inside `data` once the fields took their values."""
    for key in list(data):
        if isinstance(data[key], dict):
            prune(data[key])
            if not data[key]:
                del data[key]


def error_field(kind: StepKind | None, error_key: str, message: str = "") -> str:
    """The step's form field that an API error about `error_key` ("config.limit",
    "send_window.start", "conditions.all[0].op") belongs next to; "" for the step itself. An
    error about a whole object (a delay's "config") goes to the field the message names
    ('"until" must be…'), else to the object's first field."""
    if error_key == "ref":
        return "ref"
    if error_key.startswith("conditions"):
        return condition_field_name(error_key)
    fields = kind.fields if kind else ()
    covering = [spec for spec in fields if error_key == spec.json_path
                or error_key.startswith(spec.json_path + ".")]
    inside = [spec for spec in fields if spec.json_path.startswith(error_key + ".")]
    named = [spec for spec in covering + inside
             if f'"{spec.json_path.rsplit(".", 1)[-1]}"' in message]
    if named:
        covering, inside = named, []
    if covering:
        best = max(covering, key=lambda spec: len(spec.json_path))
    elif inside:
        best = inside[0]
    else:
        return ""
    return f"{best.name}_amount" if best.kind == "duration" else best.name


PATH_STEP = re.compile(r"^steps\[(\d+)\]\.?(.*)$")
PATH_BRANCH = re.compile(r"^branches\[(\d+)\]\.?(.*)$")
PATH_DEFAULT = re.compile(r"^default\.?(.*)$")


def error_target(path: str, steps: list, message: str) -> tuple[str, str]:
    """(form field name, message) for an API error at `path` ("steps[2].config.limit",
    "steps[0].branches[1].steps[0].unless.step", "name"), given the steps as read from the
    form. A step's error without a field of its own goes to "<step>-__step", a branch's to
    "<branch>-__branch", prefixed with what it is about."""
    prefix, rest, nodes, level, node = "", path, steps, "workflow", None
    while True:
        if level in ("workflow", "branch", "default"):
            match = PATH_STEP.match(rest)
            if not match:
                break
            index = int(match.group(1))
            prefix += f"steps-{index}-"
            node = nodes[index] if index < len(nodes) and isinstance(nodes[index], dict) else {}
            rest, level = match.group(2), "step"
            continue
        branch, default = PATH_BRANCH.match(rest), PATH_DEFAULT.match(rest)
        if branch:
            index = int(branch.group(1))
            branches = node.get("branches") or []
            node = branches[index] if index < len(branches) else {}
            prefix += f"branches-{node.get(BRANCH_INDEX, index)}-"
            nodes, rest, level = node.get("steps") or [], branch.group(2), "branch"
        elif default and (default.group(1) == "" or default.group(1).startswith("steps")):
            node = node.get("default") or {}
            prefix += "default-"
            nodes, rest, level = node.get("steps") or [], default.group(1), "default"
        else:
            break
    if level == "step":
        field = error_field(KINDS.get(node.get("type", "")), rest, message) if rest else ""
        if field:
            return prefix + field, message
        return prefix + "__step", f"{rest}: {message}" if rest else message
    if level == "branch" and rest == "name":
        return prefix + "name", message
    if level == "branch" and rest.startswith("conditions"):
        return prefix + condition_field_name(rest), message
    if level in ("branch", "default"):
        return prefix + "__branch", f"{rest}: {message}" if rest else message
    return rest or "__all__", message


def error_paths(errors: Any, path: str = ""):
    """(path, message) of every message in a DRF `errors` structure: {"steps": {2: {"config":
    [...]}}} gives ("steps[2].config", …); lists of per-item dicts count as indexes."""
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            if key == "non_field_errors":
                yield from error_paths(value, path)
            elif isinstance(key, int) or str(key).isdigit():
                yield from error_paths(value, f"{path}[{key}]")
            else:
                yield from error_paths(value, f"{path}.{key}" if path else str(key))
    elif isinstance(errors, list):
        if errors and all(isinstance(item, Mapping) for item in errors):
            for index, item in enumerate(errors):
                yield from error_paths(item, f"{path}[{index}]")
        else:
            for item in errors:
                yield from error_paths(item, path)
    else:
        yield path, str(errors)
