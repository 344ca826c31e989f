"""Novu's workflow JSON as Clarion workflows.

Reads what Novu's v2 API answers for `GET /v2/workflows/{workflowId}` (a workflow: `workflowId`,
`name`, `active`, `payloadSchema`, `tags`, `steps: [{stepId, name, type, controlValues}]`), bare
or wrapped in `{"data": …}`, one workflow or a list of them. Novu's templates are Liquid whose
roots are `payload` and `subscriber`: they become Clarion's `data` and `recipient`
(`subscriber.firstName` → `recipient.name`, `subscriber.subscriberId` → `recipient.id`).

Mapped: email (HTML editor), SMS, push, in-app and chat steps; delays (`regular`); digests
(`amount`/`unit`, `digestKey`). Reported and left out: block-editor (Maily) emails, steps with
a `skip` condition (JSON Logic), throttle, custom and HTTP steps, and any other type.
"""

import json
import re
from collections.abc import Mapping
from pathlib import Path

from . import Unmapped, WorkflowImport

UNITS = {"seconds": ("seconds", 1), "minutes": ("minutes", 1), "hours": ("hours", 1),
         "days": ("days", 1), "weeks": ("days", 7), "months": ("days", 30)}
CHANNELS = {"email": "email", "sms": "sms", "push": "push", "in_app": "in_app", "chat": "chat"}
VARIABLES = [
    (re.compile(r"\bsubscriber\.(firstName|lastName)\b"), "recipient.name"),
    (re.compile(r"\bsubscriber\.subscriberId\b"), "recipient.id"),
    (re.compile(r"\bsubscriber\."), "recipient."),
    (re.compile(r"\bpayload\."), "data."),
]


class NovuExportError(ValueError):
    """The file is not Novu workflow JSON; the message says why."""


def liquid(text):
    """A Novu template string with its variables in Clarion's names."""
    if not isinstance(text, str):
        return text
    for pattern, replacement in VARIABLES:
        text = pattern.sub(replacement, text)
    return text


def _duration(values: Mapping) -> dict:
    unit = values.get("unit")
    if unit not in UNITS or not isinstance(values.get("amount"), int | float):
        raise ValueError(f"the duration {values.get('amount')!r} {unit!r} is not one Clarion "
                         "reads")
    name, factor = UNITS[unit]
    return {name: values["amount"] * factor}


def _templates(channel: str, values: Mapping) -> dict:
    if channel == "email":
        if values.get("editorType") == "block":
            raise ValueError("block-editor (Maily) emails are not imported; switch the step "
                             "to the HTML editor in Novu and export again")
        fields = {"subject": values.get("subject"), "html": values.get("body")}
    elif channel == "in_app":
        redirect = values.get("redirect") or (values.get("primaryAction") or {}).get(
            "redirect") or {}
        fields = {"body": values.get("body"), "action_url": redirect.get("url"),
                  "avatar": values.get("avatar")}
    elif channel == "push":
        fields = {"title": values.get("subject"), "body": values.get("body")}
    else:  # sms, chat
        fields = {"text": values.get("body")}
    return {"en": {name: liquid(value) for name, value in fields.items()
                   if value not in (None, "")}}


def _step(step: Mapping) -> dict:
    """One Novu step as a Clarion step; raises ValueError saying why it cannot be."""
    kind = step.get("type")
    values = step.get("controlValues") or step.get("controls", {}).get("values") or {}
    ref = step["ref"]
    if values.get("skip"):
        raise ValueError("its skip condition (JSON Logic) has no Clarion equivalent")
    if kind in CHANNELS:
        return {"ref": ref, "type": CHANNELS[kind], "templates": _templates(kind, values)}
    if kind == "delay":
        if values.get("type", "regular") != "regular":
            raise ValueError(f"the {values.get('type')!r} delay has no Clarion equivalent")
        return {"ref": ref, "type": "delay", "config": _duration(values)}
    if kind == "digest":
        config = {"window": _duration(values)}
        if values.get("digestKey"):
            config["key"] = liquid(values["digestKey"]
                                   if "." in values["digestKey"]
                                   else f"payload.{values['digestKey']}")
        if values.get("lookBackWindow"):
            raise ValueError("a digest look-back window has no Clarion equivalent")
        return {"ref": ref, "type": "digest", "config": config}
    raise ValueError(f"Novu {kind} steps have no Clarion equivalent")


def _ref(step: Mapping, index: int) -> str:
    ref = step.get("stepId") or step.get("name") or f"step-{index + 1}"
    return re.sub(r"[^a-zA-Z0-9_.:-]", "-", str(ref))[:64]


def read_workflow(workflow: Mapping) -> WorkflowImport:
    """One workflow of Novu's v2 API JSON."""
    key = workflow.get("workflowId") or workflow.get("triggerIdentifier")
    if not isinstance(key, str):
        raise NovuExportError("A workflow without `workflowId`.")
    unmapped: list[Unmapped] = []
    steps = []
    for index, step in enumerate(workflow.get("steps") or []):
        ref = _ref(step, index)
        try:
            steps.append(_step({**step, "ref": ref}))
        except ValueError as exc:
            unmapped.append(Unmapped(ref, str(step.get("type")), f"{exc}; left out"))
    tags = workflow.get("tags") or []
    body = {"name": workflow.get("name") or key, "category": tags[0] if tags else "",
            "active": workflow.get("active", True) is not False, "steps": steps}
    if len(tags) > 1:
        unmapped.append(Unmapped("workflow", "tags", f"Clarion keeps one category; kept "
                                 f"{tags[0]!r}, not {', '.join(map(repr, tags[1:]))}"))
    if workflow.get("payloadSchema"):
        body["data_schema"] = workflow["payloadSchema"]
    if workflow.get("critical"):
        body["critical"] = True
    return WorkflowImport(key=key, body=body, unmapped=unmapped)


def read_export(path: Path) -> list[WorkflowImport]:
    """Every workflow of a Novu JSON file (one workflow, a list, or either in {"data": …})."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise NovuExportError(f"{path}: {exc}") from None
    if isinstance(document, Mapping) and set(document) == {"data"}:
        document = document["data"]
    workflows = document if isinstance(document, list) else [document]
    if not all(isinstance(w, Mapping) for w in workflows):
        raise NovuExportError(f"{path}: expected a workflow object or a list of them.")
    return [read_workflow(w) for w in workflows]
