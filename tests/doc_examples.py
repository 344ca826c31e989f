"""Reading the examples of the Markdown docs so a test can run them (tests/test_docs.py).

The conventions a page of README.md or docs/ follows, for whoever writes one (this module and
tests/test_docs.py enforce them; tests/test_docs_names.py checks that what the pages name exists):

- A ```sh (or ```bash) block that contains `curl` is **executed**: every command in it, in order,
  against the live server. `$CLARION`, `$CLARION_KEY`, `$INBOX_TOKEN` and `http://localhost:8000`
  are the test's server, API key and inbox token. `export NAME=value` lines set a variable for
  later commands. A command answers 2xx unless its line ends with a comment naming the status
  (`# 404`); `> file` keeps its body for a later `--data @file`; `<<'EOF'` here-documents feed
  `-d @-`.
- The fenced block right after an executed block (only blank lines between) is the **response**
  of its last command whose output is not redirected: a ```json body, or an untagged block that
  starts with the status line (`HTTP/1.1 201 Created`), then headers, then the body. The body is
  compared structurally with the real one: the same keys, the same JSON types, the same lists'
  lengths, the same booleans, the same strings except ids, times and tokens. `…` elides: a `…`
  member lets an object have more keys (a `…` element: a list more elements), `{…}` / `[…]` is
  any object / list, and `…` inside a string matches any text there.
- Ids in the docs are followed: an id the docs show in one response stands for the real id of the
  same response in every later command (`GET /runs/<that id>`).
- `<!-- not-executed: <reason> -->` on the line(s) right before a block with curl leaves it out
  (an example that needs an outside provider). Keep them few.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ELLIPSIS = "…"
ELLIPSIS_KEY = "\u2026__more__"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$")
# Values that differ on every machine: compared by type only.
VOLATILE_KEYS = {"token", "api_key", "secret", "after", "before", "hmac", "expires_at"}
NOT_EXECUTED = re.compile(r"<!--\s*not-executed:\s*(.+?)\s*-->", re.S)
STATUS_LINE = re.compile(r"^HTTP/[\d.]+ (\d{3})\b")


@dataclass
class Block:
    """One fenced code block of a Markdown page."""

    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    before: str  # the page's text between the previous block (or a heading) and this one

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def executable(self) -> bool:
        return self.lang in ("sh", "bash", "shell", "console") and re.search(
            r"(^|\s)curl\s", self.text) is not None

    @property
    def not_executed_reason(self) -> str | None:
        match = NOT_EXECUTED.search(self.before.strip().rsplit("\n\n", 1)[-1])
        return match.group(1) if match else None

    @property
    def is_response(self) -> bool:
        return self.lang == "json" or (self.lang in ("", "http")
                                       and STATUS_LINE.match(self.text) is not None)


def blocks(path: Path, page: str) -> list[Block]:
    """The fenced blocks of one Markdown file, in order."""
    found: list[Block] = []
    lines = path.read_text().splitlines()
    i, since = 0, 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(```+)\s*([\w-]*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        found.append(Block(page=page, line=start + 1, lang=lang.lower(), text="\n".join(body),
                           before="\n".join(lines[since:start])))
        i += 1
        since = i
    return found


# --- JSON with elisions -------------------------------------------------------------------------

class Elided:
    """`{…}` or `[…]` or a bare `…` value: anything of that kind."""

    def __init__(self, kind: type | None):
        self.kind = kind

    def __repr__(self):
        return {dict: "{…}", list: "[…]"}.get(self.kind, "…")


def parse_json_values(text: str) -> list:
    """Every JSON value in `text` (one or more, one after another), `…` elisions understood."""
    prepared = _mark_elisions(text)
    decoder = json.JSONDecoder(object_hook=_restore_elided)
    values, index = [], 0
    while True:
        while index < len(prepared) and prepared[index] in " \t\r\n":
            index += 1
        if index >= len(prepared):
            return [_restore_markers(value) for value in values]
        value, index = decoder.raw_decode(prepared, index)
        values.append(value)


_MARK = "\u2026__elided__"


def _mark_elisions(text: str) -> str:
    """Turn each `…` outside strings into valid JSON: a member `"<marker>": null` in an object,
    an element `"<marker>"` in a list or as a value."""
    out: list[str] = []
    stack: list[str] = []
    in_string = escaped = False
    expecting_key = False
    for char in text:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            out.append(char)
            continue
        if char in "{[":
            stack.append(char)
            expecting_key = char == "{"
        elif char in "}]":
            if stack:
                stack.pop()
            expecting_key = False
        elif char == ",":
            expecting_key = bool(stack) and stack[-1] == "{"
        elif char == ":":
            expecting_key = False
        if char == ELLIPSIS:
            out.append(f'"{_MARK}": null' if expecting_key else f'"{_MARK}"')
            expecting_key = False
            continue
        out.append(char)
    return "".join(out)


def _restore_elided(obj: dict):
    if list(obj) == [_MARK]:
        return Elided(dict)
    if _MARK in obj:
        obj = {key: value for key, value in obj.items() if key != _MARK}
        obj[ELLIPSIS_KEY] = True
    return obj


def _restore_markers(value):
    if isinstance(value, list):
        if value == [_MARK]:
            return Elided(list)
        return [_restore_markers(item) for item in value]
    if isinstance(value, dict):
        return {key: _restore_markers(item) for key, item in value.items()}
    if value == _MARK:
        return Elided(None)
    return value


# --- comparing a documented body with a real one ------------------------------------------------

@dataclass
class Comparison:
    problems: list[str] = field(default_factory=list)
    # doc value -> real value, for ids the docs show (UUIDs, and integer `id`s).
    ids: dict = field(default_factory=dict)


def compare(doc, real, comparison: Comparison, path: str = "$", key: str = "") -> None:
    """Append to `comparison.problems` every way `real` differs from the documented `doc`."""
    problems = comparison.problems
    if isinstance(doc, Elided):
        if doc.kind is not None and not isinstance(real, doc.kind):
            problems.append(f"{path}: documented as {doc!r}, got {_short(real)}")
        return
    if doc is None:
        return  # null: a value the example does not have (a time not reached yet, no tenant…)
    if real is None:
        if key.endswith("_at") or isinstance(doc, str) and TIMESTAMP.match(doc):
            return
        problems.append(f"{path}: documented {_short(doc)}, got null")
        return
    if isinstance(doc, dict):
        if not isinstance(real, dict):
            problems.append(f"{path}: documented an object, got {_short(real)}")
            return
        open_ended = doc.get(ELLIPSIS_KEY) is True
        documented = [k for k in doc if k != ELLIPSIS_KEY]
        missing = [k for k in documented if k not in real]
        if missing:
            problems.append(f"{path}: documented keys missing from the answer: {missing}")
        extra = [k for k in real if k not in doc]
        if extra and not open_ended:
            problems.append(f"{path}: the answer has undocumented keys: {extra}")
        for k in documented:
            if k in real:
                compare(doc[k], real[k], comparison, f"{path}.{k}", k)
        return
    if isinstance(doc, list):
        if not isinstance(real, list):
            problems.append(f"{path}: documented a list, got {_short(real)}")
            return
        items = [item for item in doc if not (isinstance(item, Elided) and item.kind is None)]
        open_ended = len(items) != len(doc)
        if len(real) < len(items) or (len(real) != len(items) and not open_ended):
            problems.append(f"{path}: documented {len(items)} element(s), got {len(real)}: "
                            f"{_short(real)}")
            return
        for index, item in enumerate(items):
            compare(item, real[index], comparison, f"{path}[{index}]", key)
        return
    if isinstance(doc, bool) or isinstance(real, bool):
        if doc is not real:
            problems.append(f"{path}: documented {_short(doc)}, got {_short(real)}")
        return
    if isinstance(doc, int | float):
        if not isinstance(real, int | float):
            problems.append(f"{path}: documented a number, got {_short(real)}")
        elif isinstance(doc, int) and (key == "id" or key.endswith("_id")):
            comparison.ids[doc] = real
        return
    if isinstance(doc, str):
        if not isinstance(real, str):
            problems.append(f"{path}: documented a string, got {_short(real)}")
            return
        _compare_strings(doc, real, comparison, path, key)
        return
    problems.append(f"{path}: cannot compare {doc!r}")


def _compare_strings(doc: str, real: str, comparison: Comparison, path: str, key: str) -> None:
    doc_ids, real_ids = UUID.findall(doc), UUID.findall(real)
    if doc_ids and len(doc_ids) == len(real_ids):
        for doc_id, real_id in zip(doc_ids, real_ids, strict=True):
            comparison.ids.setdefault(doc_id, real_id)
        doc, real = UUID.sub("<uuid>", doc), UUID.sub("<uuid>", real)
    if key in VOLATILE_KEYS or TIMESTAMP.match(doc) or doc.isdigit() and real.isdigit():
        return
    if ELLIPSIS in doc:
        pattern = ".*".join(re.escape(part) for part in doc.split(ELLIPSIS))
        if not re.fullmatch(pattern, real, re.S):
            comparison.problems.append(f"{path}: documented {doc!r}, got {real!r}")
        return
    if doc != real:
        comparison.problems.append(f"{path}: documented {doc!r}, got {real!r}")


def _short(value) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=False)
    return text if len(text) <= 200 else text[:200] + "…"


# --- documented responses -----------------------------------------------------------------------

@dataclass
class DocumentedResponse:
    status: int | None  # None: any 2xx
    headers: dict[str, str]
    body: list  # the JSON values of the body (empty: no body shown)


def documented_response(block: Block) -> DocumentedResponse:
    """The status line, headers and body a response block shows."""
    text = block.text
    status, headers = None, {}
    match = STATUS_LINE.match(text)
    if match:
        status = int(match.group(1))
        rest = text.split("\n")[1:]
        while rest and re.match(r"^[A-Za-z][\w-]*: ", rest[0]):
            name, value = rest.pop(0).split(": ", 1)
            headers[name] = value.strip()
        text = "\n".join(rest)
    return DocumentedResponse(status=status, headers=headers, body=parse_json_values(text))


# --- shell commands -----------------------------------------------------------------------------

@dataclass
class Command:
    argv: list[str]
    status: int | None  # from a trailing `# 404` comment
    stdin: str | None  # a here-document's text
    redirect: str | None  # `> file`


def commands(text: str) -> list[Command]:
    """The commands of a shell block: continuations joined, quotes kept, comments read for a
    status, here-documents attached to their command."""
    lines = text.split("\n")
    result: list[Command] = []
    current, quote, i = "", None, 0
    while i < len(lines):
        line = lines[i]
        i += 1
        segment, comment, j = "", "", 0
        while j < len(line):
            char = line[j]
            if quote:
                segment += char
                if char == quote:
                    quote = None
            elif char in "'\"":
                quote = char
                segment += char
            elif char == "#" and (j == 0 or line[j - 1].isspace()):
                comment = line[j + 1:]
                break
            else:
                segment += char
            j += 1
        if quote:  # a quoted string goes on to the next line
            current += segment + "\n"
            continue
        if segment.rstrip().endswith("\\"):
            current += segment.rstrip()[:-1] + " "
            continue
        current += segment
        if not current.strip():
            current = ""
            continue
        stdin = None
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", current)
        if heredoc:
            marker = heredoc.group(1)
            current = current[:heredoc.start()] + current[heredoc.end():]
            body = []
            while i < len(lines) and lines[i].strip() != marker:
                body.append(lines[i])
                i += 1
            i += 1
            stdin = "\n".join(body) + "\n"
        status_match = re.match(r"\s*(\d{3})\b", comment)
        argv = shlex.split(current)
        redirect = None
        if ">" in argv:
            at = argv.index(">")
            redirect = argv[at + 1]
            argv = argv[:at] + argv[at + 2:]
        result.append(Command(argv=argv, status=int(status_match.group(1)) if status_match
                              else None, stdin=stdin, redirect=redirect))
        current = ""
    return result


@dataclass
class CurlRequest:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None


def curl_request(argv: list[str], *, read_file, stdin: str | None) -> CurlRequest:
    """What curl would send for `argv` (the options the docs use; any other is an error)."""
    assert argv[0] == "curl", argv
    method, url, headers, data = None, None, {}, None
    args = iter(argv[1:])
    for arg in args:
        if arg in ("-X", "--request"):
            method = next(args)
        elif arg in ("-H", "--header"):
            name, value = next(args).split(":", 1)
            headers[name.strip()] = value.strip()
        elif arg in ("-d", "--data", "--data-raw", "--data-binary"):
            value = next(args)
            if value.startswith("@") and arg != "--data-raw":
                value = stdin if value == "@-" else read_file(value[1:])
                if arg != "--data-binary":  # curl -d @file drops newlines
                    value = value.replace("\r", "").replace("\n", "")
            data = (data + b"&" if data else b"") + value.encode()
        elif arg in ("-i", "--include", "-s", "--silent", "-S", "--show-error", "-sS"):
            continue
        elif arg.startswith("-"):
            raise ValueError(f"curl option {arg} is not understood by the doc runner")
        else:
            url = arg
    if url is None:
        raise ValueError("curl without a URL")
    if data is not None:
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return CurlRequest(method=method or ("POST" if data is not None else "GET"), url=url,
                       headers=headers, data=data)


# The pages whose examples run and whose names are checked (tests/test_docs.py,
# tests/test_docs_names.py): README first (its quick start starts the story), then the API
# reference (it creates what the other pages use), then the other pages.
ROOT = Path(__file__).resolve().parent.parent
PAGES = ["README.md", "docs/api.md"] + sorted(
    f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md") if path.name != "api.md")


def all_blocks() -> list[Block]:
    """Every fenced block of PAGES, in page order."""
    return [block for page in PAGES for block in blocks(ROOT / page, page)]


def page_texts() -> dict[str, str]:
    """{page: its Markdown} for PAGES."""
    return {page: (ROOT / page).read_text() for page in PAGES}
