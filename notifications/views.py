"""Hosted pages of notifications: the page an approval email's links open, and Slack's
interactivity requests (an approval's buttons)."""

import hashlib
import hmac
import json
import logging
import time
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import pgettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from clarion.locale import language_for

from .api.approvals import already_answered
from .approval_links import is_open
from .approvals import AnswerRefused, approval_answer_link, approval_link_peek
from .models import ProviderConfig

logger = logging.getLogger(__name__)

LABELS = {"approved": pgettext_lazy("approval", "Approve"),
          "rejected": pgettext_lazy("approval", "Reject")}


@csrf_exempt  # the signed link is the credential; no cookie is read
@never_cache
@require_http_methods(["GET", "POST"])
def approval_page(request, token: str):
    """GET shows the question and a button confirming the link's answer (mail scanners that
    open links answer nothing); POST answers. Either way, an answered approval says so. In the
    approver's language (their locale, as the preference center); a link that names no
    approval, in LANGUAGE_CODE's."""
    try:
        approval, decision = approval_link_peek(token)
    except AnswerRefused as exc:
        return render(request, "approvals/page.html", {"title": _("Approval"),
                                                        "message": str(exc)}, status=exc.status)
    with translation.override(language_for(approval.recipient.locale)):
        return _approval_page(request, token, approval, decision)


def _approval_page(request, token: str, approval, decision: str):
    context = {"title": _("Approval"), "approval": approval, "decision": decision}
    if request.method == "POST":
        try:
            approval, won = approval_answer_link(token=token, via="email")
        except AnswerRefused as exc:
            return render(request, "approvals/page.html", {**context, "message": str(exc)},
                          status=exc.status)
        message = (_("Thank you: %(status)s.") % {"status": approval.get_status_display().lower()}
                   if won else already_answered(approval))
        return render(request, "approvals/page.html", {**context, "approval": approval,
                                                        "message": message},
                      status=200 if won else 409)
    if not is_open(approval):
        return render(request, "approvals/page.html",
                      {**context, "message": already_answered(approval)}, status=409)
    return render(request, "approvals/page.html", {**context, "ask": LABELS[decision]})


SLACK_KINDS = ("slack", "slack_webhook")
SLACK_MAX_SKEW_SECONDS = 300


def slack_signature_ok(secret: str, timestamp: str, body: bytes, signature: str,
                       now: float | None = None) -> bool:
    """Slack's request signature: "v0=" + HMAC-SHA256(signing secret, "v0:{timestamp}:{body}"),
    compared in constant time, the timestamp within five minutes (Slack's "Verifying requests
    from Slack")."""
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > \
            SLACK_MAX_SKEW_SECONDS:
        return False
    expected = "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body,
                                hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def _slack_respond(response_url: str, body: dict) -> None:
    """Post `body` to an interaction's response_url, if it is on an allowed host."""
    url = urlsplit(response_url or "")
    allowed = settings.CLARION["SLACK_RESPONSE_HOSTS"]
    secure = url.scheme == "https" or (url.scheme == "http"
                                       and settings.CLARION["ALLOW_PRIVATE_URLS"])
    if not secure or url.hostname not in allowed:
        logger.warning("Slack response_url on %s refused (SLACK_RESPONSE_HOSTS)", url.hostname)
        return
    try:
        httpx.post(response_url, json=body, timeout=5)
    except httpx.HTTPError as exc:
        logger.warning("Slack response_url failed: %s", exc)


@csrf_exempt  # Slack signs the request; no cookie is read
@require_http_methods(["POST"])
def slack_interactions(request, key: str):
    """Slack's interactivity requests for the provider `key` (its app's Request URL): an
    approval's Approve / Reject button answers it. The first answer replaces the message with
    the outcome; a later one is told, to that person only, that it was already answered."""
    config = ProviderConfig.objects.filter(key=key, channel="chat", kind__in=SLACK_KINDS).first()
    secret = (config.credentials or {}).get("signing_secret") if config else ""
    if not secret:
        return JsonResponse({"error": "not_found",
                             "detail": f"No Slack provider {key!r} with a signing secret."},
                            status=404)
    if not slack_signature_ok(secret, request.headers.get("X-Slack-Request-Timestamp", ""),
                              request.body, request.headers.get("X-Slack-Signature", "")):
        return JsonResponse({"error": "unauthorized", "detail": "Bad Slack signature."},
                            status=401)
    try:
        payload = json.loads(request.POST.get("payload", ""))
    except ValueError:
        return JsonResponse({"error": "invalid_request", "detail": "Expected a payload."},
                            status=400)
    actions = payload.get("actions") if isinstance(payload, dict) else None
    action = next((a for a in actions or [] if isinstance(a, dict)
                   and a.get("action_id") in ("clarion_approve", "clarion_reject")), None)
    if action is None:
        return HttpResponse(status=200)  # some other app's interaction: nothing to do
    user = (payload.get("user") or {}).get("id", "")
    try:
        approval, won = approval_answer_link(token=str(action.get("value", "")), via="chat")
    except AnswerRefused as exc:
        _slack_respond(payload.get("response_url"), {"response_type": "ephemeral",
                                                     "replace_original": False,
                                                     "text": str(exc)})
        return HttpResponse(status=200)
    if won:
        outcome = f"{approval.status.capitalize()}" + (f" by <@{user}>" if user else "") + "."
        _slack_respond(payload.get("response_url"), {
            "replace_original": True, "text": f"{approval.question} — {outcome}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn",
                                                    "text": f"*{approval.question}*"}},
                       {"type": "context", "elements": [{"type": "mrkdwn", "text": outcome}]}]})
    else:
        _slack_respond(payload.get("response_url"), {"response_type": "ephemeral",
                                                     "replace_original": False,
                                                     "text": already_answered(approval)})
    return HttpResponse(status=200)
