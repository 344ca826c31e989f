"""Liquid rendering of user-edited templates: one sandboxed environment for the whole product.

- sandbox.py: the environment, its limits (loops, output, nesting, time) and TemplateError;
- locale_filters.py: the Babel filters that format dates, numbers and money per locale;
- fields.py: validating and rendering a channel template's fields (channels.py lists them);
- checks.py: the editor's checks (syntax errors, variables nothing provides);
- email.py: email assembly (layout, inlined CSS, plain-text part);
- variables.py: the template variables of a run or a preview, and their fixed keys;
- chat_preview.py: the editor's picture of chat blocks (Slack Block Kit, Adaptive Cards).

The names below are what the engine, the API, the admin and the demo use.
"""

from . import chat_preview
from .checks import check_fields
from .email import DEFAULT_LAYOUT_TEXT, default_layout_html, render_email
from .fields import fields_read, render_fields, validate_fields
from .locale_filters import LOCALE_FILTERS, RenderOptions
from .sandbox import RenderTimeLimitError, TemplateError, environment, parse, render_string

__all__ = [
    "DEFAULT_LAYOUT_TEXT", "LOCALE_FILTERS", "RenderOptions", "RenderTimeLimitError",
    "TemplateError", "chat_preview", "check_fields", "default_layout_html", "environment",
    "fields_read", "parse", "render_email", "render_fields", "render_string", "validate_fields",
]
