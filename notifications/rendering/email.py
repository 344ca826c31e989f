"""Email assembly: subject, HTML wrapped in the tenant's layout with its CSS inlined, and a
plain-text part (the template's own, or one made from the HTML)."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import css_inline
from markupsafe import Markup

from .fields import render_fields
from .locale_filters import RenderOptions
from .sandbox import render_string

DEFAULT_LAYOUT_PATH = Path(__file__).parent.parent / "layouts" / "default.html"


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered email: a one-line subject, the HTML (layout and inlined CSS), the text."""

    subject: str
    html: str
    text: str


def render_email(fields: Mapping, variables: Mapping, layout=None,
                 options: RenderOptions = RenderOptions()) -> RenderedEmail:
    """Subject, HTML and text of an email, wrapped in `layout` (anything with `html` and `text`
    Liquid sources, such as a Layout row) when there is one; TemplateError names a bad field.

    The text part is generated from the HTML when the template has none. The HTML is passed
    through a CSS inliner, so the layout's `<style>` reaches clients that ignore style blocks.
    """
    parts = render_fields("email", fields, variables, options)
    subject = " ".join(parts.get("subject", "").split())
    html = parts.get("html", "")
    text = parts.get("text") or _text_of(html)
    if layout is not None and html:
        html = render_string(layout.html, {**variables, "content": Markup(html)}, html=True,
                             field="layout.html", options=options)
        html = inline_css(html)
    if layout is not None and layout.text:
        text = render_string(layout.text, {**variables, "content": text}, field="layout.text",
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
{% if tenant.footer and tenant.footer != blank %}{{ tenant.footer }}
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


# Below this size an HTML part's generated text is kept (_text_of): the runs of a batch often
# render the same HTML (it reads only the trigger's data), and html_to_text parses it each time.
TEXT_MEMO_MAX_CHARS = 20_000


@lru_cache(maxsize=256)
def _text_memo(html: str) -> str:
    return html_to_text(html)


def _text_of(html: str) -> str:
    """html_to_text(html), remembered for the last 256 HTML parts under TEXT_MEMO_MAX_CHARS."""
    return _text_memo(html) if len(html) <= TEXT_MEMO_MAX_CHARS else html_to_text(html)


def html_to_text(html: str) -> str:
    """A plain-text part for an HTML email that has none."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = unescape("".join(parser.parts))
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()

