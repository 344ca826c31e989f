"""The workflow's `data` as a list of fields (name, type, required, example) instead of JSON
Schema text: rows ↔ JSON Schema + sample data, and rows inferred from sample data.

A dotted name (`order.id`) is a field inside an object. Schemas the rows cannot say (enums,
patterns, `additionalProperties`…) are kept as they are and shown read-only.
"""

import json
import re
from collections.abc import Mapping
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy

from .convert import EMPTY, get_path, items, text
from .declarations import Problems

TYPES = ("string", "number", "integer", "boolean", "array", "object")
TYPE_LABELS = {"string": pgettext_lazy("data type", "text"),
               "number": pgettext_lazy("data type", "number"),
               "integer": pgettext_lazy("data type", "whole number"),
               "boolean": pgettext_lazy("data type", "yes/no"),
               "array": pgettext_lazy("data type", "list"),
               "object": pgettext_lazy("data type", "object")}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
PROPERTY_KEYS = {"type", "examples", "description", "properties", "required"}


def rows_from_schema(schema: Any, sample: Any) -> list[dict] | None:
    """The rows showing `schema` (None when it says more than rows can), each example taken from
    `sample` at the field's path, else from the schema's `examples`. With no schema, the rows
    are inferred from `sample`."""
    if not schema:
        return infer_rows(sample)
    rows: list[dict] = []
    if not _walk_schema(schema, "", rows, sample if isinstance(sample, Mapping) else {}):
        return None
    return rows


def _walk_schema(schema: Any, prefix: str, rows: list, sample: Mapping) -> bool:
    if (not isinstance(schema, Mapping) or schema.get("type") != "object"
            or set(schema) - PROPERTY_KEYS - {"$schema"}):
        return False
    required = schema.get("required", [])
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping) or not isinstance(required, list) \
            or set(required) - set(properties):
        return False
    for name, prop in properties.items():
        path = f"{prefix}{name}"
        if not NAME.match(name) or not isinstance(prop, Mapping) \
                or prop.get("type") not in TYPES or set(prop) - PROPERTY_KEYS:
            return False
        if prop["type"] == "object" and "properties" in prop:
            if not _walk_schema(prop, f"{path}.", rows, sample):
                return False
            if name in required:  # an object required for its own sake: a row says so
                rows.append({"name": path, "type": "object", "required": True, "example": ""})
            continue
        if set(prop) - {"type", "examples", "description"}:
            return False
        example = get_path(sample, path)
        if example is EMPTY and prop.get("examples"):
            example = prop["examples"][0]
        rows.append({"name": path, "type": prop["type"], "required": name in required,
                     "example": "" if example is EMPTY else show_example(example)})
    return True


def infer_rows(sample: Any) -> list[dict]:
    """Rows for every leaf of `sample` (objects become dotted names), typed by their values,
    none required."""
    rows: list[dict] = []

    def walk(value: Any, prefix: str) -> None:
        for name, item in value.items():
            path = f"{prefix}{name}"
            if isinstance(item, Mapping) and item and NAME.match(str(name)):
                walk(item, f"{path}.")
            elif NAME.match(path):
                rows.append({"name": path, "type": json_type(item), "required": False,
                             "example": show_example(item)})

    if isinstance(sample, Mapping):
        walk(sample, "")
    return rows


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return "string"


def show_example(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def parse_example(raw: str, field_type: str) -> Any:
    """An example typed for a field of `field_type`; ValueError saying what is expected."""
    if field_type == "string":
        return raw
    if field_type == "boolean":
        if raw.lower() in ("true", "yes"):
            return True
        if raw.lower() in ("false", "no"):
            return False
        raise ValueError(_("Enter true or false."))
    try:
        value = json.loads(raw)
    except ValueError:
        value = EMPTY
    expected = {"number": (int, float), "integer": (int,), "array": (list,), "object": (dict,)}
    if value is EMPTY or isinstance(value, bool) or not isinstance(value, expected[field_type]):
        if field_type == "number" and isinstance(value, float | int):
            return value
        raise ValueError({"number": _("Enter a number."), "integer": _("Enter a whole number."),
                          "array": _('Enter a JSON list, e.g. ["a", "b"].'),
                          "object": _('Enter a JSON object, e.g. {"id": 1}.')}[field_type])
    return value


def rows_from_form(node: Any) -> list[dict]:
    """The posted rows ({"0": {"name", "type", "required", "example"}, …}), empty ones left
    out, in order."""
    rows = []
    for index, item in items(node):
        row = {"index": index, "name": text(item, "name"), "type": text(item, "type") or "string",
               "required": bool(text(item, "required")), "example": item.get("example", "")}
        if isinstance(row["example"], list):
            row["example"] = row["example"][-1]
        if row["name"] or str(row["example"]).strip():
            rows.append(row)
    return rows


def schema_from_rows(rows: list[dict], problems: Problems) -> tuple[dict | None, dict]:
    """(JSON Schema, sample data) that `rows` describe; problems by field name
    ("fields-<index>-name" …). No rows: no schema."""
    schema: dict = {"type": "object", "properties": {}}
    sample: dict = {}
    seen = set()
    for row in rows:
        prefix = f"fields-{row['index']}-"
        name, field_type = row["name"], row["type"]
        if not NAME.match(name):
            problems.add(prefix + "name", _("Use letters, digits and _, with dots between the "
                                            "parts of a field inside an object (order.id)."))
            continue
        if name in seen:
            problems.add(prefix + "name", _("%(name)s is listed twice.") % {"name": name})
            continue
        seen.add(name)
        if field_type not in TYPES:
            problems.add(prefix + "type",
                         _("Choose one of: %(choices)s.") % {"choices": ", ".join(TYPES)})
            continue
        *parents, last = name.split(".")
        node, sample_node = schema, sample
        for part in parents:
            child = node["properties"].setdefault(part, {"type": "object", "properties": {}})
            if child.get("type") != "object":
                problems.add(prefix + "name", _("%(name)s is not an object.") % {"name": part})
                break
            child.setdefault("properties", {})
            node = child
            sample_node = sample_node.setdefault(part, {})
        else:
            existing = node["properties"].get(last)
            if existing and existing.get("type") == "object" and field_type == "object":
                prop = existing
            else:
                prop = node["properties"][last] = {"type": field_type}
            if row["required"]:
                node.setdefault("required", [])
                if last not in node["required"]:
                    node["required"].append(last)
            raw = str(row["example"]).strip()
            if raw:
                try:
                    value = parse_example(raw, field_type)
                except ValueError as exc:
                    problems.add(prefix + "example", str(exc))
                    continue
                if isinstance(sample_node, dict):
                    sample_node[last] = value
                    if field_type != "object":
                        prop["examples"] = [value]
    return (schema if schema["properties"] else None), sample
