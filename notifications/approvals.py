"""Answering approvals: the first answer from any channel wins and wakes the run at once; later
answers find it answered. Reads of an approval as the API and the agents' tools show it."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from events.outbox import NewEvent, events_record

from .approval_links import ApprovalLinkError, approval_link_read
from .models import Approval, Run
from .queue import enqueue


def approval_event(event_type: str, approval: Approval) -> NewEvent:
    """The outbound event (events/) of an answered or expired approval: its detail."""
    return NewEvent(type=event_type, tenant_id=approval.tenant_id,
                    recipient=approval.recipient.external_id, data=approval_detail(approval))


def approval_detail(approval: Approval) -> dict:
    """An approval as GET /api/v1/runs/{id} and the get_approval tool show it."""
    return {
        "id": str(approval.id), "run_id": str(approval.run_id), "step": approval.step_ref,
        "recipient": approval.recipient.external_id, "question": approval.question,
        "details": approval.details, "status": approval.status,
        "decision": approval.decision or None, "default_decision": approval.default_decision,
        "expires_at": approval.expires_at.isoformat(),
        "answered_at": approval.answered_at.isoformat() if approval.answered_at else None,
        "answered_via": approval.answered_via or None,
    }


@transaction.atomic
def approval_answer(*, approval_id: str, decision: str, via: str,
                    now: datetime | None = None) -> tuple[Approval, bool]:
    """Answer `approval_id` with `decision` ("approved" or "rejected") through `via` (email,
    in_app, chat, api). Returns (the approval, whether this answer won): False when it was
    answered before or has expired, and then nothing changes. The winning answer wakes the run
    (under its row lock, so a pass in progress cannot put the wake-up back) and updates the
    inbox items that asked. Raises Approval.DoesNotExist."""
    now = now or timezone.now()
    approval = Approval.objects.select_related("recipient").get(pk=approval_id)
    # The run's lock first (the engine takes it before it reads or expires the approval).
    run = Run.objects.select_for_update().filter(pk=approval.run_id).first()
    won = bool(Approval.objects.filter(pk=approval.pk, status=Approval.Status.PENDING,
                                       expires_at__gt=now)
               .update(status=decision, decision=decision, answered_at=now, answered_via=via))
    approval.refresh_from_db()
    if won:
        if run is not None and run.status == Run.Status.WAITING:
            Run.objects.filter(pk=run.pk).update(wake_at=now)
            enqueue("notifications.tasks.advance_run", str(run.pk))
        _inbox_items_answered(approval)
        events_record([approval_event("approval.answered", approval)])
    return approval, won


def _inbox_items_answered(approval: Approval) -> None:
    from inbox.models import InboxItem

    for item in InboxItem.objects.filter(message__run_id=approval.run_id,
                                         content__approval__id=str(approval.id)):
        content = dict(item.content)
        content["approval"] = {**content["approval"], "status": approval.status}
        InboxItem.objects.filter(pk=item.pk).update(content=content)


class AnswerRefused(ValueError):
    """A link that cannot answer: `status` is the HTTP status to show (400 bad or expired
    link, 404 unknown approval)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def approval_answer_link(*, token: str, via: str) -> tuple[Approval, bool]:
    """Answer with a signed link (approval_links): checks the signature, that the link is for
    the approval's recipient, then answers. Raises AnswerRefused."""
    try:
        link = approval_link_read(token)
    except ApprovalLinkError as exc:
        raise AnswerRefused(400, str(exc)) from None
    approval = Approval.objects.select_related("recipient").filter(pk=link.approval_id).first()
    if approval is None or approval.recipient.external_id != link.recipient:
        raise AnswerRefused(404, _("This approval does not exist (any more)."))
    return approval_answer(approval_id=str(approval.pk), decision=link.decision, via=via)


def approval_link_peek(token: str) -> tuple[Approval, str]:
    """(the approval, the decision) a link answers, without answering; raises AnswerRefused."""
    try:
        link = approval_link_read(token)
    except ApprovalLinkError as exc:
        raise AnswerRefused(400, str(exc)) from None
    approval = Approval.objects.select_related("recipient").filter(pk=link.approval_id).first()
    if approval is None or approval.recipient.external_id != link.recipient:
        raise AnswerRefused(404, _("This approval does not exist (any more)."))
    return approval, link.decision
