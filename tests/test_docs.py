"""The docs' examples run: every curl example of README.md and docs/ runs, in page order,
against one real `manage.py serve` (daphne + qcluster), and answers as its page shows
(tests/doc_examples.py says how a page marks its examples); every JSON block parses. What the
pages name exists: tests/test_docs_names.py.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .doc_examples import (
    PAGES,
    ROOT,
    Comparison,
    DocumentedResponse,
    Elided,
    all_blocks,
    blocks,
    commands,
    compare,
    curl_request,
    documented_response,
    parse_json_values,
)

DOC_BASE_URL = "http://localhost:8000"
# The recipient the inbox page mints its token for ($INBOX_TOKEN).
INBOX_TOKEN_RECIPIENT = "user-42"


# --- the examples, run --------------------------------------------------------------------------

class DocRunner:
    """Runs the executable blocks in order against one server and collects every mismatch."""

    def __init__(self, server, api_key: str, work_dir: Path):
        self.server = server
        self.variables = {"CLARION": server.base_url, "CLARION_KEY": api_key}
        self.ids: dict = {}
        self.work_dir = work_dir
        self.problems: list[str] = []
        self.executed = 0

    def substitute(self, text: str) -> str:
        text = text.replace(DOC_BASE_URL, self.server.base_url)
        if "$INBOX_TOKEN" in text and "INBOX_TOKEN" not in self.variables:
            self.variables["INBOX_TOKEN"] = self._mint_inbox_token()

        def variable(match):
            name = match.group(1) or match.group(2)
            if name not in self.variables:
                raise ValueError(f"${name} is not a variable the doc runner knows")
            return self.variables[name]

        text = re.sub(r"\$\{(\w+)\}|\$([A-Z_][A-Z0-9_]*)", variable, text)
        for doc_id, real_id in self.ids.items():
            if isinstance(doc_id, str):
                text = text.replace(doc_id, str(real_id))
            else:  # an integer id, only as a path segment of a URL
                text = re.sub(rf"(/){doc_id}(?=/|$|\?)", rf"\g<1>{real_id}", text)
        return text

    def _mint_inbox_token(self) -> str:
        answer = self.server.request(
            "POST", f"/api/v1/recipients/{INBOX_TOKEN_RECIPIENT}/inbox-token", body={},
            api_key=self.variables["CLARION_KEY"])
        assert answer.status == 201, answer
        return answer.json()["token"]

    def run_block(self, block, response_block) -> None:
        self.executed += 1
        results = []  # (request, status, headers, body, stated status, redirected)
        for command in commands(block.text):
            try:
                argv = [self.substitute(arg) for arg in command.argv]
            except ValueError as error:
                self.problems.append(f"{block.where}: {error}")
                return
            if argv[0] == "export":
                name, _, value = argv[1].partition("=")
                if name not in ("CLARION", "CLARION_KEY", "INBOX_TOKEN"):
                    self.variables[name] = value
                continue
            if argv[0] != "curl":
                self.problems.append(f"{block.where}: `{argv[0]}` in a block with curl: only "
                                     "curl and export run")
                continue
            try:
                request = curl_request(argv, read_file=self._read_file,
                                       stdin=self.substitute(command.stdin or ""))
            except (ValueError, OSError) as error:
                self.problems.append(f"{block.where}: {error}")
                return
            wait_until_quiet()
            status, headers, body = self._send(request)
            if command.redirect:
                target = self.work_dir / command.redirect
                if not target.parent.is_dir():  # as in a reader's fresh shell: no such folder
                    self.problems.append(f"{block.where}: `> {command.redirect}` writes into a "
                                         "folder the page never creates")
                    return
                target.write_bytes(body)
            results.append((request, status, headers, body, command.status,
                            bool(command.redirect)))
        answered = [result for result in results if not result[5]]
        last = answered[-1] if answered and response_block is not None else None
        for result in results:
            request, status, _, body, stated, _ = result
            if result is last:
                continue  # checked against its response block
            if status != (stated or status) or stated is None and not 200 <= status < 300:
                self.problems.append(f"{block.where}: {request.method} {request.url} answered "
                                     f"{status}, the page says {stated or '2xx'}: {body[:300]!r}")
        if response_block is not None:
            if last is None:
                self.problems.append(f"{response_block.where}: a response with no request")
                return
            self.check_response(response_block, *last[:5])

    def _read_file(self, name: str) -> str:
        return (self.work_dir / name).read_text()

    def _send(self, request):
        data = request.data
        req = urllib.request.Request(request.url, data=data, headers=request.headers,
                                     method=request.method)
        try:
            with urllib.request.urlopen(req, timeout=30) as answer:
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers, error.read()

    def check_response(self, block, request, status, headers, body, stated) -> None:
        try:
            documented: DocumentedResponse = documented_response(block)
        except json.JSONDecodeError as error:
            self.problems.append(f"{block.where}: not JSON: {error}")
            return
        where = f"{block.where} ({request.method} {request.url})"
        expected = documented.status or stated
        if status != expected if expected is not None else not 200 <= status < 300:
            self.problems.append(f"{where}: answered {status}, the page shows "
                                 f"{expected or '2xx'}: {body[:300]!r}")
            return
        for name, value in documented.headers.items():
            real = headers.get(name)
            if real is None:
                self.problems.append(f"{where}: no {name} header")
            elif not (value == real or value.isdigit() and real.isdigit()
                      or name.lower() in ("content-type", "date")):
                self.problems.append(f"{where}: {name}: {real}, the page shows {value}")
        if not documented.body:
            if body.strip() and status != 204:
                self.problems.append(f"{where}: the page shows no body, got {body[:200]!r}")
            return
        try:
            real_body = json.loads(body)
        except json.JSONDecodeError:
            self.problems.append(f"{where}: the answer is not JSON: {body[:300]!r}")
            return
        if len(documented.body) != 1:
            self.problems.append(f"{where}: a response block shows one JSON body, not "
                                 f"{len(documented.body)}")
            return
        comparison = Comparison()
        compare(documented.body[0], real_body, comparison)
        self.problems.extend(f"{where}: {problem}" for problem in comparison.problems)
        for doc_id, real_id in comparison.ids.items():
            self.ids.setdefault(doc_id, real_id)


def wait_until_quiet(timeout: float = 30) -> None:
    """Until the worker has nothing left to do now: no run running, no message due or being
    sent, no fan-out pending. Examples show answers after the work settled."""
    from django.db.models import Q
    from django.utils import timezone

    from notifications.models import Message, Run, Trigger

    deadline = time.monotonic() + timeout
    while True:
        now = timezone.now()
        busy = (Run.objects.filter(Q(status="running") | Q(status="waiting", wake_at__lte=now))
                .exists()
                or Message.objects.filter(Q(status="sending") | Q(status="queued") & (
                    Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))).exists()
                or Trigger.objects.filter(fanout="pending").exists())
        if not busy:
            return
        if time.monotonic() > deadline:
            raise AssertionError("the worker did not settle within 30 s")
        time.sleep(0.1)


@pytest.mark.django_db(transaction=True)
def test_every_curl_example_in_the_docs_answers_as_its_page_shows(serve, tmp_path):
    # As `make serve` runs: email goes to the console backend (the pages show provider `console`).
    for name in ("EMAIL_HOST", "EMAIL_PORT"):
        serve.env.pop(name, None)
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        runner = DocRunner(server, server.credentials()["api_key"], tmp_path / "work")
        runner.work_dir.mkdir()
        skipped = []
        for page in PAGES:
            page_blocks = blocks(ROOT / page, page)
            for index, block in enumerate(page_blocks):
                if not block.executable:
                    continue
                if block.not_executed_reason:
                    skipped.append(block.where)
                    continue
                following = page_blocks[index + 1] if index + 1 < len(page_blocks) else None
                response = following if following is not None and following.is_response \
                    and not following.before.strip() else None
                runner.run_block(block, response)
        assert not runner.problems, "\n".join(runner.problems)
        assert runner.executed >= 25, runner.executed
        assert len(skipped) <= 5, skipped


def test_every_response_block_follows_the_request_it_answers():
    """A status line or JSON answer that does not follow its curl block is never checked."""
    orphans = []
    for page in PAGES:
        page_blocks = blocks(ROOT / page, page)
        for index, block in enumerate(page_blocks):
            if block.lang in ("", "http") and block.is_response:
                previous = page_blocks[index - 1] if index else None
                if block.not_executed_reason:
                    continue
                if previous is None or not previous.executable or block.before.strip():
                    orphans.append(block.where)
    assert not orphans, "\n".join(orphans)


def test_every_json_block_in_the_docs_parses():
    broken = []
    for block in all_blocks():
        if block.lang != "json":
            continue
        try:
            parse_json_values(block.text)
        except json.JSONDecodeError as error:
            broken.append(f"{block.where}: {error}")
    assert not broken, "\n".join(broken)


# --- the runner's own rules ---------------------------------------------------------------------

def test_a_response_missing_a_documented_key_is_reported():
    comparison = Comparison()
    compare(parse_json_values('{"id": "x", "name": "Ada"}')[0], {"id": "x"}, comparison)
    assert comparison.problems == ["$: documented keys missing from the answer: ['name']"]


def test_an_undocumented_key_is_reported_unless_the_page_elides():
    comparison = Comparison()
    compare(parse_json_values('{"a": 1}')[0], {"a": 1, "up_to": 3}, comparison)
    assert comparison.problems == ["$: the answer has undocumented keys: ['up_to']"]
    comparison = Comparison()
    compare(parse_json_values('{"a": 1, …}')[0], {"a": 1, "up_to": 3}, comparison)
    assert comparison.problems == []


def test_strings_compare_exactly_except_ids_times_and_elisions():
    doc = parse_json_values('{"id": "1d37b123-a9ec-4d5b-990d-4ddc854fa357", "status": "sent", '
                            '"at": "2026-11-22T01:46:08Z", "html": "<h1>Hi …", "data": {…}}')[0]
    real = {"id": "0f7a5c8e-1111-4d5b-990d-4ddc854fa357", "status": "failed",
            "at": "2027-01-01T00:00:00Z", "html": "<h1>Hi Ada</h1>", "data": {"x": 1}}
    comparison = Comparison()
    compare(doc, real, comparison)
    assert comparison.problems == ["$.status: documented 'sent', got 'failed'"]
    assert comparison.ids == {"1d37b123-a9ec-4d5b-990d-4ddc854fa357":
                              "0f7a5c8e-1111-4d5b-990d-4ddc854fa357"}


def test_elided_lists_and_objects_parse():
    value = parse_json_values('{"fields": {"<path>": ["<problem>", …]}, "t": {…}, "l": […]}')[0]
    assert value["fields"]["<path>"][0] == "<problem>"
    assert isinstance(value["t"], Elided) and value["t"].kind is dict
    assert isinstance(value["l"], Elided) and value["l"].kind is list


def test_curl_commands_are_read_as_curl_reads_them():
    block = """curl -X PUT $CLARION/api/v1/x \\
  -H 'Content-Type: application/json' -d '{"a": 1,
       "b": 2}'   # 201
curl $CLARION/api/v1/y > out.json
curl -X PUT $CLARION/api/v1/z -d @- <<'EOF'
{"c": 3}
EOF"""
    parsed = commands(block)
    assert [c.status for c in parsed] == [201, None, None]
    assert parsed[1].redirect == "out.json"
    first = curl_request(parsed[0].argv, read_file=None, stdin=None)
    assert (first.method, first.data) == ("PUT", b'{"a": 1,\n       "b": 2}')
    third = curl_request(parsed[2].argv, read_file=None, stdin=parsed[2].stdin)
    assert third.data == b'{"c": 3}'
    assert third.headers["Content-Type"] == "application/x-www-form-urlencoded"
