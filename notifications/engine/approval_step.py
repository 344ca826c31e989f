"""The approval step: ask one person a question with Approve / Reject, wait for the first answer
(from the inbox, an email link, or the API) or the time limit, then go on with the outcome in
`steps.<ref>` (`outcome`: approved, rejected or expired; `decision`: approved or rejected, the
default when it expired), and down the step's branch of that name (engine/branches.py: its
`approved`, `rejected` and `expired` branches hold their own steps; any may be left out).

Config: {"question": Liquid, "details": Liquid, "timeout": duration | "until": "data.<path>",
"default": "rejected" | "approved" (Liquid allowed), "channels": ["in_app", "email", "chat"]}
(default: in-app and email, and Slack where a Slack provider is configured and the person has
chat channel data).
"""

import json
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.html import escape

from events.outbox import events_record
from preferences.selectors import channel_step_verdict

from ..approval_links import approval_token, approval_urls
from ..approvals import approval_event
from ..models import Approval, ChannelData, Message, ProviderConfig, Step, StepLog
from ..queue import enqueue, enqueue_at
from ..rendering import RenderOptions, TemplateError, render_email, render_fields
from .branches import branch_choices, choose
from .channel_steps import layout_for_tenant
from .context import NEXT, WAIT, Pass
from .validation import delay_until

APPROVAL_CHANNELS = ("in_app", "email", "chat")
SLACK_KINDS = ("slack", "slack_webhook")
DEFAULT_TIMEOUT = timedelta(days=1)

EMAIL_FIELDS = {
    "subject": "Approval needed: {{ approval.question }}",
    "html": "<p>{{ approval.question }}</p>"
            "{% if approval.details %}<p>{{ approval.details }}</p>{% endif %}"
            "<p><a href=\"{{ approval.approve_url }}\">Approve</a> &nbsp; "
            "<a href=\"{{ approval.reject_url }}\">Reject</a></p>"
            "<p>Please answer by {{ approval.expires_at }}.</p>",
    "text": "{{ approval.question }}\n{% if approval.details %}\n{{ approval.details }}\n"
            "{% endif %}\nApprove: {{ approval.approve_url }}\n"
            "Reject: {{ approval.reject_url }}\n\nPlease answer by {{ approval.expires_at }}.",
}


def message_ref(step: Step, channel: str) -> str:
    """The step_ref of the approval's message on `channel` (one Message per run and ref)."""
    return f"{step.ref[:56]}:{channel}"


def _text(source: str, p: Pass) -> str:
    if not source:
        return ""
    return render_fields("sms", {"text": source}, p.variables, RenderOptions())["text"].strip()


def approval(p: Pass, step: Step) -> str:
    run, config = p.run, step.config or {}
    p.flush()  # its messages and inbox items are written at once, after the earlier steps'
    asked = Approval.objects.filter(run=run, step_ref=step.ref).first()
    if asked is None:
        return _ask(p, step, config)
    if asked.status == Approval.Status.PENDING:
        if asked.expires_at > p.now:  # woken early (the sweeper, a duplicate task)
            run.wake_at = asked.expires_at
            return WAIT
        if Approval.objects.filter(pk=asked.pk, status=Approval.Status.PENDING).update(
                status=Approval.Status.EXPIRED, decision=asked.default_decision):
            asked.refresh_from_db()
            events_record([approval_event("approval.expired", asked)])
        asked.refresh_from_db()
    if asked.status == Approval.Status.EXPIRED:
        p.log(step.ref, StepLog.Event.EXPIRED, approval_id=str(asked.id),
              decision=asked.decision)
    else:
        p.log(step.ref, StepLog.Event.ANSWERED, approval_id=str(asked.id),
              outcome=asked.status, via=asked.answered_via)
    output = {"approval_id": str(asked.id), "outcome": asked.status, "decision": asked.decision,
              "answered_via": asked.answered_via,
              "answered_at": asked.answered_at.isoformat() if asked.answered_at else None}
    state = dict(run.state or {})
    state["steps"] = {**state.get("steps", {}), step.ref: output}
    run.state = state
    p.variables["steps"] = {**p.variables.get("steps", {}), step.ref: output}
    run.wake_at = None
    if step.ref in branch_choices(run):  # taken before (a re-walk): never chosen twice
        return NEXT
    # The run goes on down the branch named by the outcome (if the step has one).
    return choose(p, step, asked.status, approval_id=str(asked.id))


def _ask(p: Pass, step: Step, config: dict) -> str:
    run = p.run
    if "until" in config:
        expires_at, problem = delay_until({"until": config["until"]}, p.variables, p.now)
    else:
        seconds = sum(float(config.get("timeout", {}).get(unit, 0)) * factor for unit, factor in
                      (("seconds", 1), ("minutes", 60), ("hours", 3600), ("days", 86400)))
        expires_at, problem = p.now + (timedelta(seconds=seconds) if seconds
                                       else DEFAULT_TIMEOUT), ""
    longest = p.now + timedelta(seconds=settings.CLARION["APPROVAL_MAX_WAIT_SECONDS"])
    if expires_at is None or expires_at <= p.now:
        expires_at = p.now if expires_at is None else expires_at
        problem = problem or "the time limit has already passed"
    expires_at = min(expires_at, longest)
    try:
        question = _text(config.get("question", ""), p)
        details = _text(config.get("details", ""), p)
        default = _text(config.get("default", "rejected"), p) or "rejected"
    except TemplateError as exc:
        p.log(step.ref, StepLog.Event.FAILED, reason=f"template error in config: {exc.message}")
        return NEXT
    if default not in Approval.Decision.values:
        default = Approval.Decision.REJECTED
    asked = Approval.objects.create(run=run, step_ref=step.ref, recipient=run.recipient,
                                    tenant=run.tenant, question=question or "Approve?",
                                    details=details, default_decision=default,
                                    expires_at=expires_at)
    if problem:
        p.log(step.ref, StepLog.Event.ASKED, approval_id=str(asked.id), sent=[],
              expires_at=expires_at.isoformat(), problem=problem)
        run.wake_at = p.now
        return approval(p, step)
    channels = config.get("channels") or ["in_app", "email", *(["chat"] if _slack(run) else [])]
    sent = [channel for channel in channels
            if channel in APPROVAL_CHANNELS and _send(p, step, asked, channel)]
    p.log(step.ref, StepLog.Event.ASKED, approval_id=str(asked.id), sent=sent,
          expires_at=expires_at.isoformat(), default=default)
    run.wake_at = expires_at
    enqueue_at("notifications.tasks.advance_run", str(run.id), at=expires_at,
               name=f"run:{run.id}@{int(expires_at.timestamp())}")
    return WAIT


