"""The builder's HTML: one card per step with its declared fields, the conditions builder, the
data fields table. Every control sits inside its <label> (or a fieldset with a legend), so each
has an accessible name; `data-name` is its name inside its step, from which the page's script
renumbers the full names when steps are added, moved, duplicated or removed."""

import json
from collections.abc import Iterable, Mapping

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext, pgettext_lazy

from ...channels import CHANNELS
from ...conditions import OPS
from .convert import NEW_TEMPLATES, ORIGINAL, condition_rows, show_value, step_values
from .declarations import OP_LABELS, UNIT_CHOICES, Field, Problems, StepKind, kind_for
from .schema import TYPE_LABELS, TYPES


def join(parts: Iterable) -> SafeString:
    return mark_safe("".join(str(part) for part in parts))  # noqa: S308 (parts are escaped)


def errors_html(messages: list[str]) -> SafeString:
    if not messages:
        return mark_safe("")
    return format_html('<ul class="errorlist wb-error">{}</ul>',
                       format_html_join("", "<li>{}</li>", ((m,) for m in messages)))


def options(choices, selected, *, blank: str | None = None) -> SafeString:
    rows = [("", blank)] if blank is not None else []
    rows += list(choices)
    return format_html_join("", '<option value="{}"{}>{}</option>', (
        (value, mark_safe(" selected") if value == selected else "", label)
        for value, label in rows))


def text_input(name: str, full: str, value, *, kind: str = "text", placeholder: str = "",
               extra: str = "", invalid: bool = False) -> SafeString:
    input_type = {"time": "time"}.get(kind, "text")
    mode = ' inputmode="decimal"' if kind in ("integer", "number") else ""
    return format_html('<input type="{}" data-name="{}" name="{}" value="{}"{}{}{}{}>',
                       input_type, name, full, value if value is not None else "",
                       format_html(' placeholder="{}"', placeholder) if placeholder else "",
                       mark_safe(mode), mark_safe(extra),
                       mark_safe(' aria-invalid="true"') if invalid else "")


def field_html(spec: Field, prefix: str, values: Mapping, problems: Problems) -> SafeString:
    """One declared field, labelled, with its errors beneath it."""
    full = prefix + spec.name
    help_html = format_html('<small class="wb-help">{}</small>', spec.help) if spec.help else ""
    if spec.kind == "duration":
        amount, unit = f"{spec.name}_amount", f"{spec.name}_unit"
        messages = problems.get(prefix + amount) + problems.get(prefix + unit)
        return format_html(
            '<fieldset class="wb-field wb-duration"><legend>{}</legend>'
            '<label><span class="wb-sr">{}</span>{}</label>'
            '<label><span class="wb-sr">{}</span><select data-name="{}" name="{}">{}'
            '</select></label>{}{}</fieldset>',
            spec.label, _("%(field)s (amount)") % {"field": spec.label},
            text_input(amount, prefix + amount, values.get(amount, ""), kind="number",
                       invalid=bool(messages)),
            _("%(field)s (unit)") % {"field": spec.label}, unit, prefix + unit,
            options(UNIT_CHOICES, values.get(unit) or "minutes"),
            help_html, errors_html(messages))
    messages = problems.get(full)
    value = values.get(spec.name, "")
    if spec.kind == "checkbox":
        return format_html(
            '<div class="wb-field wb-check"><label><input type="checkbox" data-name="{}" '
            'name="{}" value="on"{}> {}</label>{}{}</div>',
            spec.name, full, mark_safe(" checked") if value else "", spec.label, help_html,
            errors_html(messages))
    if spec.kind == "days":
        boxes = format_html_join("", '<label class="wb-day"><input type="checkbox" '
                                     'data-name="{}" name="{}" value="{}"{}> {}</label>', (
            (spec.name, full, day, mark_safe(" checked") if day in (value or []) else "", label)
            for day, label in spec.choices))
        return format_html('<fieldset class="wb-field wb-days"><legend>{}</legend>{}{}{}'
                           '</fieldset>', spec.label, boxes, help_html, errors_html(messages))
    if spec.kind == "select":
        control = format_html('<select data-name="{}" name="{}"{}>{}</select>', spec.name, full,
                              mark_safe(' aria-invalid="true"') if messages else "",
                              options(spec.choices, value, blank="—"))
    else:
        extra = ' list="wb-channel-refs"' if spec.name == "unless_step" else ""
        control = text_input(spec.name, full, value, kind=spec.kind,
                             placeholder=spec.placeholder, extra=extra, invalid=bool(messages))
    return format_html('<div class="wb-field wb-{}"><label><span>{}</span>{}</label>{}{}</div>',
                       spec.kind, spec.label, control, help_html, errors_html(messages))


