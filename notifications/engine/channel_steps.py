"""Channel steps: the preference gate and quiet hours, then one handler per kind of channel
(email renders into a layout, in-app writes the inbox, the others go to providers)."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from clarion.db import instance_maker
from preferences.selectors import channel_step_verdict

from ..channels import channel_spec
from ..models import ChannelData, Layout, Message, Run, Step, StepLog, StepType, Template
from ..providers.phone import is_e164
from ..providers.push import has_devices
from ..providers.sms_segments import sms_size
from ..ratelimit import rate_limit_hit
from ..rendering import RenderOptions, TemplateError, fields_read, render_email, render_fields
from ..rendering.locale_filters import locale_and_zone
from ..rendering.variables import engagement_at
from .context import NEXT, WAIT, Pass
from .windows import next_open, parse_window


def locale_candidates(locale: str, default_locale: str) -> list[str]:
    """zh-Hant-TW → zh-hant-tw, zh-hant, zh, then the workflow's default (and its language)."""
    wanted: list[str] = []
    for name in (locale, default_locale):
        parts = (name or "").strip().lower().replace("_", "-").split("-")
        for end in range(len(parts), 0, -1):
            candidate = "-".join(parts[:end])
            if candidate and candidate not in wanted:
                wanted.append(candidate)
    return wanted


def select_template(step: Step, locale: str, default_locale: str,
                    channel: str = "") -> Template | None:
    """The step's published template for `locale`: pt-BR → pt → the workflow's default → any.
    `channel`: of a route step, the channel's templates; blank for a channel step's own."""
    templates = {t.locale.lower().replace("_", "-"): t for t in step.templates.all()
                 if t.published_version_id and t.channel == channel}
    for candidate in locale_candidates(locale, default_locale):
        if candidate in templates:
            return templates[candidate]
    return next(iter(templates.values()), None)



def preferences_gate(p: Pass, step: Step) -> str | None:
    """Preferences, the step's send window and quiet hours, asked by every channel step before
    its handler runs: NEXT when the person opted out (a `suppressed` Message and an `opted_out`
    log naming the rule), WAIT until the send window opens or their quiet hours end, None to go
    on and send. Back from a wait, all are asked again, except the quiet hours the run has just
    waited out."""
    run = p.run
    state = dict(run.state or {})
    # Runs that began waiting before send windows existed waited for quiet hours.
    waited_for = state.pop("waiting_for", "quiet_hours") if run.wake_at is not None else ""
    if waited_for:
        p.log(step.ref, StepLog.Event.RESUMED, waited_until=run.wake_at.isoformat(),
              waited_for=waited_for)
        run.wake_at = None
        run.state = state
    verdict = channel_step_verdict(recipient=run.recipient, workflow=run.workflow,
                                   tenant=run.tenant, channel=step.type, now=p.now,
                                   check_quiet_hours=waited_for != "quiet_hours",
                                   urgent=step.urgent, memo=p.preferences)
    if verdict.suppressed:
        message = _new_message(p, step, step.type, status=Message.Status.SUPPRESSED,
                               error=f"Opted out: {verdict.decision.rule}")
        p.log(step.ref, StepLog.Event.OPTED_OUT, rule=verdict.decision.rule,
              channel=step.type, message_id=str(message.id))
        return NEXT
    if step.send_window:
        window = parse_window(step.send_window)
        zone = window.zone(run.recipient.timezone)
        if _first_sendable(p, step, window, zone, verdict) is None:
            reason = (f"the send window never falls outside the person's quiet hours in the "
                      f"next {SENDABLE_HORIZON_DAYS} days")
            message = _new_message(p, step, step.type, status=Message.Status.SUPPRESSED,
                                   error=f"Not sent: {reason}")
            p.log(step.ref, StepLog.Event.SKIPPED, reason=reason, window=dict(step.send_window),
                  quiet_hours=_quiet_hours_text(verdict), message_id=str(message.id))
            return NEXT
        opens = next_open(window, p.now, zone)
        if opens is not None:
            p.log(step.ref, StepLog.Event.SEND_WINDOW, until=opens.isoformat(),
                  window=dict(step.send_window), timezone=str(zone.key))
            return _wait(p, opens, "send_window")
    if verdict.wake_at is not None:
        window = verdict.quiet_hours
        p.log(step.ref, StepLog.Event.QUIET_HOURS, until=verdict.wake_at.isoformat(),
              window=f"{window.start:%H:%M}-{window.end:%H:%M}", rule=window.source,
              timezone=run.recipient.timezone or "UTC")
        return _wait(p, verdict.wake_at, "quiet_hours")
    return None