def _slack(run) -> bool:
    """Whether the run's recipient can be asked on Slack: an active Slack provider (the run's
    tenant's or a global one) and chat channel data of theirs."""
    providers = ProviderConfig.objects.filter(channel="chat", kind__in=SLACK_KINDS, active=True)
    providers = providers.filter(Q(tenant__isnull=True) | Q(tenant_id=run.tenant_id))
    return (providers.exists()
            and ChannelData.objects.filter(recipient=run.recipient, channel="chat").exists())


def _slack_text(text: str) -> str:
    """Slack mrkdwn escapes: &, < and > (Slack's "Escaping text" rules)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_content(asked: Approval) -> dict:
    """An approval as a Slack message: the question, and Approve / Reject buttons whose values
    are the signed answers (posted back to /webhooks/slack/<provider>/interactions)."""
    blocks = [{"type": "section", "text": {"type": "mrkdwn",
                                           "text": f"*{_slack_text(asked.question)}*"}}]
    if asked.details:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _slack_text(asked.details)}]})
    blocks.append({"type": "actions", "block_id": f"clarion-approval-{asked.id}", "elements": [
        {"type": "button", "action_id": "clarion_approve", "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"},
         "value": approval_token(asked, Approval.Decision.APPROVED)},
        {"type": "button", "action_id": "clarion_reject", "style": "danger",
         "text": {"type": "plain_text", "text": "Reject"},
         "value": approval_token(asked, Approval.Decision.REJECTED)},
    ]})
    return {"text": f"Approval needed: {asked.question}", "blocks": json.dumps(blocks)}


def approval_content(asked: Approval, urls: dict) -> dict:
    """An approval's in-app item content: the question, and its answers as actions for the
    `<clarion-inbox>` widget (each posts to its signed JSON endpoint)."""
    return {
        # In-app bodies are HTML-escaped text, as an in_app template renders them.
        "body": escape(asked.question + (f" — {asked.details}" if asked.details else "")),
        "action_url": "",
        "approval": {
            "id": str(asked.id), "status": asked.status,
            "expires_at": asked.expires_at.isoformat(),
            "actions": [
                {"decision": "approved", "label": "Approve", "url": urls["approve"]["api"]},
                {"decision": "rejected", "label": "Reject", "url": urls["reject"]["api"]},
            ],
        },
    }


def _send(p: Pass, step: Step, asked: Approval, channel: str) -> bool:
    """Ask on `channel` unless the person opted out of it; whether a message went out."""
    from inbox.services import inbox_item_create

    run, ref = p.run, message_ref(step, channel)
    verdict = channel_step_verdict(recipient=run.recipient, workflow=run.workflow,
                                   tenant=run.tenant, channel=channel, now=p.now,
                                   check_quiet_hours=False, memo=p.preferences)
    if not verdict.decision.allowed:
        p.log(step.ref, StepLog.Event.OPTED_OUT, rule=verdict.decision.rule, channel=channel)
        return False
    urls = approval_urls(asked)
    fields = {"run": run, "step": step, "step_ref": ref, "recipient": run.recipient,
              "workflow": run.workflow, "tenant": run.tenant, "channel": channel}
    if channel == "in_app":
        content = approval_content(asked, urls)
        message = Message.objects.create(**fields, status=Message.Status.SENT, content=content,
                                         provider="inbox", sent_at=timezone.now(),
                                         to=run.recipient.external_id)
        inbox_item_create(message=message, content=content)
        p.log(ref, StepLog.Event.SENT, message_id=str(message.id))
        return True
    if channel == "chat":
        message = Message.objects.create(**fields, status=Message.Status.QUEUED,
                                         content=slack_content(asked))
        p.log(ref, StepLog.Event.QUEUED, message_id=str(message.id))
        enqueue("notifications.tasks.deliver_message", str(message.id))
        return True
    address = run.recipient.email
    if not address:
        p.log(ref, StepLog.Event.SKIPPED, reason="the recipient has no email address")
        return False
    variables = {**p.variables, "approval": {
        "question": asked.question, "details": asked.details,
        "approve_url": urls["approve"]["page"], "reject_url": urls["reject"]["page"],
        "expires_at": f"{asked.expires_at:%Y-%m-%d %H:%M} UTC"}}
    email = render_email(EMAIL_FIELDS, variables, layout_for_tenant(run.tenant_id),
                         RenderOptions(locale=run.recipient.locale or "en"))
    message = Message.objects.create(**fields, status=Message.Status.QUEUED, to=address,
                                     content={"subject": email.subject, "html": email.html,
                                              "text": email.text})
    p.log(ref, StepLog.Event.QUEUED, message_id=str(message.id), to=address)
    enqueue("notifications.tasks.deliver_message", str(message.id))
    return True