def fields_html(kind: StepKind, prefix: str, values: Mapping, problems: Problems) -> SafeString:
    """The kind's fields; those of one `group` under a collapsible heading, open when any of
    them has a value or an error."""
    parts, groups = [], {}
    for spec in kind.fields:
        if spec.group:
            groups.setdefault(spec.group, []).append(spec)
            if len(groups[spec.group]) == 1:
                parts.append(("group", spec.group))
        else:
            parts.append(field_html(spec, prefix, values, problems))
    html = []
    for part in parts:
        if not isinstance(part, tuple):
            html.append(part)
            continue
        specs = groups[part[1]]
        used = any(values.get(s.name) not in (None, "", [], False) and s.kind != "duration"
                   for s in specs) or any(problems.get(prefix + s.name) for s in specs)
        html.append(format_html(
            '<details class="wb-more"{}><summary>{}</summary><div class="wb-fields">{}</div>'
            '</details>', mark_safe(" open") if used else "", part[1],
            join(field_html(s, prefix, values, problems) for s in specs)))
    return join(html)


# --- Conditions ---------------------------------------------------------------------------------

def leaf_html(leaf: Mapping, prefix: str, problems: Problems) -> SafeString:
    op = leaf.get("op", "eq")
    value = show_value(leaf["value"], op) if "value" in leaf else ""
    cells = []
    for name, label, control in (
        ("path", _("Path"), text_input("path", prefix + "path", leaf.get("path", ""),
                                    placeholder="data.amount",
                                    invalid=bool(problems.get(prefix + "path")))),
        ("op", _("Operator"), format_html('<select data-name="op" name="{}">{}</select>',
                                       prefix + "op", options(
                                           [(o, OP_LABELS[o]) for o in OPS], op))),
        ("value", _("Value"), text_input("value", prefix + "value", value,
                                      invalid=bool(problems.get(prefix + "value")))),
    ):
        cells.append(format_html('<div class="wb-field wb-cond-{}"><label><span>{}</span>{}'
                                 '</label>{}</div>', name, label, control,
                                 errors_html(problems.get(prefix + name))))
    return format_html(
        '<li class="wb-cond" data-item>{}<button type="button" class="wb-btn wb-remove" '
        'data-action="remove">{}</button></li>', join(cells), _("Remove condition"))


def group_html(group: Mapping, prefix: str, problems: Problems, *, root: bool,
               root_label: str | None = None) -> SafeString:
    rows = []
    for index, item in enumerate(group.get("items", [])):
        name = f"{prefix}items-{index}-"
        rows.append(group_html(item, name, problems, root=False) if "mode" in item
                    else leaf_html(item, name, problems))
    modes = [("all", _("all of these")), ("any", _("any of these"))]
    select = format_html(
        '<label class="wb-field wb-mode"><span>{}</span><select data-name="mode" name="{}">{}'
        '</select></label>', (root_label or _("Send only if")) if root else _("Match"),
        prefix + "mode", options(modes, group.get("mode", ""),
                                 blank=_("always (no conditions)") if root else None))
    buttons = format_html(
        '<div class="wb-cond-actions"><button type="button" class="wb-btn" '
        'data-action="add-condition">{}</button> <button type="button" '
        'class="wb-btn" data-action="add-group">{}</button>{}</div>',
        _("Add condition"), _("Add group"),
        "" if root else format_html(' <button type="button" class="wb-btn wb-remove" '
                                    'data-action="remove">{}</button>', _("Remove group")))
    body = format_html('{}{}<ol class="wb-cond-list" data-list="items">{}</ol>{}', select,
                       errors_html(problems.get(prefix + "mode")), join(rows), buttons)
    if root:
        return format_html('<div class="wb-cond-root" data-part="when">{}</div>', body)
    return format_html('<li class="wb-cond-group" data-item>{}</li>', body)


