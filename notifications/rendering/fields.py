"""The fields each channel's template has, which are HTML, and rendering or checking a whole set."""

from collections.abc import Mapping

from .locale_filters import RenderOptions
from .sandbox import TemplateError, parse, render_string

# The fields each channel's template has, and which of them are HTML.
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "html", "text"),
    "in_app": ("body", "action_url", "avatar"),
    "sms": ("text",),
    "push": ("title", "body", "data"),
    "chat": ("text", "blocks"),
    "webhook": ("body",),
}
REQUIRED_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    # Each inner tuple: at least one of these must be present.
    "email": (("subject",), ("html", "text")),
    "in_app": (("body",),),
    "sms": (("text",),),
    "push": (("title", "body"),),
    "chat": (("text", "blocks"),),
    "webhook": (),
}
HTML_FIELDS = frozenset({"html"})
MARKDOWN_ISH_HTML_FIELDS = frozenset({("in_app", "body")})


def is_html_field(channel: str, field: str) -> bool:
    """True when `field` of a `channel` template is HTML (rendered with autoescape)."""
    return field in HTML_FIELDS or (channel, field) in MARKDOWN_ISH_HTML_FIELDS


def validate_fields(channel: str, fields: Mapping) -> None:
    """Raise TemplateError for unknown or missing fields and Liquid syntax errors."""
    allowed = CHANNEL_FIELDS.get(channel)
    if allowed is None:
        raise TemplateError("channel", f"No templates for step type {channel!r}.")
    if not isinstance(fields, Mapping):
        raise TemplateError("", "Expected an object of field names to Liquid source.")
    for name in fields:
        if name not in allowed:
            raise TemplateError(
                name, f"Unknown field; {channel} templates have: {', '.join(allowed)}."
            )
    for group in REQUIRED_FIELDS[channel]:
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
