"""What the docs name exists: every endpoint a page names resolves to a view that takes the
method it names; every step type a page names is one a workflow can be saved with; every setting
a page names is read by clarion/settings.py; every file, Python name, link, heading and picture a
page points at is there; every route is named by some page. (The examples run: test_docs.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import Resolver404, resolve

from .doc_examples import (
    ROOT,
    all_blocks,
    blocks,
    page_texts,
)

# --- what the docs name exists ------------------------------------------------------------------

# `GET /api/v1/runs/{id}`, `/p/<token>/`, `POST workflows/{key}/trigger` (relative to /api/v1/).
OUR_ORIGIN = (r"(?:\$CLARION|\$PUBLIC_URL|(?:https?|wss?)://(?:localhost|127\.0\.0\.1|"
              r"clarion\.example\.com|notify\.example\.com)(?::\d+)?)")
ENDPOINT = re.compile(
    r"(?:\b(GET|POST|PUT|PATCH|DELETE)(?:\s*\|\s*(?:GET|POST|PUT|PATCH|DELETE))*\s+)?"
    rf"(?:{OUR_ORIGIN}|(?<![\w.:/\-$<]))"
    r"(/(?:api|ws|p|u|webhooks|healthz|readyz|metrics|demo|admin|static|knock|novu|favicon|"
    r"approvals)\b"
    r"(?:[^\s`'\"()<>\[\]]|<[^>]+>)*)")
RELATIVE_ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE)(?:/(?:GET|POST|PUT|PATCH|DELETE))*"
                               r"\s+/?((?:workflows|triggers|runs|recipients|tenants|topics|"
                               r"providers|inbox)[^`\s]*)`")
# The JSON 404 of every other path under /api/v1/, /knock/ and /novu/: no endpoint of its own.
CATCH_ALL_ROUTES = {"unknown-endpoint", "knock-unknown-endpoint", "novu-unknown-endpoint"}
PLACEHOLDER = re.compile(r"\{[^}/]+\}|<[^>/]+>")
SAMPLES = ["sample-key", "00000000-0000-4000-8000-000000000000", "1", "postmark"]


def unexecuted_lines():
    """(where, line) of every page, leaving out the blocks the live run executes and their
    responses: those are checked by running them (some show a deliberate 400 or 404)."""
    for page, text in page_texts().items():
        executed: set[int] = set()
        page_blocks = blocks(ROOT / page, page)
        for index, block in enumerate(page_blocks):
            if block.executable:
                lines = range(block.line, block.line + block.text.count("\n") + 2)
                executed.update(lines)
                following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
                if following is not None and following.is_response \
                        and not following.before.strip():
                    executed.update(range(following.line,
                                          following.line + following.text.count("\n") + 2))
        for number, line in enumerate(text.splitlines(), 1):
            if number not in executed:
                yield f"{page}:{number}", line


def named_endpoints() -> list[tuple[str, str | None, str]]:
    """(where, method or None, path) for every endpoint path README.md and docs/ name, outside
    the examples the live run executes."""
    found = []
    for where, line in unexecuted_lines():
        for match in ENDPOINT.finditer(line):
            found.append((where, match.group(1), match.group(2).rstrip("…")))
        for match in RELATIVE_ENDPOINT.finditer(line):
            found.append((where, match.group(1), "/api/v1/" + match.group(2)))
    return found


def _resolve(path: str):
    """The ResolverMatch of `path` with its placeholders filled in, or None."""
    path = path.split("?")[0].split("#")[0].rstrip(".,;:")
    if path.startswith("/ws/"):
        from inbox.routing import websocket_urlpatterns

        for pattern in websocket_urlpatterns:
            if pattern.resolve(path.lstrip("/")):
                return pattern.resolve(path.lstrip("/"))
        return None
    if path.startswith("/static/"):
        from django.contrib.staticfiles import finders

        return path if finders.find(path.removeprefix("/static/")) else None
    holes = PLACEHOLDER.findall(path)
    import itertools

    for values in itertools.product(SAMPLES, repeat=len(holes)):
        candidate = path
        for hole, value in zip(holes, values, strict=True):
            candidate = candidate.replace(hole, value, 1)
        try:
            match = resolve(candidate)
        except Resolver404:
            continue
        if match.url_name not in CATCH_ALL_ROUTES:
            return match
    return None


def test_every_endpoint_the_docs_name_exists_and_takes_the_method_named():
    missing = []
    named = named_endpoints()
    for where, method, path in named:
        match = _resolve(path)
        if match is None:
            # A prefix of endpoints (`/api/v1/`, `/webhooks/`) names them all.
            if not (path.endswith("/") and any(
                    other.startswith(path) and other != path and _resolve(other)
                    for _, _, other in named)):
                missing.append(f"{where}: {path}")
            continue
        view = getattr(getattr(match, "func", None), "view_class", None)
        if method and view is not None and not hasattr(view, method.lower()):
            missing.append(f"{where}: {method} {path} (the view has no {method})")
    assert not missing, "\n".join(missing)


def test_the_endpoint_check_finds_what_the_docs_name():
    paths = {path for _, _, path in named_endpoints()}
    assert "/api/v1/workflows/{key}/trigger" in paths
    assert _resolve("/api/v1/runs/{id}") is not None
    assert _resolve("/api/v1/no-such-thing/{id}") is None
    assert _resolve("/ws/inbox/") is not None


# "`delay` step", "`in_app` steps", "- `sms`: a channel step"
STEP_TYPE_IN_PROSE = re.compile(r"`([a-z_]+)`(?::? an?(?: \w+)?)? steps?\b")
# {"ref": "mail", "type": "email", …} or {"type": "webhook", "config": …}
STEP_TYPE_IN_JSON = re.compile(r'"ref":\s*"[^"]*",\s*"type":\s*"(\w+)"|'
                               r'\{"type":\s*"(\w+)",\s*"(?:config|templates|conditions)"')


def named_step_types() -> list[tuple[str, str]]:
    """(where, type) for each step type a page names: a JSON object with a `ref` and a `type`,
    or a backticked word followed by "step", outside the examples the live run executes (one of
    them shows the 400 that an unknown type gets)."""
    found = []
    for where, line in unexecuted_lines():
        found += [(where, name) for name in STEP_TYPE_IN_PROSE.findall(line)]
        found += [(where, a or b) for a, b in STEP_TYPE_IN_JSON.findall(line)]
    return found


@pytest.mark.django_db
def test_every_step_type_the_docs_name_is_one_a_workflow_can_have(api):
    unknown = []
    for where, step_type in named_step_types():
        answer = api.put("/api/v1/workflows/doc-step-type-check",
                         {"name": "x", "steps": [{"ref": "s", "type": step_type}]})
        if "steps[0].type" in (answer.json().get("fields") or {}):
            unknown.append(f"{where}: {step_type}")
    assert not unknown, "\n".join(unknown)
    assert len(named_step_types()) >= 10


@pytest.mark.django_db
def test_an_unknown_step_type_is_refused_by_the_check(api):
    # The check above relies on this answer naming the step's type.
    answer = api.put("/api/v1/workflows/x", {"name": "x", "steps": [
        {"ref": "s", "type": "carrier_pigeon"}]})
    assert "steps[0].type" in answer.json()["fields"]


def environment_variables_read() -> set[str]:
    """Every environment variable clarion/settings.py and the project's commands read."""
    names = set()
    sources = [ROOT / "clarion" / "settings.py", *(ROOT / "clarion").rglob("management/**/*.py"),
               ROOT / "tests" / "conftest.py"]
    for source in sources:
        text = source.read_text()
        pattern = r"""(?:environ(?:\.get)?[\[(]|_env_\w+\()\s*["']([A-Z][A-Z0-9_]*)"""
        names |= set(re.findall(pattern, text))
    return names


