"""Liquid rendering of user-edited templates: one sandboxed environment for the whole product.

python-liquid reads only mappings and sequences (never Python attributes), so a template can reach
nothing but the scope we give it. HTML fields render with autoescape on; `include` and `render`
are removed (there is no file system to reach); loops, output and nesting are bounded.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from html import unescape

from django.utils.html import strip_tags
from liquid import Environment
from liquid.exceptions import LiquidError
from markupsafe import Markup

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


class SandboxedEnvironment(Environment):
    context_depth_limit = 30
    loop_iteration_limit = 10_000
    local_namespace_limit = 100_000
    output_stream_limit = 1_000_000

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        for name in ("include", "render"):
            self.tags.pop(name, None)


@cache
def environment(*, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=html)


class TemplateError(ValueError):
    """A template that does not parse or render; `field` names which, for API and admin errors."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def describe(exc: LiquidError) -> str:
    """A one-line message with the line and column, for API fields and the admin."""
    message = str(exc.message or type(exc).__name__)
    token = exc.token
    if token is not None and token.start_index >= 0:
        before = token.source[: token.start_index]
        line = before.count("\n") + 1
        column = token.start_index - (before.rfind("\n") + 1) + 1
        return f"{message} (line {line}, column {column})"
    return message


def _is_html(channel: str, field: str) -> bool:
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
        try:
            environment(html=_is_html(channel, name)).from_string(source)
        except LiquidError as exc:
            raise TemplateError(name, f"Liquid syntax error: {describe(exc)}") from exc


def render_string(source: str, scope: Mapping, *, html: bool = False, field: str = "") -> str:
    try:
        return environment(html=html).from_string(source).render(**scope)
    except LiquidError as exc:
        raise TemplateError(field, describe(exc)) from exc


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def render_fields(channel: str, fields: Mapping, scope: Mapping) -> dict[str, str]:
    """Each field of a channel template rendered with `scope`."""
    return {
        name: render_string(source, scope, html=_is_html(channel, name), field=name)
        for name, source in fields.items()
        if source
    }


def render_email(fields: Mapping, scope: Mapping, layout=None) -> RenderedEmail:
    """Subject, HTML and text of an email, wrapped in `layout` when there is one.

    The text part is generated from the HTML when the template has none.
    """
    parts = render_fields("email", fields, scope)
    subject = " ".join(parts.get("subject", "").split())
    html = parts.get("html", "")
    text = parts.get("text") or _html_to_text(html)
    if layout is not None and html:
        html = render_string(layout.html, {**scope, "content": Markup(html)}, html=True,
                             field="layout.html")
    if layout is not None and layout.text:
        text = render_string(layout.text, {**scope, "content": text}, field="layout.text")
    return RenderedEmail(subject=subject, html=html, text=text)


def _html_to_text(html: str) -> str:
    lines = (line.strip() for line in unescape(strip_tags(html)).splitlines())
    return "\n".join(line for line in lines if line)


# GSM 03.38: the basic character set (one septet each) and its extension table (two septets).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSegments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def sms_segments(text: str) -> SmsSegments:
    """How many SMS segments `text` takes: GSM-7 when every character is in GSM 03.38 (160 per
    single message, 153 per part of a long one), else UCS-2 (70, or 67 per part; characters
    outside the BMP, like most emoji, take two units)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = 70, 67, "UCS-2"
    if units == 0:
        return SmsSegments(encoding, 0, 0)
    segments = 1 if units <= single else -(-units // part)
    return SmsSegments(encoding, units, segments)
