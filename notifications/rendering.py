"""Liquid rendering of user-edited templates: one sandboxed environment for the whole product.

python-liquid reads only mappings and sequences (never Python attributes), so a template can reach
nothing but the scope we give it. On top of that, this environment:

- escapes every value output in HTML fields (autoescape);
- has no `include`/`render` tags (there is no file system to reach);
- bounds loops, output size, local variables and nesting, and the time a render may take;
- refuses names starting with `__` with a clear error, so probing for Python internals fails
  loudly instead of quietly rendering nothing;
- adds filters that format dates, numbers and money in the recipient's locale and time zone.
"""

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache, lru_cache
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel
import babel.dates
import babel.numbers
import css_inline
from django.conf import settings
from django.utils.dateparse import parse_date, parse_datetime
from liquid import Environment
from liquid.context import RenderContext
from liquid.exceptions import (
    BlockNestingError,
    FilterArgumentError,
    FilterValueError,
    LiquidError,
    LocalNamespaceLimitError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
)
from liquid.filter import with_context
from liquid.output import LimitedStringIO
from liquid.template import BoundTemplate
from liquid.undefined import is_undefined
from markupsafe import Markup

from .channels import channel_spec

# What a template may read: the top-level names of the scope (see scope.py and docs/templates.md).
SCOPE_ROOTS = ("data", "recipient", "actor", "tenant", "steps", "workflow",
               "preferences_url", "unsubscribe_url")
RECIPIENT_KEYS = ("id", "name", "email", "phone", "locale", "timezone", "data")
TENANT_KEYS = ("key", "name", "logo_url", "primary_color", "sender_name", "sender_email",
               "footer", "settings")
WORKFLOW_KEYS = ("key", "name", "category")
DEFAULT_RENDER_SECONDS = 2.0
DEFAULT_LAYOUT_PATH = Path(__file__).parent / "layouts" / "default.html"


class RenderTimeLimitError(ResourceLimitError):
    """A render ran past its time budget and was stopped."""


class ForbiddenNameError(LiquidError):
    """A template asked for a name starting with `__` (Python internals are never reachable)."""


def _forbidden(path) -> str | None:
    for segment in path:
        if isinstance(segment, str) and segment.startswith("__"):
            return segment
    return None


class SafeContext(RenderContext):
    """A render context that stops at a deadline and refuses `__` names.

    The deadline is checked on every variable lookup, filter call, assignment and output write,
    which covers every node that does work; loops are bounded separately.
    """

    __slots__ = ("deadline", "locale", "tzinfo")

    def __init__(self, *args, deadline: float | None = None, locale=None, tzinfo=UTC,
                 **kwargs):  # liquid's copy() passes only its own arguments
        super().__init__(*args, **kwargs)
        # Any render has a deadline, also one started through liquid's own `render()`.
        self.deadline = time.monotonic() + render_seconds() if deadline is None else deadline
        self.locale = locale
        self.tzinfo = tzinfo

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderTimeLimitError(
                f"rendering took longer than {render_seconds():g} seconds and was stopped",
                token=None)

    def get(self, path, *, token, **kwargs):
        self.check_time()
        name = _forbidden(path)
        if name is not None:
            raise ForbiddenNameError(
                f"'{name}' cannot be used: names starting with '__' are not template variables",
                token=token)
        return super().get(path, token=token, **kwargs)

    def resolve(self, name, *, token=None, **kwargs):
        self.check_time()
        if name.startswith("__"):
            raise ForbiddenNameError(
                f"'{name}' cannot be used: names starting with '__' are not template variables",
                token=token)
        return super().resolve(name, token=token, **kwargs)

    def filter(self, name, token):  # noqa: A003 (liquid's name)
        self.check_time()
        return super().filter(name, token)

    def assign(self, key, val):
        self.check_time()
        super().assign(key, val)

    def copy(self, *args, **kwargs):
        ctx = super().copy(*args, **kwargs)
        ctx.deadline, ctx.locale, ctx.tzinfo = self.deadline, self.locale, self.tzinfo
        return ctx

    def get_buffer(self, buf=None):
        carry = buf.size if isinstance(buf, LimitedStringIO) else 0
        return TimedStringIO(self, limit=self.env.output_stream_limit - carry)


