"""Free text in URL paths (recipient ids): one path segment, percent-encoded, decoded exactly once.

A recipient id may contain "/", "%", "?", "#", spaces or any letter. A client puts it in a path as
one segment, percent-encoded as RFC 3986 §2.1 says (what `encodeURIComponent(id)` and
`urllib.parse.quote(id, safe="")` produce): `team/ops` is `team%2Fops`, and the id `a%2Fb` itself
is `a%252Fb`. ASGI servers (daphne) hand Django a path already decoded, `%2F` included, so `a%2Fb`
would reach the router as `a/b`: two segments. `RawPathMiddleware` routes on the path the client
sent (`scope["raw_path"]`, which daphne, uvicorn and hypercorn all set) instead, and
`PathSegmentConverter` decodes the one segment, so `a%2Fb` and `a/b` are never the same id.
"""

from urllib.parse import unquote, unquote_to_bytes

from django.http import JsonResponse

NOT_UTF8 = ("The request path is not UTF-8 once percent-decoded: percent-encode the UTF-8 bytes "
            "of each character (RFC 3986 §2.5), e.g. \"é\" as %C3%A9.")


def _segment(text: str) -> str:
    """A decoded segment as `path_info` carries it: only "%" and "/" stay encoded."""
    return text.replace("%", "%25").replace("/", "%2F")


def routing_path(*, decoded: str, raw: bytes | None) -> str:
    """The path the URL resolver sees: each segment of `raw` (the undecoded request path, bytes)
    decoded as UTF-8 except "%" and "/" (kept as %25 and %2F); from `decoded` alone (no raw path
    known) only "%" is kept encoded, and an encoded "/" is lost to the decoding. Raises
    UnicodeDecodeError when a segment of `raw` is not UTF-8 once decoded (`%FF`)."""
    if raw is None:
        return decoded.replace("%", "%25")
    return "/".join(_segment(unquote_to_bytes(part).decode("utf-8"))
                    for part in raw.split(b"/"))


class RawPathMiddleware:
    """Sets `request.path_info` from the raw request path (see the module docstring). The
    decoded `request.path` is left as the server gave it. A path whose bytes are not UTF-8 once
    decoded (`/a%FF`) is answered 400 with a JSON body: read with replacement characters, `%FE`
    and `%FF` would name one recipient. First in MIDDLEWARE."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        scope = getattr(request, "scope", None) or {}
        raw = scope.get("raw_path")
        raw = raw.split(b"?", 1)[0] if isinstance(raw, bytes) and raw.startswith(b"/") else None
        if raw is not None:
            try:
                if unquote_to_bytes(raw).decode("utf-8") != request.path:
                    raw = None  # not the path Django was given (a root_path the server strips)
            except UnicodeDecodeError:
                return JsonResponse({"error": "invalid_request", "detail": NOT_UTF8}, status=400)
        path = routing_path(decoded=request.path, raw=raw)
        script = request.path[:len(request.path) - len(request.path_info)]
        if path != request.path and path.startswith(script):
            request.path_info = path[len(script):]
        return self.get_response(request)


class PathSegmentConverter:
    """One path segment of free text, e.g. `<segment:recipient_id>`; "a%2Fb" is the text "a/b".

    `reverse()` cannot build a path for text with "/" (it quotes "%" again, and leaves "/"
    alone), so `to_url` refuses it; build such a path with `urllib.parse.quote(text, safe="")`."""

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        return unquote(value)

    def to_url(self, value: str) -> str:
        if "/" in value:
            raise ValueError("Text with '/' cannot be reversed; use quote(text, safe='').")
        return value
