"""A channel template's set of fields: validating and rendering them (the fields each channel has,
and which are HTML, are in the channel table, notifications/channels.py)."""

from collections.abc import Mapping

from ..channels import channel_spec
from .locale_filters import RenderOptions
from .sandbox import TemplateError, parse, render_string


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


def render_fields(channel: str, fields: Mapping, variables: Mapping,
                  options: RenderOptions = RenderOptions()) -> dict[str, str]:
    """Each non-empty field of a channel template rendered with `variables` ({field: text});
    TemplateError names the field that failed."""
    return {
        name: render_string(source, variables, html=is_html_field(channel, name), field=name,
                            options=options)
        for name, source in fields.items()
        if source
    }
