"""The workflow drawn as a flow: one box per step, top to bottom, with what decides whether it
runs (conditions, `unless`, send windows) written out in words; a branch's branches stand side
by side. Plain HTML and CSS (static/clarion/workflow-builder.css), rendered on the server."""

from collections.abc import Mapping
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .convert import duration_parts, show_value
from .declarations import DAY_LABELS, OP_LABELS, kind_for


def describe_conditions(tree: Any) -> str:
    """A condition tree in words: "data.amount ≥ 1000 and (data.plan is pro or …)"."""
    if not isinstance(tree, Mapping) or not tree:
        return ""
    if "all" in tree or "any" in tree:
        joiner = f" {_('and')} " if "all" in tree else f" {_('or')} "
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


def conditions_note(tree: Any) -> str:
    """A step's conditions as its box says them, "only if data.amount ≥ 1000"; "" for none."""
    if not tree:
        return ""
    return _("only if %(conditions)s") % {"conditions": describe_conditions(tree)}


def unless_note(unless: Any) -> str:
    """A step's `unless` as its box says it, "skipped if mail has been read"; "" for none."""
    if not isinstance(unless, Mapping):
        return ""
    return _("skipped if %(step)s has been %(state)s") % {
        "step": unless.get("step", "?"), "state": unless.get("is", "?")}


def branch_condition(tree: Any) -> str:
    """When a branch is taken, as its column's heading says it: "if data.plan is pro"."""
    return _("if %(conditions)s") % {"conditions": describe_conditions(tree) or "…"}


DURATION_WORDS = {
    "seconds": lambda n: ngettext("%(amount)s second", "%(amount)s seconds", n),
    "minutes": lambda n: ngettext("%(amount)s minute", "%(amount)s minutes", n),
    "hours": lambda n: ngettext("%(amount)s hour", "%(amount)s hours", n),
    "days": lambda n: ngettext("%(amount)s day", "%(amount)s days", n),
}


def describe_duration(value: Any) -> str:
    """A duration in words, "1 day", "90 minutes"; "?" when it has no amount."""
    amount, unit = duration_parts(value)
    if not amount:
        return "?"
    count = 1 if amount == "1" else 2  # the plural form for every amount but exactly one
    words = DURATION_WORDS.get(unit)
    return words(count) % {"amount": amount} if words else f"{amount} {unit}"


def step_notes(step: Mapping) -> list[str]:
    """What the box of `step` says besides its type and ref."""
    config = step.get("config") or {}
    notes = []
    step_type = step.get("type")
    if step_type == "delay":
        notes.append(_("wait until %(moment)s") % {"moment": config["until"]} if "until" in config
                     else _("wait %(duration)s") % {"duration": describe_duration(config)})
    elif step_type == "digest":
        window = config.get("window") or {}
        if "daily" in window:
            when = _("daily at %(time)s") % {"time": window["daily"]}
        elif isinstance(window.get("weekly"), Mapping):
            weekly = window["weekly"]
            when = _("weekly on %(day)s at %(time)s") % {
                "day": DAY_LABELS.get(weekly.get("day"), weekly.get("day")),
                "time": weekly.get("time", "?")}
        else:
            when = _("after %(duration)s") % {"duration": describe_duration(window)}
        notes.append(_("collects events, sends %(when)s") % {"when": when}
                     + (_(", one batch per %(key)s") % {"key": config["key"]}
                        if config.get("key") else "")
                     + (_(", early at %(count)s events") % {"count": config["max_events"]}
                        if config.get("max_events") else ""))
    elif step_type == "approval":
        expires = (_("until %(moment)s") % {"moment": config["until"]} if config.get("until")
                   else _("after %(duration)s") % {
                       "duration": describe_duration(config["timeout"])}
                   if config.get("timeout") else _("when the longest wait ends"))
        notes.append(_("asks “%(question)s” on %(channels)s; expires %(expires)s as "
                       "%(outcome)s") % {
            "question": config.get("question", "?"),
            "channels": ", ".join(config.get("channels") or ["in_app", "email"]),
            "expires": expires, "outcome": config.get("default", "rejected")})
    elif step_type == "route":
        channels = config.get("channels") or []
        notes.append(_("tries %(channels)s until one is %(success)s, within %(ttl)s") % {
            "channels": " → ".join(map(str, channels)), "success": config.get("success", "?"),
            "ttl": describe_duration(config.get("ttl"))}
            + (_("; always %(channels)s") % {"channels": ", ".join(map(str, config["always"]))}
               if config.get("always") else ""))
    elif step_type == "throttle":
        notes.append(_("at most %(limit)s per %(window)s") % {
            "limit": config.get("limit", "?"), "window": describe_duration(config.get("window"))}
            + (_(" per %(key)s") % {"key": config["key"]} if config.get("key") else ""))
    notes += [note for note in (conditions_note(step.get("conditions")),
                                unless_note(step.get("unless"))) if note]
    window = step.get("send_window")
    if isinstance(window, Mapping):
        days = window.get("days")
        day_text = (", ".join(str(DAY_LABELS.get(d, d)) for d in days) if days
                    else _("every day"))
        notes.append(_("sends %(days)s %(start)s–%(end)s (%(timezone)s time)") % {
            "days": day_text, "start": window.get("start", "?"), "end": window.get("end", "?"),
            "timezone": window.get("timezone", "recipient")})
    if step.get("urgent"):
        notes.append(_("urgent: passes quiet hours"))
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
            columns = [(branch.get("name", "?"), branch_condition(branch.get("conditions")),
                        branch.get("steps") or [])
                       for branch in step.get("branches") or [] if isinstance(branch, Mapping)]
            if kind.fixed_branches:
                given = {name for name, *_rest in columns}
                columns = [(name, "", branch_steps) for name, _if, branch_steps in columns] + [
                    (name, "", []) for name in kind.fixed_branches if name not in given]
            else:
                columns.append(("default", _("otherwise"),
                                (step.get("default") or {}).get("steps") or []))
            inner = format_html('<div class="wb-branches">{}</div>', format_html_join(
                "", '<div class="wb-branch"><h3><code>{}</code> {}</h3>{}</div>',
                ((name, condition, flow_html(branch_steps, end=False)
                  if branch_steps else format_html('<p class="wb-help">{}</p>', _("No steps.")))
                 for name, condition, branch_steps in columns)))
        boxes.append(format_html(
            '<li class="wb-node wb-node-{}"><span class="wb-node-type">{}</span> <code>{}</code>'
            '{}{}</li>', css, label, step.get("ref", ""),
            format_html('<ul class="wb-node-notes">{}</ul>', format_html_join(
                "", "<li>{}</li>", ((note,) for note in notes))) if notes else "", inner))
    head = format_html('<li class="wb-node wb-node-start">{}</li>', start) if start else ""
    tail = format_html('<li class="wb-node wb-node-end">{}</li>', _("End")) if end else ""
    return format_html('<ol class="wb-flow">{}{}{}</ol>', head,
                       format_html_join("", "{}", ((box,) for box in boxes)), tail)
