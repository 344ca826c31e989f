"""One error shape for the whole API: `{"error": code, "detail": message, "fields": {...}}`.

`fields` (validation errors only) maps a path into the request body, e.g.
`recipients[1].email`, to its list of problems.
"""

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """An error with its own status and code, e.g. ApiError(422, "workflow_inactive", "…")."""

    def __init__(self, status_code: int, code: str, detail: str):
        self.status_code = status_code
        self.code = code
        super().__init__(detail=detail, code=code)


def flatten(errors, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"a.b[2].c": ["…"]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            if key in ("non_field_errors", "__all__"):
                path = prefix or "body"
            elif isinstance(key, int):
                path = f"{prefix}[{key}]"
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
            for sub_path, messages in flatten(value, path).items():
                flat.setdefault(sub_path, []).extend(messages)
    elif isinstance(errors, list):
        if all(not isinstance(item, dict | list) for item in errors):
            flat[prefix or "body"] = [str(item) for item in errors]
        else:
            for index, item in enumerate(errors):
                if item:
                    flat.update(flatten(item, f"{prefix}[{index}]"))
    else:
        flat[prefix or "body"] = [str(errors)]
    return flat


_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
}


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {
            "error": "invalid_request",
            "detail": "The request is not valid; see `fields`.",
            "fields": flatten(exc.detail),
        }
    elif isinstance(exc, exceptions.ParseError):
        body = {"error": "parse_error", "detail": str(exc.detail)}
    else:
        code = getattr(exc, "code", None) or _CODES.get(response.status_code, "error")
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        body = {"error": code, "detail": str(detail)}
    response.data = body
    return response


def not_found(what: str, key: str) -> ApiError:
    return ApiError(status.HTTP_404_NOT_FOUND, "not_found", f"No {what} {key!r}.")
