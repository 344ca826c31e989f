"""What every Clarion API shares (the server API, the inbox API, the preferences API): one error
shape and its exception handler, the error responses the schema documents, the tenant an API key
may act for, the key rule for names in paths, and request validation: the `Serializer` base that
refuses fields it does not know, in nested objects too.

The error shape is `{"error": code, "detail": message, "fields": {...}}`; `fields` (validation
errors only) maps a path into the request body, e.g. `recipients[1].email`, to its problems.
"""

import threading
from collections.abc import Iterable, Mapping
from typing import ClassVar

from django.core.exceptions import RequestDataTooBig
from django.core.validators import MaxValueValidator, MinValueValidator
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.views import exception_handler as drf_exception_handler

from clarion.db import database_unreachable, transaction_conflict
from notifications.models import Tenant, key_validator


class ApiError(exceptions.APIException):
    """An error with its own status and code, e.g. ApiError(422, "workflow_inactive", "…")."""

    def __init__(self, status_code: int, code: str, detail: str, *,
                 retry_after: int | None = None):
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after  # seconds, sent as Retry-After (a 409 or 503)
        super().__init__(detail=detail, code=code)


# --- Request bodies: no field dropped without a word ------------------------------------------

def unknown_field_errors(data: Mapping, fields: Iterable[str], *,
                         also_accepted: Iterable[str] = ()) -> dict[str, list[str]]:
    """{name: [message]} for each key of `data` that is neither one of `fields` (named in the
    message as the fields that exist) nor `also_accepted` (accepted and dropped: read-only fields
    of a GET body PUT back, read-only keys of an exported document)."""
    fields = list(fields)
    accepted = {*fields, *also_accepted}
    expected = (f"expected one of: {', '.join(fields)}." if fields
                else "this request takes no fields.")
    return {str(name): [f"Unknown field; {expected}"]
            for name in sorted(data, key=str) if name not in accepted}


# What a database integer column holds (PostgreSQL bigint, SQLite INTEGER): a larger number in a
# request is a 400 naming its field, never an overflow (a 500) in the query it reaches.
BIGINT_MAX = 2**63 - 1


def bound_integers(fields) -> None:
    """Give every IntegerField among `fields` (a serializer's `fields`) without its own bounds
    the database's: ±BIGINT_MAX, checked and shown in the OpenAPI schema."""
    for field in fields.values():
        if not isinstance(field, serializers.IntegerField) or field.read_only:
            continue
        if field.max_value is None:
            field.max_value = BIGINT_MAX
            field.validators.append(MaxValueValidator(BIGINT_MAX))
        if field.min_value is None:
            field.min_value = -BIGINT_MAX
            field.validators.append(MinValueValidator(-BIGINT_MAX))


# JSON has types: a body's scalar of the wrong type is refused, not coerced. DRF's fields accept
# 5 as the text "5", "5" and 5.0 as the integer 5, and "yes" or 1 as true.
_STRICT_SCALARS = (
    (serializers.BooleanField, (bool,), ()),
    (serializers.CharField, (str,), ()),
    (serializers.IntegerField, (int,), (bool,)),
    (serializers.FloatField, (int, float), (bool,)),
)


def strict_scalars(fields) -> None:
    """Make every writable boolean, text, integer and float field among `fields` (a
    serializer's `fields`, and the child of a list or dict field) refuse a JSON value of another
    type with its own "invalid" message, e.g. {"name": 5} → "Not a valid string.". A text field
    whose class sets `accepts_numbers = True` keeps turning numbers into text (recipient ids:
    `42` is the id "42")."""
    for field in fields.values():
        _make_strict(field)


def _make_strict(field) -> None:
    if field.read_only:
        return
    if isinstance(field, serializers.ListField | serializers.DictField):
        _make_strict(field.child)
        return
    rule = next(((allowed, refused) for kind, allowed, refused in _STRICT_SCALARS
                 if isinstance(field, kind)), None)
    if rule is None:
        return
    allowed, refused = rule
    if getattr(field, "accepts_numbers", False):
        allowed = (str, int, float)
        refused = (bool,)
    convert = field.to_internal_value

    def to_internal_value(data, convert=convert, field=field):
        if not isinstance(data, allowed) or isinstance(data, refused):
            field.fail("invalid")
        return convert(data)

    field.to_internal_value = to_internal_value


