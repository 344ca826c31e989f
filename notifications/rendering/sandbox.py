"""The sandboxed Liquid environment every user-edited template renders in, and its limits.

python-liquid reads only mappings and sequences (never Python attributes), so a template can reach
nothing but the variables we give it (see variables.py). On top of that, this environment:

- escapes every value output in HTML fields (autoescape);
- has no `include`/`render` tags (there is no file system to reach);
- bounds loops, output size, local variables and nesting, and the time a render may take;
- refuses names starting with `__` with a clear error, so probing for Python internals fails
  loudly instead of quietly rendering nothing;
- adds the locale filters (locale_filters.py).
"""

import time
from collections.abc import Mapping
from datetime import UTC
from functools import cache, lru_cache

from django.conf import settings
from liquid import Environment
from liquid.context import RenderContext
from liquid.exceptions import (
    BlockNestingError,
    LiquidError,
    LocalNamespaceLimitError,
    LoopIterationLimitError,
    OutputStreamLimitError,
    ResourceLimitError,
)
from liquid.output import LimitedStringIO
from liquid.template import BoundTemplate

from .locale_filters import LOCALE_FILTERS, RenderOptions, locale_and_zone

DEFAULT_RENDER_SECONDS = 2.0


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

    The deadline is a `render_clock()` value (the rendering thread's CPU time), checked on every
    variable lookup, filter call, assignment and output write, which covers every node that does
    work; loops are bounded separately.
    """

    __slots__ = ("deadline", "locale", "tzinfo")

    def __init__(self, *args, deadline: float | None = None, locale=None, tzinfo=UTC,
                 **kwargs):  # liquid's copy() passes only its own arguments
        super().__init__(*args, **kwargs)
        # Any render has a deadline, also one started through liquid's own `render()`.
        self.deadline = render_clock() + render_seconds() if deadline is None else deadline
        self.locale = locale
        self.tzinfo = tzinfo

    def check_time(self) -> None:
        if render_clock() > self.deadline:
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
    """The shared sandboxed environment: with HTML autoescape when `html`, else without."""
    return SandboxedEnvironment(autoescape=html)


# A render's budget is the CPU time of the thread rendering (time.thread_time: seconds, only
# meaningful as differences within one thread; a render runs in one). Wall time would stop a
# cheap template on a loaded machine (its thread waiting for a core or the GIL, or the first use
# of a filter loading its locale data) while bounding nothing more: a render does no I/O.
render_clock = time.thread_time


def render_seconds() -> float:
    """A render's time budget in seconds of its thread's CPU time (`render_clock`):
    CLARION["TEMPLATE_RENDER_SECONDS"], default 2."""
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
    """The TemplateError of `field` for a Liquid error, with its line and column and, for a
    resource limit, which limit it hit."""
    line, column = _position(exc)
    message = prefix + describe(exc)
    hint = LIMIT_HINTS.get(type(exc))
    if hint:
        message += f"; {hint.format(env=SandboxedEnvironment)}"
    return TemplateError(field, message, line=line, column=column)


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


# Filters whose output can depend on the clock: liquid's `date` and the locale filters read
# "now" and "today" as the current time, and `time_ago` measures from it.
CLOCK_FILTERS = frozenset({"date", "format_date", "format_datetime", "format_time", "time_ago"})


@lru_cache(maxsize=1024)
def variables_read(source: str, *, html: bool) -> frozenset[str] | None:
    """The top-level variables `source` reads (e.g. {"data", "recipient"}: Liquid's static
    analysis of the template), or None when its output may depend on more than their values and
    the render's locale and time zone: a variable named by another's value (`{{ [name].x }}`),
    a filter that can read the clock (CLOCK_FILTERS), or a source that does not parse. A name
    the template assigns, captures or counts (`assign`, `capture`, `increment`, `decrement`)
    counts as read wherever it is used: the assignment may not have run there (`{% if x %}{%
    assign recipient = data %}{% endif %}{{ recipient.name }}` reads the recipient when x is
    false), and a counter does not hide the variable of its name. Two renders of `source` with
    the same values of these variables, locale and time zone give the same text."""
    template, problem = _compile(source, html)
    if problem is not None:
        return None
    analysis = template.analyze()
    if CLOCK_FILTERS & set(analysis.filters):
        return None
    assigned = set(analysis.locals)
    roots = set()
    for name, occurrences in analysis.variables.items():
        for variable in occurrences:
            root = variable.segments[0] if variable.segments else None
            if not isinstance(root, str):
                return None  # named by a value, wherever it is
            if name in analysis.globals or name in assigned:  # else a loop's own variable,
                roots.add(root)                                # bound wherever it is read
    return frozenset(roots)


def render_string(source: str, variables: Mapping, *, html: bool = False, field: str = "",
                  options: RenderOptions = RenderOptions()) -> str:
    """Render one field with `variables`, within the time budget; TemplateError on any failure."""
    template = parse(source, html=html, field=field)
    locale, tzinfo = locale_and_zone(variables, options)
    deadline = render_clock() + render_seconds()
    try:
        context = SafeContext(template, globals=template.make_globals(dict(variables)),
                              deadline=deadline, locale=locale, tzinfo=tzinfo)
        buffer = context.get_buffer()
        template.render_with_context(context, buffer)
        return buffer.getvalue()
    except LiquidError as exc:
        raise template_error(field, exc) from exc
    except (ValueError, TypeError, ArithmeticError, LookupError, RecursionError) as exc:
        raise TemplateError(field, f"rendering failed: {exc}") from exc

