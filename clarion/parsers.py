"""The API's JSON parser (DRF's DEFAULT_PARSER_CLASSES). Its own module: DRF imports it while
importing its views, so it cannot live in clarion/api.py, which imports DRF's views."""

import codecs
import json
import math

from rest_framework import exceptions, parsers
from rest_framework.utils.json import strict_constant


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"Number out of range: {text[:40]}")
    return value


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser (NaN and Infinity refused), which also refuses what would fail later
    as a 500: numbers beyond a float (`1e400`), and nesting too deep for Python to read."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        try:
            return json.load(codecs.getreader(encoding)(stream), parse_constant=strict_constant,
                             parse_float=_finite_float)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None
