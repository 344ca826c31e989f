"""The API's JSON parser (DRF's DEFAULT_PARSER_CLASSES). Its own module: DRF imports it while
importing its views, so it cannot live in clarion/api.py, which imports DRF's views."""

import codecs
import json
import math

from django.http import JsonResponse
from rest_framework import exceptions, parsers
from rest_framework.utils.json import strict_constant


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"Number out of range: {text[:40]}")
    return value


def unstorable_text(value) -> tuple[str, str] | None:
    """The first text in a parsed JSON document that no database column, header or link can
    hold, as (path, problem); None when there is none. Checks keys and strings at any depth for
    NUL (`\\u0000`: PostgreSQL's text and jsonb refuse it) and unpaired UTF-16 surrogates
    (`\\ud800` alone: not a character, so it has no UTF-8 form; RFC 8259 §8.2). Paths read
    like the API's field names: `data.items[2].note`."""
    stack = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return path or "body", problem
        elif isinstance(item, dict):
            for key, child in reversed(item.items()):
                problem = text_problem(key)
                if problem:  # named escaped: the answer itself must be storable text
                    key = json.dumps(key)[1:-1]
                child_path = f"{path}.{key}" if path else key
                if problem:
                    return child_path, f"This key {problem[5:]}"
                stack.append((child_path, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{index}]", child) for index, child in reversed(list(
                enumerate(item))))
    return None


def text_problem(text: str) -> str:
    """What makes `text` unstorable (unstorable_text's problems), or "" when nothing does. ASCII
    text has no surrogate: only a request's non-ASCII strings are looked at a character at a
    time."""
    if "\x00" in text:
        return "Text cannot contain NUL (\\u0000)."
    if text.isascii():
        return ""
    if any("\ud800" <= char <= "\udfff" for char in text):
        return ("Text cannot contain an unpaired surrogate (such as \\ud800 alone): it is not "
                "a character.")
    return ""


def loads_storable(text: str):
    """Parse a JSON document as the API's parser does, for a form that takes the API's JSON
    (the admin's workflow import). Takes the document's text; returns the parsed value.

    Raises ValueError with a message for a person: not JSON, NaN/Infinity or a number beyond a
    float, nesting too deep to read, or text no column can store (named by its path, as the
    API's 400 names it: `steps[0].templates.en.body: Text cannot contain NUL (\\u0000).`)."""
    try:
        document = json.loads(text, parse_constant=strict_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    found = unstorable_text(document)
    if found:
        raise ValueError(f"{found[0]}: {found[1]}")
    return document


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (NaN and Infinity refused), which also refuses what would fail later
    as a 500: numbers beyond a float (`1e400`), nesting too deep for Python to read, and text
    no column can store (NUL, unpaired surrogates: a 400 naming the field)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            document = json.load(codecs.getreader(encoding)(stream),
                                 parse_constant=strict_constant, parse_float=_finite_float)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
        found = unstorable_text(document)
        if found:
            raise exceptions.ValidationError({found[0]: [found[1]]})
        return document


class StorableRequestTextMiddleware:
    """Refuses a request whose path or query string holds text no column can store (NUL,
    unpaired surrogates), as the JSON parser refuses it in a body: a 400 naming the parameter
    (`path` for the path), where it used to reach PostgreSQL as a 500 (`?tenant=%00`, found by
    the schemathesis run, tests/test_fuzz_api.py). After RawPathMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        fields: dict[str, list[str]] = {}
        problem = text_problem(request.path)
        if problem:
            fields["path"] = [problem]
        for name, values in request.GET.lists():
            for text in (name, *values):
                problem = text_problem(text)
                if problem:
                    fields.setdefault(name.encode("unicode_escape").decode(), [problem])
                    break
        if fields:
            return JsonResponse({"error": "invalid_request",
                                 "detail": "The request is not valid; see `fields`.",
                                 "fields": fields}, status=400)
        return self.get_response(request)