def conditions_html(step: Mapping, prefix: str, problems: Problems) -> SafeString:
    group = condition_rows(step.get("conditions"))
    has_errors = any(name.startswith(prefix + "when-") for name in problems.by_name)
    return format_html('<details class="wb-more wb-conditions"{}><summary>{}{}</summary>'
                       '{}</details>', mark_safe(" open") if group["items"] or has_errors else "",
                       _("Conditions"),
                       f" ({len(group['items'])})" if group["items"] else "",
                       group_html(group, prefix + "when-", problems, root=True))


# --- Steps ------------------------------------------------------------------------------------

STEP_ACTIONS = (("up", gettext_lazy("Move up step")), ("down", gettext_lazy("Move down step")),
                ("duplicate", gettext_lazy("Duplicate step")),
                ("remove", gettext_lazy("Remove step")))


def step_html(step: Mapping, prefix: str, problems: Problems, *,
              templates: Mapping | None = None, kinds: list[StepKind] = ()) -> SafeString:
    """One step's card: its type, ref and actions, its declared fields, its conditions, its
    branches (branch steps) and (channel steps) its templates' status (`templates`: by saved
    ref)."""
    templates = templates or {}
    original = step.get(ORIGINAL, "")
    kind = kind_for(step.get("type", ""))
    values, extra = step_values(step, kind)
    label = kind.label if kind else step.get("type", "?")
    head = format_html(
        '<div class="wb-step-head"><span class="wb-step-type">{}</span>'
        '<div class="wb-field wb-ref"><label><span>{}</span>{}</label>{}</div>'
        '<input type="hidden" data-name="type" name="{}type" value="{}">'
        '<input type="hidden" data-name="original" name="{}original" value="{}">'
        '<input type="hidden" data-name="extra" name="{}extra" value="{}">'
        '<div class="wb-step-actions">{}</div></div>',
        label, _("Ref"), text_input("ref", prefix + "ref", values["ref"], extra=" required",
                          invalid=bool(problems.get(prefix + "ref"))),
        errors_html(problems.get(prefix + "ref")),
        prefix, step.get("type", ""), prefix, original, prefix,
        json.dumps(extra, ensure_ascii=False, sort_keys=True) if extra else "",
        format_html_join(" ", '<button type="button" class="wb-btn" data-action="{}">{}'
                              '</button>', STEP_ACTIONS))
    if kind is None:
        body = format_html('<p class="wb-help">{}</p><pre>{}</pre>', _(
            "The builder has no form for %(type)s steps yet: this one is kept as it is (change "
            "it with JSON import).") % {"type": label},
            json.dumps(extra, indent=2, ensure_ascii=False))
    else:
        body = format_html('<p class="wb-help">{}</p><div class="wb-fields">{}</div>',
                           kind.description, fields_html(kind, prefix, values, problems))
        if kind.nested:
            body = format_html("{}{}", body, branches_html(step, prefix, problems,
                                                          templates=templates, kinds=kinds))
        if kind.templates:
            body = format_html("{}{}", body, new_templates_html(
                step, prefix, templates.get(("channels", original), set())))
    return format_html(
        '<li class="wb-step{}" data-item data-type="{}">{}{}<div class="wb-step-body">{}{}{}'
        '</div></li>', " wb-channel" if kind and kind.has_templates else "", step.get("type", ""),
        head, errors_html(problems.get(prefix + "__step")), body,
        conditions_html(step, prefix, problems), templates.get(original, "") if original else
        (format_html('<p class="wb-help">{}</p>', _("Save the workflow to add its templates."))
         if kind and kind.has_templates else ""))


CHANNEL_FIELDS_BY_KEY = {spec.key: spec for spec in CHANNELS}
# An approval's outcomes, as its branches' headings say them.
OUTCOME_LABELS = {"approved": pgettext_lazy("outcome", "approved"),
                  "rejected": pgettext_lazy("outcome", "rejected"),
                  "expired": pgettext_lazy("outcome", "expired")}