ENV_NAME = re.compile(r"`((?:CLARION|INBOX|EMAIL|ANYMAIL|QUEUE|SECURE|DATABASE|REDIS)_[A-Z0-9_<>]+"
                      r"|SECRET_KEY|PUBLIC_URL|ALLOWED_HOSTS|PORT|HOST|DEBUG|LOG_LEVEL|"
                      r"CONN_MAX_AGE|STATIC_ROOT|CSRF_TRUSTED_ORIGINS|DEFAULT_FROM_EMAIL|"
                      r"TRUST_X_FORWARDED_PROTO|DISABLE_SERVER_SIDE_CURSORS)`")
SETTING_ENTRY = re.compile(r"`([A-Z][A-Z0-9_]+)` entry of the `([A-Z_]+)` setting|"
                           r"`([A-Z_]+)\[\"(\w+)\"\]`")


def named_settings() -> list[tuple[str, str]]:
    """(where, name): backticked environment variable names, the first column of tables of
    variables, and `NAME=value` lines of shell blocks."""
    found = []
    for page, text in page_texts().items():
        in_variable_table = False
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{page}:{number}"
            found += [(where, name) for name in ENV_NAME.findall(line)]
            if re.match(r"^\|\s*variable\s*\|", line):
                in_variable_table = True
            elif not line.startswith("|"):
                in_variable_table = False
            elif in_variable_table and not line.startswith("|---"):
                first = line.split("|")[1]
                found += [(where, name) for name in re.findall(r"`([A-Z][A-Z0-9_<>]*)`", first)]
    for block in all_blocks():
        if block.lang in ("sh", "bash"):
            found += [(block.where, name) for name in
                      re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]+)=", block.text, re.M)
                      if name not in ("CLARION", "CLARION_KEY", "INBOX_TOKEN", "KEY")]
    return found


