"""A run's timeline in plain words, for an agent to relay to a person: "email suppressed: opted
out of marketing by email", "in-app sent", "waiting until 09:00 UTC (quiet hours)"."""

from collections.abc import Mapping

from ..channels import channel_spec
from ..models import Run, StepLog

SOURCES = {
    "recipient": "",
    "recipient_tenant": " (their choice for this tenant)",
    "tenant_default": " (the tenant's default)",
    "workflow_default": " (the workflow's default)",
    "default": "",
}


def opt_out_words(rule: str) -> str:
    """A preference rule ("recipient:categories.marketing.channel_types.email") in words
    ("opted out of marketing by email")."""
    source, _, path = rule.partition(":")
    parts = path.split(".") if path else []
    channel = ""
    if "channel_types" in parts:
        index = parts.index("channel_types")
        channel = ".".join(parts[index + 1:])
        parts = parts[:index]
    label = (channel_spec(channel).label if channel_spec(channel) else channel) if channel else ""
    if len(parts) >= 2 and parts[0] == "workflows":
        what = f"the workflow {parts[1]}"
    elif len(parts) >= 2 and parts[0] == "categories":
        what = parts[1]
    else:
        what = ""
    if what and label:
        words = f"opted out of {what} by {label.lower()}"
    elif what:
        words = f"opted out of {what}"
    elif label:
        words = f"opted out of {label.lower()}"
    else:
        words = "not allowed by the preferences"
    return words + SOURCES.get(source, f" ({source})")


def _step_name(run_steps: Mapping[str, str], ref: str) -> str:
    """`ref` with its channel, e.g. "email (mail)"; the ref alone for a function step."""
    kind = run_steps.get(ref, "")
    spec = channel_spec(kind)
    return f"{spec.label.lower()} ({ref})" if spec else ref


DEVICE_RESULT_WORDS = {"accepted": "accepted it", "deactivated": "gone (deactivated)",
                       "transient_error": "to be retried", "permanent_error": "refused it"}


def _devices_words(detail: Mapping) -> str:
    """A push entry's devices (delivery/fanout.py) counted by result, e.g. " (2 devices accepted
    it, 1 device gone (deactivated))"; "" for an entry without devices."""
    counts: dict[str, int] = {}
    for device in detail.get("devices") or []:
        result = str(device.get("result", ""))
        counts[result] = counts.get(result, 0) + 1
    if not counts:
        return ""
    return " (" + ", ".join(f"{n} device{'s' if n != 1 else ''} "
                            f"{DEVICE_RESULT_WORDS.get(result, result)}"
                            for result, n in counts.items()) + ")"


