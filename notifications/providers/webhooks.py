"""Delivery-status webhooks: providers tell Clarion what became of a message.

Mounted under /webhooks/ (clarion/urls.py):

- ``anymail/<esp>/tracking/``: django-anymail's own tracking views (Postmark, Mailgun, SendGrid…),
  with anymail's authentication (basic auth, or the ESP's signature); their events reach
  status.anymail_tracking_received through anymail's `tracking` signal.
- ``twilio/<provider key>/status/``: Twilio's StatusCallback, signed with `X-Twilio-Signature`.
- ``vonage/<provider key>/receipt/``: Vonage SMS API delivery receipts, signed with `sig`.
- ``vonage/<provider key>/status/``: Vonage Messages API status webhooks, signed with a JWT.

The provider key names the ProviderConfig whose secret signed the callback. A bad or missing
signature is a 403; an event about a message Clarion does not know is logged and answered 204,
so the provider stops re-sending it. Signatures are checked on the raw request, in constant time.
"""

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from functools import wraps

import jwt
from anymail import urls as anymail_urls
from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.utils import get_anymail_setting
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.urls import URLPattern, include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from ..models import ProviderConfig
from . import status

logger = logging.getLogger(__name__)

# Signed Vonage callbacks older (or further in the future) than this are refused as replays.
SIGNATURE_MAX_AGE_SECONDS = 300
VONAGE_SIGNATURE_METHODS = {
    "md5hash": None, "md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256,
    "sha512": hashlib.sha512,
}


def _error(status_code: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status_code)


def _forbidden(detail: str) -> JsonResponse:
    return _error(403, "forbidden", detail)


def _accepted() -> HttpResponse:
    """Recorded, or logged and ignored (an unknown message): either way the provider is done."""
    return HttpResponse(status=204)


def _provider(key: str, kind: str) -> ProviderConfig | None:
    return ProviderConfig.objects.filter(key=key, kind=kind).first()


# --- Twilio ---------------------------------------------------------------------------------

def twilio_signature(url: str, params: Mapping[str, Iterable[str]], auth_token: str) -> str:
    """Twilio's request signature: HMAC-SHA1 (key: the auth token) over the full URL followed by
    each POST parameter's name and value, sorted by name, base64-encoded."""
    payload = url + "".join(name + value for name in sorted(params)
                            for value in sorted(set(params[name])))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _urls_twilio_may_have_signed(request: HttpRequest) -> list[str]:
    """The URL as this request says it was called, and as PUBLIC_URL says (behind a proxy
    the request may not know the public scheme and host)."""
    urls = [request.build_absolute_uri()]
    public = f"{settings.PUBLIC_URL.rstrip('/')}{request.get_full_path()}"
    if public not in urls:
        urls.append(public)
    return urls


@csrf_exempt
@require_http_methods(["POST"])
def twilio_status(request: HttpRequest, key: str) -> HttpResponse:
    config = _provider(key, "twilio")
    if config is None:
        return _error(404, "not_found", f"No Twilio provider {key!r}.")
    auth_token = str(config.credentials.get("auth_token") or "")
    params = QueryDict(request.body, encoding="utf-8")  # the raw body, as Twilio signed it
    signature = request.headers.get("X-Twilio-Signature", "")
    lists = {name: params.getlist(name) for name in params}
    valid = bool(auth_token and signature) and any(
        hmac.compare_digest(twilio_signature(url, lists, auth_token).encode(), signature.encode())
        for url in _urls_twilio_may_have_signed(request))
    if not valid:
        logger.warning("Twilio status callback for %s refused: bad X-Twilio-Signature", key)
        return _forbidden("Missing or invalid X-Twilio-Signature.")
    # The event id comes from the signed parameters (not the unsigned idempotency header), so a
    # replayed callback is recorded once.
    values = {name: values[-1] for name, values in lists.items()}
    event = status.from_twilio(values, event_id=":".join(
        values.get(name, "") for name in ("MessageSid", "MessageStatus", "ErrorCode")))
    status.message_event_record(event=replace(event, sent_by=config.key))
    return _accepted()


# --- Vonage ---------------------------------------------------------------------------------

def vonage_signature(params: Mapping[str, object], secret: str, method: str = "md5hash") -> str:
    """Vonage's signed-request `sig` (lower-case hex): each parameter but `sig`, sorted by name,
    as ``&name=value`` with '&' and '=' in values replaced by '_'; then MD5 of that plus the
    secret ("md5hash"), or an HMAC of it keyed by the secret (md5, sha1, sha256, sha512)."""
    text = "".join(
        f"&{name}={str(params[name]).replace('&', '_').replace('=', '_')}"
        for name in sorted(params) if name != "sig")
    digest = VONAGE_SIGNATURE_METHODS[method]
    if digest is None:
        return hashlib.md5((text + secret).encode()).hexdigest()
    return hmac.new(secret.encode(), text.encode(), digest).hexdigest()


def _vonage_secret(config: ProviderConfig) -> tuple[str, str]:
    credentials = config.credentials
    return (str(credentials.get("signature_secret") or ""),
            str(credentials.get("signature_method") or "md5hash").lower())