class BoundedIntegers:
    """Mixin of the serializer bases: no integer a request sends is beyond the database's."""

    def get_fields(self):
        fields = super().get_fields()
        bound_integers(fields)
        return fields


class StrictScalars:
    """Mixin of the body serializers' base: scalars of the wrong JSON type are refused."""

    def get_fields(self):
        fields = super().get_fields()
        strict_scalars(fields)
        return fields


class Serializer(StrictScalars, BoundedIntegers, serializers.Serializer):
    """The base of every request body's serializer (and, harmlessly, of response shapes): a field
    it does not declare is refused, with a 400 naming each unknown field and the fields that
    exist, next to any other problem of the body. Nested serializers derive from it too, so an
    unknown key is refused at any depth (`steps[0].confg`).

    Read-only fields are accepted and ignored (a GET body can be PUT back); `ignored_fields` are
    accepted and dropped too (e.g. the read-only `id` of a document exported from Knock).
    """

    ignored_fields: ClassVar[frozenset[str]] = frozenset()

    def field_names(self) -> tuple[list[str], list[str]]:
        """(writable field names, read-only field names), in declaration order."""
        writable = [name for name, field in self.fields.items() if not field.read_only]
        read_only = [name for name, field in self.fields.items() if field.read_only]
        return writable, read_only

    def unknown_fields(self, data) -> dict[str, list[str]]:
        if not isinstance(data, Mapping):
            return {}
        writable, read_only = self.field_names()
        return unknown_field_errors(data, writable,
                                    also_accepted=[*read_only, *self.ignored_fields])

    def to_internal_value(self, data):
        unknown = self.unknown_fields(data)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if unknown and isinstance(exc.detail, Mapping):
                raise serializers.ValidationError({**exc.detail, **unknown}) from None
            raise
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class QuerySerializer(BoundedIntegers, serializers.Serializer):
    """The base of query-string serializers, which keep ignoring parameters they do not know:
    browsers, proxies and widgets add their own (cache busters, tracking parameters).

    A parameter given empty (`?status=`) is refused, naming it, unless its field allows blank:
    DRF reads an empty form value as "absent", which the schema (minLength, enum) does not say
    and which silently widened a filter (found by the schemathesis run, tests/test_fuzz_api.py)."""

    def to_internal_value(self, data):
        blank = {name: ["This field may not be blank."]
                 for name, field in self.fields.items()
                 if not field.read_only and hasattr(data, "getlist")
                 and "" in data.getlist(name) and not getattr(field, "allow_blank", False)}
        if blank:
            raise serializers.ValidationError(blank)
        return super().to_internal_value(data)


class NoBodySerializer(Serializer):
    """A write that takes no body: any field in one is refused."""


class ApiErrorSerializer(Serializer):
    """The documented shape of every error body."""

    error = serializers.CharField()
    detail = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                   required=False)


def error_responses(descriptions: dict[int, str]) -> dict[int, OpenApiResponse]:
    """{status: description} as drf-spectacular responses with the error body."""
    return {code: OpenApiResponse(ApiErrorSerializer, description=text)
            for code, text in descriptions.items()}


# The errors of a server API endpoint (API key authentication).
ERRORS = error_responses({
    400: "The body is not valid; `fields` names each bad field.",
    401: "Missing, unknown or revoked API key.",
    403: "The key may not do this (tenant-restricted key).",
    404: "Not found.",
})


def not_found(what: str, key: str) -> ApiError:
    return ApiError(status.HTTP_404_NOT_FOUND, "not_found", f"No {what} {key!r}.")


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


