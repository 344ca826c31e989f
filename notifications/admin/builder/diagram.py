"""The workflow drawn as a flow: one box per step, top to bottom, with what decides whether it
runs (conditions, `unless`, send windows) written out in words; a branch's branches stand side
by side. Plain HTML and CSS (static/clarion/workflow-builder.css), rendered on the server."""

from collections.abc import Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from .convert import duration_parts, show_value
from .declarations import DAY_LABELS, OP_LABELS, kind_for


def describe_conditions(tree: Any) -> str:
    """A condition tree in words: "data.amount ≥ 1000 and (data.plan is pro or …)"."""
    if not isinstance(tree, Mapping) or not tree:
        return ""
    if "all" in tree or "any" in tree:
        joiner = " and " if "all" in tree else " or "
        parts = []
        for item in tree.get("all", tree.get("any")) or []:
            text = describe_conditions(item)
            nested = isinstance(item, Mapping) and ("all" in item or "any" in item)
            parts.append(f"({text})" if nested and len(item.get("all", item.get("any"))) > 1
                         else text)
        return joiner.join(parts)
    op = tree.get("op", "")
    words = f"{tree.get('path', '?')} {OP_LABELS.get(op, op)}"
    if "value" in tree:
        words += f" {show_value(tree['value'], op)}"
    return words


def describe_duration(value: Any) -> str:
    amount, unit = duration_parts(value)
    if not amount:
        return "?"
    return f"{amount} {unit[:-1] if amount == '1' else unit}"


def step_notes(step: Mapping) -> list[str]:
    """What the box of `step` says besides its type and ref."""
    config = step.get("config") or {}
    notes = []
    step_type = step.get("type")
    if step_type == "delay":
        notes.append(f"wait until {config['until']}" if "until" in config
                     else f"wait {describe_duration(config)}")
    elif step_type == "digest":
        window = config.get("window") or {}
        if "daily" in window:
            when = f"daily at {window['daily']}"
        elif isinstance(window.get("weekly"), Mapping):
            weekly = window["weekly"]
            when = (f"weekly on {DAY_LABELS.get(weekly.get('day'), weekly.get('day'))} at "
                    f"{weekly.get('time', '?')}")
        else:
            when = f"after {describe_duration(window)}"
        notes.append(f"collects events, sends {when}"
                     + (f", one batch per {config['key']}" if config.get("key") else "")
                     + (f", early at {config['max_events']} events"
                        if config.get("max_events") else ""))
    elif step_type == "approval":
        expires = (f"until {config['until']}" if config.get("until") else
                   f"after {describe_duration(config['timeout'])}" if config.get("timeout")
                   else "when the longest wait ends")
        notes.append(f"asks “{config.get('question', '?')}” on "
                     f"{', '.join(config.get('channels') or ['in_app', 'email'])}; expires "
                     f"{expires} as {config.get('default', 'rejected')}")
    elif step_type == "route":
        channels = config.get("channels") or []
        notes.append(f"tries {' → '.join(map(str, channels))} until one is "
                     f"{config.get('success', '?')}, within {describe_duration(config.get('ttl'))}"
                     + (f"; always {', '.join(map(str, config['always']))}"
                        if config.get("always") else ""))
    elif step_type == "throttle":
        notes.append(f"at most {config.get('limit', '?')} per "
                     f"{describe_duration(config.get('window'))}"
                     + (f" per {config['key']}" if config.get("key") else ""))
    if step.get("conditions"):
        notes.append(f"only if {describe_conditions(step['conditions'])}")
    unless = step.get("unless")
    if isinstance(unless, Mapping):
        notes.append(f"skipped if {unless.get('step', '?')} has been {unless.get('is', '?')}")
    window = step.get("send_window")
    if isinstance(window, Mapping):
        days = window.get("days")
        day_text = ", ".join(DAY_LABELS.get(d, str(d)) for d in days) if days else "every day"
        notes.append(f"sends {day_text} {window.get('start', '?')}–{window.get('end', '?')} "
                     f"({window.get('timezone', 'recipient')} time)")
    if step.get("urgent"):
        notes.append("urgent: passes quiet hours")
    return notes


def flow_html(steps: list[Mapping], *, start: str = "", end: bool = True) -> SafeString:
    """The steps as a vertical flow (an ordered list of boxes), `start` heading it; a branch
    step's branches side by side, each a flow of its own."""
    boxes = []
    for step in steps:
        kind = kind_for(step.get("type", ""))
        label = kind.label if kind else step.get("type", "?")
        css = "channel" if kind and kind.channel else "function"
        notes = step_notes(step)
        inner = ""
        if kind and kind.nested:
            columns = [(branch.get("name", "?"),
                        f"if {describe_conditions(branch.get('conditions')) or '…'}",
                        branch.get("steps") or [])
                       for branch in step.get("branches") or [] if isinstance(branch, Mapping)]
            if kind.fixed_branches:
                given = {name for name, *_ in columns}
                columns = [(name, "", branch_steps) for name, _, branch_steps in columns] + [
                    (name, "", []) for name in kind.fixed_branches if name not in given]
            else:
                columns.append(("default", "otherwise",
                                (step.get("default") or {}).get("steps") or []))
            inner = format_html('<div class="wb-branches">{}</div>', format_html_join(
                "", '<div class="wb-branch"><h3><code>{}</code> {}</h3>{}</div>',
                ((name, condition, flow_html(branch_steps, end=False)
                  if branch_steps else mark_safe('<p class="wb-help">No steps.</p>'))
                 for name, condition, branch_steps in columns)))
        boxes.append(format_html(
            '<li class="wb-node wb-node-{}"><span class="wb-node-type">{}</span> <code>{}</code>'
            '{}{}</li>', css, label, step.get("ref", ""),
            format_html('<ul class="wb-node-notes">{}</ul>', format_html_join(
                "", "<li>{}</li>", ((note,) for note in notes))) if notes else "", inner))
    head = format_html('<li class="wb-node wb-node-start">{}</li>', start) if start else ""
    tail = format_html('<li class="wb-node wb-node-end">{}</li>', "End") if end else ""
    return format_html('<ol class="wb-flow">{}{}{}</ol>', head,
                       format_html_join("", "{}", ((box,) for box in boxes)), tail)