# How far ahead a step with a send window looks for a time that is also outside the person's
# quiet hours before it gives up (a window inside the quiet hours every day would wait forever).
SENDABLE_HORIZON_DAYS = 15


def _first_sendable(p: Pass, step: Step, window, zone, verdict) -> datetime | None:
    """The first instant from `p.now` (UTC) inside the step's send window and outside the
    person's quiet hours (`verdict` holds those at `p.now`), hopping from window openings to
    quiet-hours ends; None when there is none within SENDABLE_HORIZON_DAYS."""
    run, at = p.run, p.now
    horizon = p.now + timedelta(days=SENDABLE_HORIZON_DAYS)
    while at <= horizon:
        opens = next_open(window, at, zone)
        if opens is not None:
            at = opens
            continue
        quiet_until = verdict.wake_at if at == p.now else channel_step_verdict(
            recipient=run.recipient, workflow=run.workflow, tenant=run.tenant,
            channel=step.type, now=at, urgent=step.urgent, memo=p.preferences).wake_at
        if quiet_until is None:
            return at
        at = quiet_until
    return None


def _quiet_hours_text(verdict) -> str:
    window = verdict.quiet_hours
    return f"{window.start:%H:%M}-{window.end:%H:%M}" if window else ""


def _wait(p: Pass, until, reason: str) -> str:
    """Park the run at its channel step until `until` (UTC), remembering what it waits for."""
    run = p.run
    run.wake_at = until
    run.state = {**(run.state or {}), "waiting_for": reason}
    p.writes.wake("notifications.tasks.advance_run", str(run.id), at=until,
                  name=f"run:{run.id}@{int(until.timestamp())}")
    return WAIT


def _new_message(p: Pass, step: Step, channel: str, **fields) -> Message:
    """The (run, step, channel) Message, written with the pass's other rows (writes.py). Under
    the run's lock, after `done` was read; the unique (run, step_ref, channel) constraint is the
    last guard against a second (the INSERT skips it, and the stored one stands)."""
    run = p.run
    p.done.add(step.ref)
    now = timezone.now()
    related = {"run": run, "step": step, "recipient": run.recipient, "workflow": run.workflow,
               "tenant": run.tenant}
    if "template_version" in fields:
        related["template_version"] = fields.pop("template_version")
    message = instance_maker(Message)(related, step_ref=step.ref, channel=channel,
                                      created_at=now, updated_at=now, **fields)
    p.writes.message(message)
    p.messages.append(message)
    return message


def _render(p: Pass, step: Step, channel: str) -> tuple[Template | None, dict | None, str]:
    run = p.run
    # The same few (step, locale) pairs over and over in a batch: chosen once each.
    wanted = (step.pk, run.recipient.locale, run.workflow.default_locale,
              "" if channel == step.type else channel)
    key = ("template", *wanted)
    if key not in p.shared:
        p.shared[key] = select_template(step, *wanted[1:])
    template = p.shared[key]
    if template is None:
        return None, None, ("no published template for this step" if channel == step.type
                            else f"no published {channel} template for this step")
    options = RenderOptions(locale=template.locale)
    try:
        if channel == StepType.EMAIL:
            email = render_email(template.fields, p.variables, _layout_for(p), options)
            content = {"subject": email.subject, "html": email.html, "text": email.text}
        else:
            content = _render_fields(p, template, channel, options)
    except TemplateError as exc:
        return template, None, f"template error in {exc.field or 'template'}: {exc.message}"
    return template, content, ""


# Variables whose values are the same for every run of one trigger: its data and actor, its
# tenant, its workflow.
TRIGGER_VARIABLES = frozenset({"data", "actor", "tenant", "workflow"})