def new_templates_html(step: Mapping, prefix: str, saved_channels: set) -> SafeString:
    """A route step's first template for each of its channels that has none yet (the API
    needs one per channel), in the workflow's default locale; the template editor does the
    rest once the step is saved."""
    channels = (step.get("config") or {}).get("channels")
    missing = [channel for channel in channels if channel in CHANNEL_FIELDS_BY_KEY
               and channel not in saved_channels] if isinstance(channels, list) else []
    if not missing:
        return mark_safe("")
    written = step.get(NEW_TEMPLATES) or {}
    groups = []
    for channel in missing:
        spec = CHANNEL_FIELDS_BY_KEY[channel]
        boxes = format_html_join("", '<div class="wb-field"><label><span>{} {}</span><textarea '
                                     'data-name="{}" name="{}tpl-{}-{}" rows="2">{}</textarea>'
                                     '</label></div>', (
            (spec.label, name, name, prefix, channel, name,
             written.get(channel, {}).get(name, "")) for name in spec.fields))
        groups.append(format_html('<fieldset class="wb-field wb-tpl" data-part="{}"><legend>{}'
                                  '</legend>{}</fieldset>', channel, spec.label, boxes))
    return format_html(
        '<details class="wb-more" open><summary>{}</summary><p class="wb-help">{}</p>'
        '<div class="wb-fields" data-part="tpl">{}</div></details>',
        _("First templates for %(channels)s") % {"channels": ", ".join(missing)},
        _("A route needs a template for each channel; write the first one here (in the "
          "workflow's default locale) and edit it in the template editor later."), join(groups))


def steps_html(steps: list[Mapping], prefix: str, problems: Problems, *, templates=None,
               kinds: list[StepKind] = ()) -> SafeString:
    """The steps as an ordered list named "steps" (`prefix` is the full name, e.g.
    "steps-0-branches-1-steps"), and the control that adds one."""
    cards = [step_html(step, f"{prefix}-{index}-", problems, templates=templates, kinds=kinds)
             for index, step in enumerate(steps)]
    return format_html(
        '<div class="wb-steps-block"><ol class="wb-steps" data-list="steps">{}</ol>{}</div>',
        join(cards), add_step_html(kinds))


def add_step_html(kinds: list[StepKind]) -> SafeString:
    if not kinds:
        return mark_safe("")
    return format_html(
        '<div class="wb-add"><label><span>{}</span><select data-add-type>{}</select>'
        '</label><button type="button" class="wb-btn" data-action="add-step">{}</button>'
        '</div>', _("New step"), format_html_join("", '<option value="{}">{}</option>',
                                   ((kind.type, kind.label) for kind in kinds)),
        _("Add step"))


def fixed_branch_html(name: str, branch: Mapping, prefix: str, problems: Problems, *,
                      templates=None, kinds: list[StepKind] = ()) -> SafeString:
    """One branch of an outcome (an approval's "approved"…): its name is fixed."""
    return format_html(
        '<li class="wb-branch" data-item><h3>{}</h3><input type="hidden" data-name="name" '
        'name="{}name" value="{}">{}{}</li>',
        pgettext("branch", "If %(outcome)s") % {"outcome": OUTCOME_LABELS.get(name, name)},
        prefix, name,
        errors_html(problems.get(prefix + "__branch") + problems.get(prefix + "name")),
        steps_html(branch.get("steps") or [], prefix + "steps", problems, templates=templates,
                   kinds=kinds))


def branch_html(branch: Mapping, prefix: str, problems: Problems, *, templates=None,
                kinds: list[StepKind] = ()) -> SafeString:
    """One branch: its name, the conditions that take it, its steps."""
    group = condition_rows(branch.get("conditions"))
    name_errors = problems.get(prefix + "name")
    return format_html(
        '<li class="wb-branch" data-item><div class="wb-field"><label><span>{}</span>'
        '{}</label>{}</div>{}{}{}<button type="button" class="wb-btn wb-remove" '
        'data-action="remove">{}</button></li>', _("Branch name"),
        text_input("name", prefix + "name", branch.get("name", ""), invalid=bool(name_errors)),
        errors_html(name_errors), errors_html(problems.get(prefix + "__branch")),
        group_html(group, prefix + "when-", problems, root=True,
                   root_label=_("Take this branch if")),
        steps_html(branch.get("steps") or [], prefix + "steps", problems, templates=templates,
                   kinds=kinds), _("Remove branch"))