def test_every_setting_the_docs_name_is_read_by_the_settings():
    read = environment_variables_read()
    settings_source = (ROOT / "clarion" / "settings.py").read_text()
    unread = []
    for where, name in named_settings():
        if name.startswith("ANYMAIL_") and 'startswith("ANYMAIL_")' in settings_source:
            continue  # settings.py turns every ANYMAIL_* variable into an anymail setting
        if name not in read:
            unread.append(f"{where}: {name}")
    assert not unread, "\n".join(unread)


def test_every_settings_entry_the_docs_name_exists():
    unknown = []
    for page, text in page_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for match in SETTING_ENTRY.finditer(line):
                key, setting = (match.group(1), match.group(2)) if match.group(1) else (
                    match.group(4), match.group(3))
                if key not in (getattr(settings, setting, None) or {}):
                    unknown.append(f"{page}:{number}: {setting}[{key!r}]")
    assert not unknown, "\n".join(unknown)


def test_the_settings_check_knows_what_settings_read():
    read = environment_variables_read()
    assert {"DATABASE_URL", "CLARION_STUCK_AFTER_SECONDS", "INBOX_HMAC_SECRET", "HOST"} <= read
    assert "CLARION_NO_SUCH_THING" not in read


# --- what the docs point at in the code and in each other ---------------------------------------

PROJECT_DIRS = ("bench", "clarion", "docs", "inbox", "notifications", "preferences", "static",
                "templates", "tests")
FILE_PATH = re.compile(rf"`((?:{'|'.join(PROJECT_DIRS)})/[\w./<>-]+\.\w+)`")
PYTHON_NAME = re.compile(
    r"`((?:clarion|inbox|notifications|preferences|events|analytics)(?:\.[A-Za-z_]\w*)+)`")
# Dotted names in the docs that are not Python: file names, the sweeper's and retention's
# and analytics' schedules, and the outbound event type named like the preferences app.
NOT_PYTHON = re.compile(r".*\.(js|css|json|html|md|py)$"
                        r"|^clarion\.(sweep|retention|analytics\.fold)$|^preferences\.updated$")
SYSTEM_CHECK_ID = re.compile(r"^\w+\.[CEWID]\d{3}$")


def project_sources() -> list[Path]:
    return [path for folder in ("clarion", "inbox", "notifications", "preferences", "events",
                                "analytics")
            for path in (ROOT / folder).rglob("*.py")]
LINK = re.compile(r"\]\(((?:[\w./-]+\.md)?)(?:#([\w-]+))?\)")


def test_every_file_the_docs_name_exists():
    missing = []
    for where, line in unexecuted_lines():
        for name in FILE_PATH.findall(line):
            if not list(ROOT.glob(re.sub(r"<[^>]+>", "*", name))):
                missing.append(f"{where}: {name}")
    assert not missing, "\n".join(missing)