def _render_fields(p: Pass, template: Template, channel: str, options: RenderOptions) -> dict:
    """render_fields of the template for the pass's run. A template that reads only
    TRIGGER_VARIABLES (rendering.fields_read: not `recipient`, `steps`, the links, nor the
    clock) is rendered once per trigger, locale and time zone in a batch (a fan-out chunk: once
    for its 500 runs, where the recipients share a locale) and each run gets a copy of that
    text; any other is rendered for each run. A render that fails is not kept: each run
    renders, and fails, on its own."""
    fields = template.fields
    read = fields_read(channel, fields)
    if read is None or not read <= TRIGGER_VARIABLES:
        return render_fields(channel, fields, p.variables, options)
    run = p.run
    key = ("rendered", template.pk, template.published_version_id, channel, run.trigger_id,
           run.tenant_id, run.workflow_id, *locale_and_zone(p.variables, options))
    if key not in p.shared:
        p.shared[key] = render_fields(channel, fields, p.variables, options)
    return dict(p.shared[key])


def _layout_for(p: Pass) -> Layout | None:
    """The run's tenant's layout, read once per batch (or pass)."""
    key = ("layout", p.run.tenant_id)
    if key not in p.shared:
        p.shared[key] = layout_for_tenant(p.run.tenant_id)
    return p.shared[key]


def layout_for_tenant(tenant_id: int | None) -> Layout | None:
    """The tenant's layout, else the default one (no tenant), in one query."""
    layouts = Layout.objects.filter(Q(tenant__isnull=True) | Q(tenant_id=tenant_id)
                                    if tenant_id else Q(tenant__isnull=True))
    return layouts.order_by(F("tenant_id").asc(nulls_last=True), "name").first()


def _email(p: Pass, step: Step, channel: str, detail: dict) -> Message:
    address = p.run.recipient.email
    if not address:
        message = _new_message(p, step, channel, status=Message.Status.UNDELIVERABLE,
                               error="The recipient has no email address.")
        p.log(step.ref, StepLog.Event.SKIPPED, reason="the recipient has no email address",
              **detail)
        return message
    template, content, problem = _render(p, step, channel)
    if content is None:
        message = _new_message(p, step, channel, status=Message.Status.FAILED, to=address,
                               error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem,
              **detail)
        return message
    message = _new_message(p, step, channel, status=Message.Status.QUEUED, to=address,
                           content=content, template_version=template.published_version)
    p.log(step.ref, StepLog.Event.QUEUED, message_id=str(message.id), to=address,
          template_version=template.published_version.number, locale=template.locale, **detail)
    p.writes.deliver(message)
    return message


def _in_app(p: Pass, step: Step, channel: str, detail: dict) -> Message:
    """Render the in-app content; the Message (sent) and its InboxItem are written with the
    pass's other rows, and the `sent` entry gets the item's id then (writes.py)."""
    template, content, problem = _render(p, step, channel)
    if content is None:
        message = _new_message(p, step, channel, status=Message.Status.FAILED, error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem,
              **detail)
        return message
    message = _new_message(p, step, channel, status=Message.Status.SENT, content=content,
                           template_version=template.published_version, provider="inbox",
                           sent_at=timezone.now(), to=p.run.recipient.external_id)
    entry = p.log(step.ref, StepLog.Event.SENT, message_id=str(message.id), inbox_item_id=None,
                  template_version=template.published_version.number, locale=template.locale,
                  **detail)
    p.writes.inbox_item(message, content, entry)
    return message


def channel_address(step: Step, run: Run, channel: str | None = None) -> tuple[str, str]:
    """(address, "") for a provider channel step, or ("", why there is none).

    sms: the recipient's phone (E.164); push: the kinds of the recipient's push ChannelData rows
    that list a device, e.g. "apns,webpush" (every one gets the message; the devices are read
    when it is sent, delivery/fanout.py); chat: the recipient's chat ChannelData (`webhook_url` or
    `channel`), else the step's `channel`; webhook: the step's `url`. `channel`: for a route
    step, the channel asked about (default: the step's own type); email: the recipient's email,
    in_app: the recipient's own feed.
    """
    recipient = run.recipient
    channel = channel or step.type
    source = channel_spec(channel).address
    if source == "inbox":
        return recipient.external_id, ""
    if source == "email":
        return (recipient.email, "") if recipient.email else \
            ("", "the recipient has no email address")
    if source == "phone":
        if not recipient.phone:
            return "", "the recipient has no phone number"
        if not is_e164(recipient.phone):
            return "", f"the recipient's phone {recipient.phone!r} is not an E.164 number"
        return recipient.phone, ""
    if source == "step":
        url = (step.config or {}).get("url")
        return (url, "") if isinstance(url, str) and url else ("", "the webhook step has no url")
    rows = [row for row in ChannelData.objects.filter(recipient=recipient, channel=channel)
            if has_devices(row.data)]
    if channel == StepType.PUSH:
        if not rows:
            return "", "the recipient has no push channel data (device tokens)"
        return ",".join(sorted(row.provider_kind or "push" for row in rows)), ""
    for row in rows:
        address = row.data.get("webhook_url") or row.data.get("channel")
        if address:
            return str(address), ""
    if channel == step.type:
        configured = (step.config or {}).get("channel")
        if isinstance(configured, str) and configured:
            return configured, ""
        return "", "the recipient has no chat channel data and the step names no channel"
    return "", "the recipient has no chat channel data"


