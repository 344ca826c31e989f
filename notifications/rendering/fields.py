"""A channel template's set of fields: validating and rendering them (the fields each channel has,
and which are HTML, are in the channel table, notifications/channels.py)."""

import json
import re
from collections.abc import Mapping

from ..channels import channel_spec
from .locale_filters import RenderOptions
from .sandbox import TemplateError, parse, render_string, variables_read


def is_html_field(channel: str, field: str) -> bool:
    """True when `field` of a `channel` template is HTML (rendered with autoescape)."""
    spec = channel_spec(channel)
    return spec is not None and field in spec.html_fields


def validate_fields(channel: str, fields: Mapping) -> None:
    """Raise TemplateError for unknown or missing fields and Liquid syntax errors."""
    spec = channel_spec(channel)
    if spec is None:
        raise TemplateError("channel", f"No templates for step type {channel!r}.")
    allowed = spec.fields
    if not isinstance(fields, Mapping):
        raise TemplateError("", "Expected an object of field names to Liquid source.")
    for name in fields:
        if name not in allowed:
            raise TemplateError(
                name, f"Unknown field; {channel} templates have: {', '.join(allowed)}."
            )
    for group in spec.required:
        if not any(fields.get(name) for name in group):
            raise TemplateError(group[0], "This field is required." if len(group) == 1
                                else f"One of {' or '.join(group)} is required.")
    for name, source in fields.items():
        if not isinstance(source, str):
            raise TemplateError(name, "Expected a string of Liquid source.")
        parse(source, html=is_html_field(channel, name), field=name)
        if name in spec.json_fields and source.strip():
            check_json_shape(name, source)


_LIQUID_OUTPUT = re.compile(r"{{-?.*?-?}}", re.S)
_LIQUID_TAG = re.compile(r"{%-?.*?-?%}", re.S)
_TRAILING_COMMA = re.compile(r",\s*([\]}])")
_LEADING_COMMA = re.compile(r"([\[{])\s*,")


def check_json_shape(field: str, source: str) -> None:
    """Raise TemplateError unless the Liquid `source` of a JSON field is a JSON array once its
    Liquid is set aside: each `{{ … }}` read as the number 0 (inside a string it stays text),
    each `{% … %}` tag dropped, a comma next to a bracket ignored. Catches what no variables can
    fix (a missing comma or bracket, an object where the blocks array belongs) when the template
    is saved; the rendered JSON is checked again when the message is sent."""
    skeleton = _LIQUID_TAG.sub("", _LIQUID_OUTPUT.sub("0", source))
    # A loop's separator comma ({% unless forloop.last %},{% endunless %}) stays once the tags
    # are dropped: a comma next to a bracket is the loop's, not a mistake.
    skeleton = _LEADING_COMMA.sub(r"\1", _TRAILING_COMMA.sub(r"\1", skeleton))
    try:
        value = json.loads(skeleton)
    except ValueError as exc:
        raise TemplateError(field, f"Not valid JSON: {exc.msg} (line {exc.lineno} column "
                                   f"{exc.colno}, Liquid set aside).",
                            line=exc.lineno, column=exc.colno) from None
    if not isinstance(value, list):
        raise TemplateError(field, "Expected a JSON array (Slack blocks, Adaptive Card body "
                                   "elements, Discord embeds…), not "
                                   f"{type(value).__name__ if value is not None else 'null'}.")


# No-break spaces are not in the GSM-7 alphabet: one of them (French money and numbers are
# written "1 250,00 €" with U+202F) makes a whole SMS UCS-2, 70 characters a segment instead of
# 160, billed accordingly. An SMS gets plain spaces, as Twilio's Smart Encoding does.
SMS_SPACES = str.maketrans({"\u00a0": " ", "\u2007": " ", "\u202f": " "})


def fields_read(channel: str, fields: Mapping) -> frozenset[str] | None:
    """The top-level variables the non-empty fields of a `channel` template read, or None when
    a field's output may depend on more than their values, the locale and the time zone
    (sandbox.variables_read). render_fields with the same values of these, locale and time zone
    gives the same fields."""
    read: set[str] = set()
    for name, source in fields.items():
        if not source:
            continue
        if not isinstance(source, str):
            return None
        roots = variables_read(source, html=is_html_field(channel, name))
        if roots is None:
            return None
        read |= roots
    return frozenset(read)


def render_fields(channel: str, fields: Mapping, variables: Mapping,
                  options: RenderOptions = RenderOptions()) -> dict[str, str]:
    """Each non-empty field of a channel template rendered with `variables` ({field: text});
    an SMS's no-break spaces become plain spaces (SMS_SPACES). TemplateError names the field
    that failed."""
    rendered = {
        name: render_string(source, variables, html=is_html_field(channel, name), field=name,
                            options=options)
        for name, source in fields.items()
        if source
    }
    if channel == "sms":
        rendered = {name: text.translate(SMS_SPACES) for name, text in rendered.items()}
    return rendered