CODES = {
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


def error_body(exc: exceptions.APIException, status_code: int | None = None) -> dict:
    """The one error shape for `exc`: {"error", "detail"} and, for a ValidationError,
    "fields". `status_code` defaults to the exception's own."""
    if isinstance(exc, exceptions.ValidationError):
        return {
            "error": "invalid_request",
            "detail": "The request is not valid; see `fields`.",
            "fields": flatten(exc.detail),
        }
    if isinstance(exc, exceptions.ParseError):
        return {"error": "parse_error", "detail": str(exc.detail)}
    status_code = status_code or getattr(exc, "status_code", 500)
    code = getattr(exc, "code", None) or CODES.get(status_code, "error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    return {"error": code, "detail": str(detail)}


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "request_too_large"


# How long a client waits before retrying while the database is unreachable, and after its
# request's transaction was undone for another's sake (a deadlock, a serialization failure).
DATABASE_RETRY_AFTER_SECONDS = 5
CONFLICT_RETRY_AFTER_SECONDS = 1


def transaction_conflict_error() -> ApiError:
    """The 503 of a request whose transaction PostgreSQL undid for another's sake
    (clarion.db.transaction_conflict): nothing of it was written; sent again, it may pass."""
    return ApiError(503, "transaction_conflict",
                    "The request's writes conflicted with another's and were undone; "
                    "send it again.", retry_after=CONFLICT_RETRY_AFTER_SECONDS)


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every error as the one error shape."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) if str(exc) else "Not found.")
    if isinstance(exc, RequestDataTooBig):
        exc = RequestTooLarge("The request body is larger than this server accepts "
                              "(DATA_UPLOAD_MAX_MEMORY_SIZE).")
    if database_unreachable(exc):
        exc = ApiError(503, "database_unavailable",
                       "The database cannot be reached; retry shortly.",
                       retry_after=DATABASE_RETRY_AFTER_SECONDS)
    if transaction_conflict(exc):
        exc = transaction_conflict_error()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    response.data = error_body(exc, response.status_code)
    if getattr(exc, "retry_after", None) is not None:
        response["Retry-After"] = str(exc.retry_after)
    return response


def validated(serializer_class, data, **kwargs) -> dict:
    """`data` validated by `serializer_class(data=data, **kwargs)`; raises its ValidationError
    (a 400 naming each field)."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


_reused = threading.local()


def validated_reusing(serializer_class, data, *, context: dict | None = None, **attributes):
    """validated(serializer_class, data, context=context, **attributes) with one serializer of
    the class per thread, used again for the next body: DRF builds a serializer's fields afresh
    (deep copies of the declared ones) for every instance. For the hot paths (a trigger's body);
    `attributes` are keyword arguments the class's __init__ keeps as attributes of the same
    names. Raises its ValidationError."""
    kept = _reused.__dict__.setdefault("serializers", {})
    serializer = kept.get(serializer_class)
    if serializer is None:
        serializer = kept[serializer_class] = serializer_class(data=data, context=context,
                                                               **attributes)
    else:  # what is_valid() keeps of the last body, and this body's own state
        serializer.initial_data = data
        serializer._context = context or {}
        for name, value in attributes.items():
            setattr(serializer, name, value)
        for name in ("_validated_data", "_errors", "_data"):
            serializer.__dict__.pop(name, None)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def check_key(key: str) -> str:
    """A key named in a path (workflow, tenant, topic, provider): returns it, or raises a 400
    stating the rule (notifications.models.key_validator)."""
    if not key_validator.regex.match(key):
        raise ApiError(400, "invalid_request", key_validator.message)
    return key


def tenant_for_api_key(api_key, requested: Tenant | None) -> Tenant | None:
    """The tenant a request acts for: a tenant-restricted key acts only for its own tenant
    (asking for another is a 403); an unrestricted key for the one requested, or none."""
    if api_key.tenant_id is None:
        return requested
    if requested is not None and requested.pk != api_key.tenant_id:
        raise ApiError(403, "forbidden", "This API key is restricted to another tenant.")
    return api_key.tenant


class TenantKeyField(serializers.SlugRelatedField):
    """A tenant named by its key; answers the Tenant."""

    default_error_messages = {
        "does_not_exist": "Unknown tenant '{value}'.",
        "invalid": "Expected a tenant key.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("default", None)
        super().__init__(slug_field="key", queryset=Tenant.objects.all(), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):  # not "Unknown tenant '{'a': 1}'"
            self.fail("invalid")
        return super().to_internal_value(data)