def entry_words(entry: StepLog, step_types: Mapping[str, str]) -> str:
    """One timeline entry as a sentence."""
    d = entry.detail or {}
    step = _step_name(step_types, entry.step_ref) if entry.step_ref else "the run"
    if d.get("channel") and channel_spec(d["channel"]) and not channel_spec(
            step_types.get(entry.step_ref, "")):  # one channel of a route step
        step = f"{channel_spec(d['channel']).label.lower()} ({entry.step_ref})"
    event = entry.event
    E = StepLog.Event
    if event == E.TRIGGERED:
        via = d.get("via", "")
        return "triggered" + (f" (reached through {via})" if via else "")
    if event == E.OPTED_OUT:
        return f"{step} suppressed: {opt_out_words(d.get('rule', ''))}"
    if event == E.QUIET_HOURS:
        return (f"{step} held for the person's quiet hours ({d.get('window', '')}, "
                f"{d.get('timezone', 'UTC')}) until {d.get('until', '')}")
    if event == E.SEND_WINDOW:
        return f"{step} held until its send window opens at {d.get('until', '')}"
    if event == E.DELAYED:
        return f"{step}: waiting until {d.get('until', '')}"
    if event == E.RESUMED:
        return f"{step}: resumed after waiting"
    if event == E.CONDITION_FALSE:
        if "unless" in d:
            unless = d["unless"]
            return (f"{step} not sent: the {unless.get('step')} message was already "
                    f"{unless.get('is')}")
        return f"{step} not sent: its condition was false"
    if event == E.SKIPPED:
        return f"{step} skipped: {d.get('reason', 'no reason given')}"
    if event == E.QUEUED:
        if d.get("resent"):
            return (f"{step} resent (send {d.get('send_number')})"
                    + (f" by {d['by']}" if d.get("by") else ""))
        return f"{step} queued" + (f" to {d['to']}" if d.get("to") else "")
    if event == E.SENT:
        return f"{step} sent" + (f" to {d['to']}" if d.get("to") else "") + _devices_words(d)
    if event == E.FAILED:
        return (f"{step} failed: {d.get('reason') or d.get('error') or 'no reason given'}"
                + _devices_words(d))
    if event == E.RETRYING:
        return f"{step}: a provider failed, retrying" + _devices_words(d)
    if event == E.RATE_LIMITED:
        return f"{step} not sent: {d.get('reason', 'rate limited')}"
    if event == E.THROTTLED:
        return f"{step}: throttled, the run ends ({d.get('count')} of {d.get('limit')} allowed)"
    if event == E.PASSED:
        return f"{step}: within its throttle limit"
    if event == E.CANCELLED:
        return f"{step} cancelled" + (f" (cancellation key {d['cancellation_key']!r})"
                                      if d.get("cancellation_key") else "")
    if event == E.BRANCHED:
        return f"{step}: took the {d.get('branch')} branch"
    if event == getattr(E, "SUCCEEDED", None):
        return (f"{entry.step_ref}: the {d.get('channel', '').replace('_', '-')} message was "
                f"{d.get('state')}, no further channel tried")
    if event == getattr(E, "EXHAUSTED", None):
        return f"{step}: every channel tried"
    if event == E.ASKED:
        sent = " and ".join(channel_spec(c).label.lower() for c in d.get("sent", [])
                            if channel_spec(c)) or "no channel"
        return f"{step}: approval asked ({sent}), waiting until {d.get('expires_at', '')}"
    if event == E.ANSWERED:
        return f"{step}: {d.get('outcome')} (answered via {d.get('via') or 'the API'})"
    if event == E.EXPIRED:
        return f"{step}: no answer in time; went on as {d.get('decision')}"
    if event == E.COMPLETED:
        return "the run completed"
    extra = ", ".join(f"{key}: {value}" for key, value in d.items() if key != "message_id")
    return f"{step}: {event}" + (f" ({extra})" if extra else "")


def run_in_words(run: Run) -> dict:
    """The run (read with selectors.runs_with_history) as an agent can relay it: its status, one
    sentence per timeline entry, and each message's current status."""
    step_types = dict(run.workflow.steps.values_list("ref", "type"))
    for message in run.messages.all():
        step_types.setdefault(message.step_ref, message.channel)
    timeline = [{"at": entry.created_at.isoformat(), "step": entry.step_ref,
                 "event": entry.event, "text": entry_words(entry, step_types)}
                for entry in run.step_logs.all()]
    messages = []
    for message in run.messages.all():
        label = channel_spec(message.channel).label if channel_spec(message.channel) else ""
        text = f"{label or message.channel} message"
        if message.to:
            text += f" to {message.to}"
        text += f": {message.status}"
        if message.read_at:
            text += ", read"
        elif message.seen_at:
            text += ", seen"
        messages.append({"id": str(message.id), "step": message.step_ref,
                         "channel": message.channel, "status": message.status, "text": text})
    status = {
        Run.Status.RUNNING: "running",
        Run.Status.WAITING: f"waiting until {run.wake_at.isoformat()}" if run.wake_at
        else "waiting",
        Run.Status.COMPLETED: "completed",
        Run.Status.CANCELLED: "cancelled",
        Run.Status.FAILED: "failed",
    }.get(run.status, run.status)
    return {
        "id": str(run.id), "workflow": run.workflow.key,
        "recipient": run.recipient.external_id,
        "tenant": run.tenant.key if run.tenant_id else None,
        "status": run.status,
        "summary": f"{run.workflow.key} for {run.recipient.external_id}: {status}",
        "timeline": timeline, "messages": messages,
    }