class TimedStringIO(LimitedStringIO):
    """The output stream: bounded in size, and every write checks the render's deadline."""

    def __init__(self, context: SafeContext, *, limit: int):
        super().__init__(limit=limit)
        self.context = context

    def write(self, s: str) -> int:
        self.context.check_time()
        return super().write(s)


class SafeTemplate(BoundTemplate):
    context_class = SafeContext


class SandboxedEnvironment(Environment):
    block_nesting_limit = 30
    context_depth_limit = 30
    loop_iteration_limit = 10_000
    local_namespace_limit = 100_000
    output_stream_limit = 1_000_000
    template_class = SafeTemplate

    def setup_tags_and_filters(self, *, extra: bool = False) -> None:
        super().setup_tags_and_filters(extra=extra)
        for name in ("include", "render"):
            self.tags.pop(name, None)
        self.filters.update(LOCALE_FILTERS)


@cache
def environment(*, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(autoescape=html)


def render_seconds() -> float:
    return float(getattr(settings, "CLARION", {}).get("TEMPLATE_RENDER_SECONDS",
                                                      DEFAULT_RENDER_SECONDS))


# --- Errors -----------------------------------------------------------------------------------

class TemplateError(ValueError):
    """A template that does not parse or render; `field` names which, for API and admin errors.

    `line` and `column` (1-based) say where, when known.
    """

    def __init__(self, field: str, message: str, *, line: int | None = None,
                 column: int | None = None):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.line = line
        self.column = column

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "line": self.line,
                "column": self.column}


def _position(exc: LiquidError) -> tuple[int | None, int | None]:
    token = exc.token
    if token is None or token.start_index < 0:
        return None, None
    before = token.source[: token.start_index]
    line = before.count("\n") + 1
    return line, token.start_index - (before.rfind("\n") + 1) + 1


def describe(exc: LiquidError) -> str:
    """A one-line message with the line and column, for API fields and the admin."""
    message = str(exc.message or type(exc).__name__)
    line, column = _position(exc)
    if line is not None:
        return f"{message} (line {line}, column {column})"
    return message


LIMIT_HINTS = {
    LoopIterationLimitError: "loops may run at most {env.loop_iteration_limit:,} times in all",
    OutputStreamLimitError: "a field may produce at most {env.output_stream_limit:,} bytes",
    LocalNamespaceLimitError: "assigned variables may hold at most "
                              "{env.local_namespace_limit:,} bytes",
    BlockNestingError: "tags may be nested at most {env.block_nesting_limit} deep",
}


def template_error(field: str, exc: LiquidError, *, prefix: str = "") -> TemplateError:
    line, column = _position(exc)
    message = prefix + describe(exc)
    hint = LIMIT_HINTS.get(type(exc))
    if hint:
        message += f"; {hint.format(env=SandboxedEnvironment)}"
    return TemplateError(field, message, line=line, column=column)


def _is_html(channel: str, field: str) -> bool:
    spec = channel_spec(channel)
    return spec is not None and field in spec.html_fields


def parse(source: str, *, html: bool, field: str = "") -> BoundTemplate:
    """Parse `source`; TemplateError names the field and the line of a syntax error."""
    template, problem = _compile(source, html)
    if problem is not None:
        message, line, column = problem
        raise TemplateError(field, message, line=line, column=column)
    return template


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool) -> tuple[BoundTemplate | None, tuple | None]:
    """The parsed template, or (message, line, column) of why it cannot be used. Cached: the
    engine renders the same few published sources over and over."""
    try:
        template = environment(html=html).from_string(source)
    except LiquidError as exc:
        error = template_error("", exc, prefix="Liquid syntax error: ")
        return None, (error.message, error.line, error.column)
    for variable in template.analyze().variables.values():
        for occurrence in variable:
            name = _forbidden(occurrence.segments)
            if name is not None:
                line, column = occurrence.span.line_col(source)
                return None, (f"'{name}' cannot be used: names starting with '__' are not "
                              f"template variables (line {line}, column {column + 1})",
                              line, column + 1)
    return template, None


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
        parse(source, html=_is_html(channel, name), field=name)


# --- Rendering --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RenderOptions:
    """The locale and time zone the formatting filters use when the recipient has none."""

    locale: str = "en"
    timezone: str = "UTC"


