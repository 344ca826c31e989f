"""A preview of a chat template's rendered `blocks` as the person will roughly see them: Slack
Block Kit blocks as a Slack message, Adaptive Card body elements as a Teams card.

The preview is HTML for a sandboxed iframe, built only from escaped text: nothing in the blocks
becomes markup, a URL or a style. It shows the common elements and names the others, so an
author sees at once that a block is there and what it is; the provider, not this preview, is
the authority on what a payload may hold.

Sources: Slack's Block Kit reference (https://api.slack.com/reference/block-kit/blocks) and
its mrkdwn syntax (https://api.slack.com/reference/surfaces/formatting); the Adaptive Cards
schema 1.4 (https://adaptivecards.io/explorer/).
"""

import json
import re
from collections.abc import Iterable
from html import escape
from typing import Any

# Slack mrkdwn: *bold*, _italic_, ~strike~, `code`, <url|label> and <url>.
_SLACK_LINK = re.compile(r"&lt;(https?://[^|&]+?)(?:\|(.+?))?&gt;")
_SLACK_STYLES = (
    (re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"), r"<em>\1</em>"),
    (re.compile(r"(?<![\w~])~(?!\s)(.+?)(?<!\s)~(?![\w~])"), r"<s>\1</s>"),
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
)
# Adaptive Card TextBlock markdown: **bold**, _italic_, [label](url).
_CARD_STYLES = (
    (re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"),
    (re.compile(r"(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"), r"<em>\1</em>"),
    (re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)"), r'<u title="\2">\1</u>'),
)
_MAX_DEPTH = 8

STYLE = """<style>
body{margin:0;padding:12px;font:14px/1.45 -apple-system,'Segoe UI',sans-serif;color:#1d1c1d}
.msg{display:flex;gap:8px}.avatar{width:36px;height:36px;border-radius:6px;background:#611f69}
.who{font-weight:700}.block{margin:4px 0}.header{font-size:18px;font-weight:700}
.fields{display:grid;grid-template-columns:1fr 1fr;gap:4px 16px}.ctx{color:#616061;font-size:12px}
hr{border:0;border-top:1px solid #ddd}.btn{display:inline-block;border:1px solid #bbb;
border-radius:4px;padding:3px 10px;margin:2px 4px 2px 0;font-weight:600}
.primary{background:#007a5a;color:#fff;border-color:#007a5a}.danger{color:#e01e5a}
.img{display:inline-block;border:1px dashed #999;padding:6px;color:#616061}
.card{border:1px solid #d1d1d1;border-radius:6px;padding:12px;max-width:480px}
.large{font-size:18px}.bolder{font-weight:700}.subtle{color:#616061}.cols{display:flex;gap:12px}
.unknown{color:#8a6d3b;font-style:italic}code{background:#f4f4f4;padding:0 3px}
table{border-collapse:collapse}td{padding:1px 12px 1px 0;vertical-align:top}
</style>"""


def kind_of(blocks: Any) -> str:
    """"slack", "teams" or "" for a rendered `blocks` value (a JSON string or a list).

    Adaptive Card elements have capitalised types (TextBlock, FactSet…); Block Kit blocks have
    lower-case ones (section, header…). A card object ({"type": "AdaptiveCard"}) counts too."""
    items = _parse(blocks)
    types = [item.get("type") for item in items if isinstance(item, dict)]
    types = [t for t in types if isinstance(t, str) and t]
    if not types:
        return ""
    return "teams" if types[0][:1].isupper() else "slack"


def render(rendered: dict) -> str:
    """HTML for the preview iframe from a chat template's rendered fields `{"text", "blocks"}`
    (blocks as rendered: a JSON string, a list, or missing). Never raises; an unreadable
    `blocks` is shown as such."""
    text = str(rendered.get("text") or "")
    raw = rendered.get("blocks")
    try:
        items = _parse(raw)
    except ValueError as exc:
        return f"{STYLE}<p class=unknown>blocks is not JSON: {escape(str(exc))}</p>"
    kind = kind_of(items)
    if kind == "teams":
        return f"{STYLE}<div class=card>{''.join(_card(item, 0) for item in items)}</div>"
    body = "".join(_slack_block(item) for item in items) if items else _mrkdwn(text)
    return (f"{STYLE}<div class=msg><div class=avatar></div><div><div class=who>Clarion "
            f"<span class=ctx>now</span></div>{body}</div></div>")


def _parse(blocks: Any) -> list:
    if blocks is None or blocks == "":
        return []
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if isinstance(blocks, dict):
        # A whole card or a Slack message object: show what it holds.
        blocks = blocks.get("body") or blocks.get("blocks") or [blocks]
    return list(blocks) if isinstance(blocks, list) else []


def _text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("text", "")
    return value if isinstance(value, str) else ""


def _mrkdwn(value: Any) -> str:
    html = escape(_text(value)).replace("\n", "<br>")
    html = _SLACK_LINK.sub(lambda m: f'<u title="{m[1]}">{m[2] or m[1]}</u>', html)
    for pattern, replacement in _SLACK_STYLES:
        html = pattern.sub(replacement, html)
    return html


def _slack_element(element: Any) -> str:
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "button":
        style = element.get("style") if element.get("style") in ("primary", "danger") else ""
        return f'<span class="btn {style}">{escape(_text(element.get("text")))}</span>'
    if kind == "image":
        return f'<span class=img>image: {escape(str(element.get("alt_text", "")))}</span>'
    if kind in ("mrkdwn", "plain_text"):
        return f"<span>{_mrkdwn(element)}</span>"
    return f"<span class=unknown>[{escape(str(kind))}]</span>"


def _slack_block(block: Any) -> str:
    if not isinstance(block, dict):
        return "<div class='block unknown'>[not a block]</div>"
    kind = block.get("type")
    if kind == "header":
        return f"<div class='block header'>{escape(_text(block.get('text')))}</div>"
    if kind == "divider":
        return "<hr>"
    if kind == "section":
        parts = [f"<div>{_mrkdwn(block.get('text'))}</div>"] if block.get("text") else []
        fields = block.get("fields")
        if isinstance(fields, list) and fields:
            parts.append("<div class=fields>" + "".join(
                f"<div>{_mrkdwn(field)}</div>" for field in fields) + "</div>")
        if isinstance(block.get("accessory"), dict):
            parts.append(f"<div>{_slack_element(block['accessory'])}</div>")
        return f"<div class=block>{''.join(parts)}</div>"
    if kind == "context":
        return "<div class='block ctx'>" + " ".join(
            _slack_element(e) for e in _list(block.get("elements"))) + "</div>"
    if kind == "actions":
        return "<div class=block>" + "".join(
            _slack_element(e) for e in _list(block.get("elements"))) + "</div>"
    if kind == "image":
        title = _text(block.get("title")) or str(block.get("alt_text", ""))
        return f"<div class=block><span class=img>image: {escape(title)}</span></div>"
    return f"<div class='block unknown'>[{escape(str(kind))} block]</div>"


def _list(value: Any) -> Iterable:
    return value if isinstance(value, list) else ()


def _card_text(value: Any) -> str:
    html = escape(value if isinstance(value, str) else "").replace("\n", "<br>")
    for pattern, replacement in _CARD_STYLES:
        html = pattern.sub(replacement, html)
    return html


def _card(element: Any, depth: int) -> str:
    if not isinstance(element, dict) or depth > _MAX_DEPTH:
        return ""
    kind = element.get("type")
    if kind == "TextBlock":
        classes = " ".join(c for c in (
            "large" if element.get("size") in ("Large", "ExtraLarge") else "",
            "bolder" if element.get("weight") == "Bolder" else "",
            "subtle" if element.get("isSubtle") else "") if c)
        return f"<div class='block {classes}'>{_card_text(element.get('text'))}</div>"
    if kind == "FactSet":
        rows = "".join(
            f"<tr><td class=bolder>{escape(str(f.get('title', '')))}</td>"
            f"<td>{_card_text(f.get('value'))}</td></tr>"
            for f in _list(element.get("facts")) if isinstance(f, dict))
        return f"<table class=block>{rows}</table>"
    if kind == "Image":
        alt = escape(str(element.get("altText", "")))
        return f"<div class=block><span class=img>image: {alt}</span></div>"
    if kind == "Container":
        return "<div class=block>" + "".join(
            _card(e, depth + 1) for e in _list(element.get("items"))) + "</div>"
    if kind == "ColumnSet":
        return "<div class='block cols'>" + "".join(
            "<div>" + "".join(_card(e, depth + 1) for e in _list(col.get("items"))) + "</div>"
            for col in _list(element.get("columns")) if isinstance(col, dict)) + "</div>"
    if kind == "ActionSet":
        return "<div class=block>" + "".join(
            f"<span class=btn>{escape(str(a.get('title', '')))}</span>"
            for a in _list(element.get("actions")) if isinstance(a, dict)) + "</div>"
    return f"<div class='block unknown'>[{escape(str(kind))}]</div>"


def kind_of_safe(rendered: dict) -> str:
    """kind_of(rendered["blocks"]), or "" when the blocks are not JSON."""
    try:
        return kind_of(rendered.get("blocks"))
    except ValueError:
        return ""
