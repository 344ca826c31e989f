"""Answering an approval with its signed link, as JSON: what the `<clarion-inbox>` widget posts
when the person presses Approve or Reject. The link is the credential (signed, bound to the
recipient and the decision, expiring), so no API key or inbox token is asked."""

from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from clarion.api import ApiError, NoBodySerializer, Serializer, error_responses, validated

from ..approvals import AnswerRefused, approval_answer_link, approval_detail


def already_answered(approval) -> str:
    """What a late answer is told: "Already answered: approved." or "This approval expired;
    it went on as rejected.", in the active language (the API's is English; the approval
    page's the approver's)."""
    if approval.status == approval.Status.EXPIRED or approval.status == approval.Status.PENDING:
        decision = (approval.get_decision_display().lower() if approval.decision
                    else _("its default"))
        return _("This approval expired; it went on as %(decision)s.") % {"decision": decision}
    return _("Already answered: %(status)s.") % {"status": approval.get_status_display().lower()}


class ApprovalAnswerSerializer(Serializer):
    approval = serializers.DictField(help_text="The approval: status, decision, answered_at…")
    answered = serializers.BooleanField(help_text="True when this answer is the one that won.")


class ApprovalAnswerView(APIView):
    authentication_classes = []
    permission_classes = []

    @extend_schema(
        operation_id="approval_answer", summary="Answer an approval with its signed link",
        description="The first answer wins (200, `answered: true`); a later one is a 409 "
        "`already_answered` carrying the approval as it was answered.",
        request=NoBodySerializer,
        responses={200: ApprovalAnswerSerializer, **error_responses({
            400: "The link is not valid or has expired.",
            404: "The approval does not exist (any more).",
            409: "Already answered, or expired."})},
    )
    def post(self, request, token: str):
        validated(NoBodySerializer, request.data)
        try:
            approval, won = approval_answer_link(token=token, via="in_app")
        except AnswerRefused as exc:
            code = "invalid_link" if exc.status == 400 else "not_found"
            raise ApiError(exc.status, code, str(exc)) from None
        if not won:
            return Response({"error": "already_answered", "detail": already_answered(approval),
                             "approval": approval_detail(approval)}, status=409)
        return Response({"approval": approval_detail(approval), "answered": True})