def _locale_and_zone(scope: Mapping, options: RenderOptions) -> tuple[object, object]:
    recipient = scope.get("recipient") or {}
    locale = _babel_locale("en")
    for candidate in (recipient.get("locale"), options.locale):
        found = _babel_locale(str(candidate)) if candidate else None
        if found is not None:
            locale = found
            break
    tzinfo = UTC
    for candidate in (recipient.get("timezone"), options.timezone):
        zone = _zone(str(candidate)) if candidate else None
        if zone is not None:
            tzinfo = zone
            break
    return locale, tzinfo


def render_string(source: str, scope: Mapping, *, html: bool = False, field: str = "",
                  options: RenderOptions = RenderOptions()) -> str:
    """Render one field with `scope`, within the time budget; TemplateError on any failure."""
    template = parse(source, html=html, field=field)
    locale, tzinfo = _locale_and_zone(scope, options)
    deadline = time.monotonic() + render_seconds()
    try:
        context = SafeContext(template, globals=template.make_globals(dict(scope)),
                              deadline=deadline, locale=locale, tzinfo=tzinfo)
        buffer = context.get_buffer()
        template.render_with_context(context, buffer)
        return buffer.getvalue()
    except LiquidError as exc:
        raise template_error(field, exc) from exc
    except (ValueError, TypeError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateError(field, f"rendering failed: {exc}") from exc


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


def render_fields(channel: str, fields: Mapping, scope: Mapping,
                  options: RenderOptions = RenderOptions()) -> dict[str, str]:
    """Each field of a channel template rendered with `scope`."""
    return {
        name: render_string(source, scope, html=_is_html(channel, name), field=name,
                            options=options)
        for name, source in fields.items()
        if source
    }


def render_email(fields: Mapping, scope: Mapping, layout=None,
                 options: RenderOptions = RenderOptions()) -> RenderedEmail:
    """Subject, HTML and text of an email, wrapped in `layout` when there is one.

    The text part is generated from the HTML when the template has none. The HTML is passed
    through a CSS inliner, so the layout's `<style>` reaches clients that ignore style blocks.
    """
    parts = render_fields("email", fields, scope, options)
    subject = " ".join(parts.get("subject", "").split())
    html = parts.get("html", "")
    text = parts.get("text") or html_to_text(html)
    if layout is not None and html:
        html = render_string(layout.html, {**scope, "content": Markup(html)}, html=True,
                             field="layout.html", options=options)
        html = inline_css(html)
    if layout is not None and layout.text:
        text = render_string(layout.text, {**scope, "content": text}, field="layout.text",
                             options=options).rstrip()
    return RenderedEmail(subject=subject, html=html, text=text)


def inline_css(html: str) -> str:
    """Copy `<style>` rules onto the elements (Outlook and many webmail clients drop <style>);
    rules that cannot be inlined (media queries) stay in the head for the clients that read
    them."""
    try:
        return css_inline.inline(html, keep_style_tags=True, load_remote_stylesheets=False)
    except ValueError:
        return html


def default_layout_html() -> str:
    """The built-in email layout: tables, inline CSS, the tenant's logo, colour and footer."""
    return DEFAULT_LAYOUT_PATH.read_text()


DEFAULT_LAYOUT_TEXT = """{{ content }}
{% if tenant.footer or tenant.name or preferences_url or unsubscribe_url %}
--
{% if tenant.footer %}{{ tenant.footer }}
{% elsif tenant.name %}{{ tenant.name }}
{% endif %}{% if preferences_url %}Notification settings: {{ preferences_url }}
{% endif %}{% if unsubscribe_url %}Unsubscribe: {{ unsubscribe_url }}
{% endif %}{% endif %}"""


class _TextExtractor(HTMLParser):
    """HTML to readable plain text: paragraphs and line breaks kept, links as "text (url)"."""

    BLOCKS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "ul",
                        "ol", "blockquote", "section", "article", "header", "footer"})
    SKIP = frozenset({"style", "script", "head", "title"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[str | None] = []
        self.skipping = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skipping = max(self.skipping - 1, 0)
        elif tag in self.BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data):
        if not self.skipping:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """A plain-text part for an HTML email that has none."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = unescape("".join(parser.parts))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- Checking a template against what it may read ---------------------------------------------

@dataclass
class Problem:
    field: str
    message: str
    line: int | None = None
    column: int | None = None

    def as_dict(self) -> dict:
        return {"field": self.field, "message": self.message, "line": self.line,
                "column": self.column}


@dataclass
class Check:
    """What the admin shows beside the editor: errors block saving, warnings do not."""

    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def _known_paths(value, prefix: str, into: set[str]) -> None:
    into.add(prefix)
    if isinstance(value, Mapping):
        for key, child in value.items():
            _known_paths(child, f"{prefix}.{key}", into)
    elif isinstance(value, list):
        for child in value[:5]:
            _known_paths(child, prefix, into)


def _schema_paths(schema, prefix: str, into: set[str]) -> None:
    """Add the paths a JSON Schema's `properties` (and array `items`) describe."""
    into.add(prefix)
    if not isinstance(schema, Mapping):
        return
    if schema.get("type") == "array" or "items" in schema:
        _schema_paths(schema.get("items", {}), prefix, into)
        return
    properties = schema.get("properties")
    if isinstance(properties, Mapping):
        for key, child in properties.items():
            _schema_paths(child, f"{prefix}.{key}", into)


def check_fields(channel: str, fields: Mapping, *, data_schema=None, sample_data=None,
                 extra_roots: tuple[str, ...] = ()) -> Check:
    """Syntax errors, and variables the template reads that nothing provides, with lines.

    A `data.…` path is unknown when the workflow's data schema or sample data describes `data`
    and neither mentions that path; `recipient.…`, `tenant.…` and `workflow.…` have fixed keys.
    """
    result = Check()
    known: set[str] = set()
    data_described = bool(data_schema) or bool(sample_data)
    if data_schema:
        _schema_paths(data_schema, "data", known)
    if isinstance(sample_data, Mapping):
        _known_paths(sample_data, "data", known)
    roots = {*SCOPE_ROOTS, *extra_roots}
    fixed = {"recipient": RECIPIENT_KEYS, "tenant": TENANT_KEYS, "workflow": WORKFLOW_KEYS}
    for name, source in fields.items():
        if not source:
            continue
        try:
            template = parse(source, html=_is_html(channel, name), field=name)
        except TemplateError as exc:
            result.errors.append(Problem(name, exc.message, exc.line, exc.column))
            continue
        for occurrences in template.analyze().globals.values():
            for variable in occurrences:
                segments = [s for s in variable.segments if isinstance(s, str)]
                if not segments:
                    continue
                line, column = variable.span.line_col(source)
                path = ".".join(segments)
                problem = _unknown(segments, roots, fixed, known, data_described)
                if problem:
                    result.warnings.append(Problem(
                        name, f"{path}: {problem} (line {line}, column {column + 1})",
                        line, column + 1))
    return result


def _unknown(segments, roots, fixed, known, data_described) -> str:
    root = segments[0]
    if root not in roots:
        return f"unknown variable; templates can read {', '.join(sorted(roots))}"
    if root in fixed and len(segments) > 1:
        key = segments[1]
        if key in ("size", "first", "last"):
            return ""
        if key not in fixed[root]:
            return f"{root} has no '{key}'; it has {', '.join(fixed[root])}"
    if root == "data" and data_described:
        for depth in range(2, len(segments) + 1):
            if segments[depth - 1] in ("size", "first", "last"):
                return ""
            path, parent = ".".join(segments[:depth]), ".".join(segments[:depth - 1])
            if path in known:
                continue
            # Unknown only where the parent's keys are described (a leaf may hold anything).
            if any(k.startswith(parent + ".") for k in known):
                return "not in the workflow's data schema or sample data"
            return ""
    return ""


# --- SMS --------------------------------------------------------------------------------------

GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNO"
           "PQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    segments: int


def sms_size(text: str) -> SmsSize:
    """Characters and segments an SMS costs: GSM-7 (160, or 153 per part) unless a character
    needs UCS-2 (70, or 67 per part)."""
    if all(ch in GSM7 or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, multi, encoding = 70, 67, "UCS-2"
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = -(-units // multi)
    return SmsSize(encoding=encoding, characters=units, segments=segments)


# --- Locale-aware filters (Babel) -------------------------------------------------------------

@cache
def _babel_locale(name: str):
    try:
        return babel.Locale.parse(name.replace("-", "_"))
    except (ValueError, TypeError, babel.UnknownLocaleError):
        return None


@cache
def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _context_locale(context):
    return getattr(context, "locale", None) or _babel_locale("en")


def _as_datetime(value, filter_name: str):
    """A datetime or date from what a trigger's JSON can hold: ISO 8601 text or a Unix time."""
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return datetime.now(UTC)
        try:
            moment = parse_datetime(text)
            if moment is not None:
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            day = parse_date(text)
        except ValueError:
            day = None
        if day is not None:
            return day
    raise FilterValueError(
        f"{filter_name}: expected a date like 2026-01-31 or 2026-01-31T09:30:00Z, "
        f"got {value!r}", token=None)


def _blank(value) -> bool:
    return value is None or value == "" or is_undefined(value)


DATE_FORMATS = ("short", "medium", "long", "full")


@with_context
def format_date(value, format="medium", *, context):  # noqa: A002 (the template's word)
    """`{{ data.due | format_date: "long" }}` → "31 January 2026" (en-GB)."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_date")
    if isinstance(moment, datetime):
        moment = moment.astimezone(context.tzinfo).date()
    return babel.dates.format_date(moment, format=str(format), locale=_context_locale(context))


@with_context
def format_datetime(value, format="medium", *, context):  # noqa: A002
    """`{{ data.starts_at | format_datetime: "short" }}` in the recipient's time zone."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_datetime")
    if not isinstance(moment, datetime):
        return babel.dates.format_date(moment, format=str(format),
                                       locale=_context_locale(context))
    return babel.dates.format_datetime(moment, format=str(format), tzinfo=context.tzinfo,
                                       locale=_context_locale(context))


@with_context
def format_time(value, format="short", *, context):  # noqa: A002
    """`{{ data.starts_at | format_time }}` → "09:30" in the recipient's time zone."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_time")
    if not isinstance(moment, datetime):
        raise FilterValueError(f"format_time: {value!r} has no time of day", token=None)
    return babel.dates.format_time(moment, format=str(format), tzinfo=context.tzinfo,
                                   locale=_context_locale(context))


@with_context
def time_ago(value, *, context):
    """`{{ data.created_at | time_ago }}` → "3 hours ago" / "in 2 days"."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "time_ago")
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=context.tzinfo)
    return babel.dates.format_timedelta(moment - datetime.now(UTC), add_direction=True,
                                        locale=_context_locale(context))


def _as_number(value, filter_name: str) -> Decimal:
    if isinstance(value, bool):
        raise FilterValueError(f"{filter_name}: expected a number, got {value!r}", token=None)
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise FilterValueError(f"{filter_name}: expected a number, got {value!r}",
                               token=None) from None


@with_context
def format_number(value, decimals=None, *, context):
    """`{{ data.count | format_number }}` → "1,234,567" (en) / "1.234.567" (de)."""
    if _blank(value):
        return ""
    number = _as_number(value, "format_number")
    if decimals is not None:
        try:
            places = max(0, min(int(decimals), 10))
        except (TypeError, ValueError):
            raise FilterArgumentError("format_number: decimals must be a whole number",
                                      token=None) from None
        pattern = "#,##0" + ("." + "0" * places if places else "")
        return babel.numbers.format_decimal(number, format=pattern,
                                            locale=_context_locale(context))
    return babel.numbers.format_decimal(number, locale=_context_locale(context))


@with_context
def format_currency(value, currency="USD", *, context):
    """`{{ data.total | format_currency: "EUR" }}` → "€12.50" (en) / "12,50 €" (fr)."""
    if _blank(value):
        return ""
    number = _as_number(value, "format_currency")
    code = str(currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise FilterArgumentError(
            f"format_currency: expected a currency code like EUR, got {currency!r}", token=None)
    return babel.numbers.format_currency(number, code, locale=_context_locale(context))


@with_context
def format_percent(value, *, context):
    """`{{ 0.25 | format_percent }}` → "25%"."""
    if _blank(value):
        return ""
    return babel.numbers.format_percent(_as_number(value, "format_percent"),
                                        locale=_context_locale(context))


LOCALE_FILTERS = {
    "format_date": format_date,
    "format_datetime": format_datetime,
    "format_time": format_time,
    "time_ago": time_ago,
    "format_number": format_number,
    "format_currency": format_currency,
    "format_percent": format_percent,
}