def test_every_python_name_the_docs_name_can_be_imported():
    import importlib

    missing = []
    for where, line in unexecuted_lines():
        for name in PYTHON_NAME.findall(line):
            if NOT_PYTHON.match(name):
                continue
            if SYSTEM_CHECK_ID.match(name):  # `notifications.E001`: a check the code defines
                if not any(f'id="{name}"' in source.read_text() for source in project_sources()):
                    missing.append(f"{where}: {name} (no system check has this id)")
                continue
            parts = name.split(".")
            for split in range(len(parts), 0, -1):
                try:
                    target = importlib.import_module(".".join(parts[:split]))
                except ImportError:
                    continue
                try:
                    for attribute in parts[split:]:
                        target = getattr(target, attribute)
                except AttributeError:
                    missing.append(f"{where}: {name}")
                break
            else:
                missing.append(f"{where}: {name}")
    assert not missing, "\n".join(missing)


def heading_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors, seen = set(), {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"^#{1,6}\s+(.*?)\s*#*$", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_every_link_between_pages_reaches_a_page_and_its_heading():
    broken = []
    for page, text in page_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for target, anchor in LINK.findall(line):
                path = (ROOT / page).parent / target if target else ROOT / page
                if not path.is_file():
                    broken.append(f"{page}:{number}: {target}")
                elif anchor and anchor not in heading_anchors(path):
                    broken.append(f"{page}:{number}: {target}#{anchor}")
    assert not broken, "\n".join(broken)


IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


def test_every_picture_the_docs_show_exists_is_described_and_is_small():
    """Each ![alt](path) of a page is a file of the repository (not a web address), has alt
    text for those who cannot see it, and is a PNG of at most 400 kB (the admin guide's
    screenshots: `make screenshots`)."""
    problems, shown = [], set()
    for page, text in page_texts().items():
        for number, line in enumerate(text.splitlines(), 1):
            for alt, target in IMAGE.findall(line):
                path = ((ROOT / page).parent / target).resolve()
                shown.add(path)
                if not alt.strip():
                    problems.append(f"{page}:{number}: {target} has no alt text")
                if not path.is_file():
                    problems.append(f"{page}:{number}: {target} does not exist")
                elif path.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
                    problems.append(f"{page}:{number}: {target} is not a PNG")
                elif path.stat().st_size > 400_000:
                    problems.append(f"{page}:{number}: {target} is {path.stat().st_size} bytes")
    unused = [str(path.relative_to(ROOT)) for path in (ROOT / "docs" / "img").rglob("*.png")
              if path.resolve() not in shown]
    assert not problems, "\n".join(problems)
    assert not unused, f"pictures no page shows: {unused}"
    assert IMAGE.findall("![The builder](img/admin/workflow-builder.png)") == [
        ("The builder", "img/admin/workflow-builder.png")]


def test_the_link_check_reads_anchors_as_github_makes_them():
    anchors = heading_anchors(ROOT / "docs" / "preferences.md")
    assert {"who-decides-the-resolution-order",
            "in-your-app-the-inboxs-preferences-panel"} <= anchors
    assert "who-decides" not in anchors
    links = [link for text in page_texts().values() for link in LINK.findall(text)]
    assert len(links) >= 40


# Routes the docs need not name: the APIs' catch-all 404s, and the demo page's own button.
# "/" (home) is named in docs/deploy.md, but a bare "/" is not something ENDPOINT can find.
UNDOCUMENTED_ROUTES = {*CATCH_ALL_ROUTES, "inbox-demo-trigger", "home"}


def url_routes():
    """(route, url name) of every HTTP endpoint outside the admin."""
    from django.urls import get_resolver

    def walk(resolver, prefix=""):
        for pattern in resolver.url_patterns:
            if hasattr(pattern, "url_patterns"):
                yield from walk(pattern, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern.name

    return [(route, name) for route, name in walk(get_resolver())
            if not route.startswith("admin/")]


def test_every_endpoint_is_named_in_the_docs():
    named = named_endpoints()
    # Also the URLs the executed examples call.
    called = [match.group(2) for block in all_blocks() if block.executable
              for match in ENDPOINT.finditer(block.text)]
    documented = {getattr(_resolve(path), "url_name", None)
                  for path in [path for _, _, path in named] + called}
    every_esp = any("/webhooks/anymail/<esp>/" in path for _, _, path in named)
    undocumented = [f"/{route} ({name})" for route, name in url_routes()
                    if name not in documented and name not in UNDOCUMENTED_ROUTES
                    and not (every_esp and route.startswith("webhooks/anymail/"))]
    assert not undocumented, "\n".join(undocumented)
    assert len(url_routes()) >= 30