def _receipt_params(request: HttpRequest) -> dict:
    if request.method == "GET":
        return {name: request.GET.get(name) for name in request.GET}
    if request.content_type == "application/json":
        payload = json.loads(request.body or b"{}")
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        return payload
    form = QueryDict(request.body, encoding="utf-8")
    return {name: form.get(name) for name in form}


@csrf_exempt
@require_http_methods(["GET", "POST"])
def vonage_receipt(request: HttpRequest, key: str) -> HttpResponse:
    """An SMS API delivery receipt. Vonage signs receipts (`sig` plus `timestamp`) once signed
    webhooks are on for the account; Clarion accepts signed receipts only."""
    config = _provider(key, "vonage")
    if config is None:
        return _error(404, "not_found", f"No Vonage provider {key!r}.")
    secret, method = _vonage_secret(config)
    if not secret or method not in VONAGE_SIGNATURE_METHODS:
        logger.error("Vonage receipt for %s refused: the provider has no usable "
                     "signature_secret/signature_method", key)
        return _forbidden("This provider has no signature secret: receipts cannot be verified.")
    try:
        params = _receipt_params(request)
    except ValueError:
        return _error(400, "invalid_request", "The body is not a JSON object.")
    signature = str(params.get("sig") or "")
    expected = vonage_signature(params, secret, method)
    if not signature or not hmac.compare_digest(expected.encode(), signature.lower().encode()):
        logger.warning("Vonage receipt for %s refused: bad sig", key)
        return _forbidden("Missing or invalid sig.")
    try:
        age = abs(time.time() - int(params.get("timestamp")))
    except (TypeError, ValueError):
        return _forbidden("Missing or invalid timestamp.")
    if age > SIGNATURE_MAX_AGE_SECONDS:
        return _forbidden("The signature timestamp is too old.")
    status.message_event_record(event=replace(status.from_vonage_receipt(
        {name: str(value) for name, value in params.items() if name != "sig"}),
        sent_by=config.key))
    return _accepted()


@csrf_exempt
@require_http_methods(["POST"])
def vonage_message_status(request: HttpRequest, key: str) -> HttpResponse:
    """A Messages API status webhook: `Authorization: Bearer <JWT>` signed (HS256) with the
    signature secret, whose `payload_hash` claim is the SHA-256 of the body."""
    config = _provider(key, "vonage")
    if config is None:
        return _error(404, "not_found", f"No Vonage provider {key!r}.")
    secret, _ = _vonage_secret(config)
    if not secret:
        return _forbidden("This provider has no signature secret: webhooks cannot be verified.")
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"],
                            options={"require": ["iat", "payload_hash"]})
    except jwt.InvalidTokenError as exc:
        logger.warning("Vonage status webhook for %s refused: %s", key, exc)
        return _forbidden("Missing or invalid signed JWT.")
    body_hash = hashlib.sha256(request.body).hexdigest()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            body_hash.encode(), str(claims["payload_hash"]).lower().encode()):
        return _forbidden("The JWT does not sign this body.")
    if abs(time.time() - float(claims["iat"])) > SIGNATURE_MAX_AGE_SECONDS:
        return _forbidden("The signature timestamp is too old.")
    try:
        payload = json.loads(request.body)
    except ValueError:
        return _error(400, "invalid_request", "The body is not JSON.")
    if not isinstance(payload, dict):
        return _error(400, "invalid_request", "The body is not a JSON object.")
    status.message_event_record(event=replace(status.from_vonage_message_status(payload),
                                              sent_by=config.key))
    return _accepted()


# --- django-anymail -------------------------------------------------------------------------

def _anymail_view(view):
    """anymail's view, refusing with 403 (not anymail's 400) what fails its authentication, and
    refusing outright when an ESP that has only basic auth has no WEBHOOK_SECRET configured
    (anymail would only warn, and accept anyone's events)."""
    needs_basic_auth = getattr(view.view_class, "warn_if_no_basic_auth", False)

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if needs_basic_auth and not get_anymail_setting("webhook_secret", default=None):
            return _forbidden("Set ANYMAIL_WEBHOOK_SECRET: this ESP's webhooks are "
                              "authenticated by basic auth only.")
        try:
            return view(request, *args, **kwargs)
        except AnymailWebhookValidationFailure as exc:
            logger.warning("anymail webhook refused: %s", exc)
            return _forbidden(str(exc))

    return csrf_exempt(wrapped)


anymail_tracking_patterns = [
    URLPattern(pattern.pattern, _anymail_view(pattern.callback), pattern.default_args,
               pattern.name)
    for pattern in anymail_urls.urlpatterns
    if pattern.name and "tracking" in pattern.name
]

urlpatterns = [
    path("anymail/", include((anymail_tracking_patterns, "anymail"), namespace="anymail")),
    path("twilio/<str:key>/status/", twilio_status, name="webhook-twilio-status"),
    path("vonage/<str:key>/receipt/", vonage_receipt, name="webhook-vonage-receipt"),
    path("vonage/<str:key>/status/", vonage_message_status, name="webhook-vonage-status"),
]