def branches_html(step: Mapping, prefix: str, problems: Problems, *, templates=None,
                  kinds: list[StepKind] = ()) -> SafeString:
    """A branch step's branches side by side, then its default branch."""
    fixed = getattr(kind_for(step.get("type", "")), "fixed_branches", ())
    if fixed:
        given = {b.get("name"): b for b in step.get("branches") or [] if isinstance(b, Mapping)}
        columns = [fixed_branch_html(name, given.get(name, {}), f"{prefix}branches-{index}-",
                                     problems, templates=templates, kinds=kinds)
                   for index, name in enumerate(fixed)]
        return format_html('<div class="wb-branches-block"><div class="wb-branches">'
                           '<ol class="wb-branch-list" data-list="branches">{}</ol></div></div>',
                           join(columns))
    branches = [branch_html(branch, f"{prefix}branches-{index}-", problems,
                            templates=templates, kinds=kinds)
                for index, branch in enumerate(step.get("branches") or [])]
    default = step.get("default") or {}
    return format_html(
        '<div class="wb-branches-block"><div class="wb-branches">'
        '<ol class="wb-branch-list" data-list="branches">{}</ol>'
        '<div class="wb-branch wb-default" data-part="default"><h3>{}</h3>{}{}</div></div>'
        '<button type="button" class="wb-btn" data-action="add-branch">{}</button></div>',
        join(branches), _("Default: when no branch is taken"),
        errors_html(problems.get(prefix + "default-__branch")),
        steps_html(default.get("steps") or [], prefix + "default-steps", problems,
                   templates=templates, kinds=kinds), _("Add branch"))


def new_step_templates(kinds: list[StepKind]) -> SafeString:
    """A <template> per addable kind, cloned by the script when a step is added; and the
    empty condition row and group."""
    none = Problems()
    steps = format_html_join("", '<template data-new-step="{}">{}</template>', (
        (kind.type, step_html({"type": kind.type, "ref": "",
                               **({"branches": [{"name": "", "conditions": {
                                   "all": [{"path": "", "op": "eq"}]}}]} if kind.nested
                                  else {})},
                              "steps-0-", none, kinds=kinds))
        for kind in kinds))
    return format_html(
        '{}<template data-new="condition">{}</template><template data-new="group">{}</template>'
        '<template data-new="field">{}</template><template data-new="branch">{}</template>',
        steps,
        leaf_html({"op": "eq"}, "c-", none),
        group_html({"mode": "all", "items": [{"op": "eq"}]}, "g-", none, root=False),
        data_field_html({"name": "", "type": "string", "required": False, "example": ""},
                        "fields-0-", none),
        branch_html({"name": "", "conditions": {"all": [{"path": "", "op": "eq"}]}},
                    "steps-0-branches-0-", none, kinds=kinds))


# --- Data fields ------------------------------------------------------------------------------

def data_field_html(row: Mapping, prefix: str, problems: Problems) -> SafeString:
    cells = [
        format_html('<div class="wb-field"><label><span>{}</span>{}</label>{}</div>', _("Name"),
                    text_input("name", prefix + "name", row["name"], placeholder="order.id",
                               invalid=bool(problems.get(prefix + "name"))),
                    errors_html(problems.get(prefix + "name"))),
        format_html('<div class="wb-field"><label><span>{}</span><select data-name="type" '
                    'name="{}">{}</select></label>{}</div>', _("Type"), prefix + "type",
                    options([(t, TYPE_LABELS[t]) for t in TYPES], row["type"]),
                    errors_html(problems.get(prefix + "type"))),
        format_html('<div class="wb-field wb-check"><label><input type="checkbox" '
                    'data-name="required" name="{}" value="on"{}> {}</label></div>',
                    prefix + "required", mark_safe(" checked") if row["required"] else "",
                    _("Required")),
        format_html('<div class="wb-field"><label><span>{}</span>{}</label>{}</div>',
                    _("Example"), text_input("example", prefix + "example", row["example"],
                               invalid=bool(problems.get(prefix + "example"))),
                    errors_html(problems.get(prefix + "example"))),
    ]
    return format_html('<li class="wb-data-field" data-item>{}<button type="button" '
                       'class="wb-btn wb-remove" data-action="remove">{}</button></li>',
                       join(cells), _("Remove field"))


def data_fields_html(rows: list[Mapping], problems: Problems) -> SafeString:
    return format_html('<ol class="wb-data-fields" data-list="fields">{}</ol>',
                       join(data_field_html(row, f"fields-{row.get('index', index)}-", problems)
                            for index, row in enumerate(rows)))