def _sms_rate_limited(p: Pass, step: Step, phone: str, detail: dict) -> Message | None:
    """Count this SMS against its phone number's limit (a paid channel: one caller must not run
    up the bill); beyond it, a `suppressed` message and a `rate_limited` log say why. Counted in
    the run's transaction, so a pass that rolls back takes its count back with it."""
    conf = settings.CLARION
    limit, window = conf["SMS_RATE_LIMIT_PER_RECIPIENT"], conf["SMS_RATE_LIMIT_WINDOW_SECONDS"]
    verdict = rate_limit_hit(key=f"sms:{phone}", limit=limit, window_seconds=window, now=p.now)
    if verdict.allowed:
        return None
    reason = (f"Rate limited: more than {limit} SMS to {phone} within {window} seconds "
              f"(CLARION_SMS_RATE_LIMIT_PER_RECIPIENT).")
    message = _new_message(p, step, StepType.SMS, status=Message.Status.SUPPRESSED,
                           to=phone[:320], error=reason)
    p.log(step.ref, StepLog.Event.RATE_LIMITED, message_id=str(message.id), reason=reason,
          limit=limit, window_seconds=window, **detail)
    return message


def _channel(p: Pass, step: Step, channel: str, detail: dict) -> Message:
    """A step delivered through the channel's providers: resolve the address, render, queue."""
    address, problem = channel_address(step, p.run, channel)
    if not address:
        message = _new_message(p, step, channel, status=Message.Status.UNDELIVERABLE,
                               error=problem[:1].upper() + problem[1:] + ".")
        p.log(step.ref, StepLog.Event.SKIPPED, reason=problem, **detail)
        return message
    template, content, problem = _render(p, step, channel)
    if content is None:
        message = _new_message(p, step, channel, status=Message.Status.FAILED,
                               to=address[:320], error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem,
              **detail)
        return message
    if channel == StepType.SMS:
        limited = _sms_rate_limited(p, step, address, detail)
        if limited is not None:
            return limited
    message = _new_message(p, step, channel, status=Message.Status.QUEUED, to=address[:320],
                           content=content, template_version=template.published_version)
    entry = {"message_id": str(message.id), "to": address[:320],
             "template_version": template.published_version.number, "locale": template.locale}
    if channel == StepType.SMS:
        segments = sms_size(content.get("text", ""))
        entry.update(segments=segments.segments, encoding=segments.encoding)
    p.log(step.ref, StepLog.Event.QUEUED, **entry, **detail)
    p.writes.deliver(message)
    return message


def send(p: Pass, step: Step, channel: str | None = None) -> Message:
    """Send channel step `step` of the pass's run (a route step: on `channel`): its Message,
    its StepLog (naming the channel, for a route), its delivery. Returns the Message, whose
    status says whether it went (queued, sent) or not (undeliverable, failed, suppressed)."""
    channel = channel or step.type
    detail = {} if channel == step.type else {"channel": channel}
    handler = {StepType.EMAIL: _email, StepType.IN_APP: _in_app}.get(channel, _channel)
    return handler(p, step, channel, detail)


def unless_reached(p: Pass, step: Step) -> dict | None:
    """What `step.unless` checked, when the earlier step's message has reached the named state
    (the step is then skipped); None when the step goes on (no `unless`, no such message, or
    the state not reached yet)."""
    unless = step.unless
    if not unless:
        return None
    p.flush()
    message = p.run.messages.filter(step_ref=unless["step"]).first()
    reached = engagement_at(message, unless["is"]) if message is not None else None
    if reached is None:
        return None
    return {"unless": dict(unless), "message_id": str(message.id),
            "reached_at": reached.isoformat()}
