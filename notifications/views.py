"""Hosted pages of notifications: the page an approval email's links open."""

from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from .api.approvals import already_answered
from .approval_links import is_open
from .approvals import AnswerRefused, approval_answer_link, approval_link_peek

LABELS = {"approved": "Approve", "rejected": "Reject"}


@csrf_exempt  # the signed link is the credential; no cookie is read
@never_cache
@require_http_methods(["GET", "POST"])
def approval_page(request, token: str):
    """GET shows the question and a button confirming the link's answer (mail scanners that
    open links answer nothing); POST answers. Either way, an answered approval says so."""
    try:
        approval, decision = approval_link_peek(token)
    except AnswerRefused as exc:
        return render(request, "approvals/page.html", {"title": "Approval",
                                                        "message": str(exc)}, status=exc.status)
    context = {"title": "Approval", "approval": approval, "decision": decision}
    if request.method == "POST":
        try:
            approval, won = approval_answer_link(token=token, via="email")
        except AnswerRefused as exc:
            return render(request, "approvals/page.html", {**context, "message": str(exc)},
                          status=exc.status)
        message = (f"Thank you: {approval.status}." if won else already_answered(approval))
        return render(request, "approvals/page.html", {**context, "approval": approval,
                                                        "message": message},
                      status=200 if won else 409)
    if not is_open(approval):
        return render(request, "approvals/page.html",
                      {**context, "message": already_answered(approval)}, status=409)
    return render(request, "approvals/page.html", {**context, "ask": LABELS[decision]})
