"""The workflow engine: walks a run's steps from its cursor until it waits or ends.

Deciding what a step does is pure (conditions, delay arithmetic, rendering); the loop writes the
decision (StepLog, Message, cursor) in the caller's transaction while the run's row is locked, so a
task that runs twice finds the cursor already moved and the (run, step) Message already there.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from preferences.selectors import channel_step_verdict

from . import conditions
from .channels import CHANNEL_KEYS, channel_spec
from .models import ChannelData, Layout, Message, Run, Step, StepLog, StepType, Template
from .providers.phone import is_e164
from .providers.sms_segments import sms_size
from .queue import enqueue, enqueue_at
from .ratelimit import rate_limit_hit
from .rendering import RenderOptions, TemplateError, render_email, render_fields
from .rendering.variables import run_variables

# Step types the engine runs today (every channel, and delays); the others are refused when a
# workflow is saved.
SUPPORTED_STEP_TYPES = frozenset({*CHANNEL_KEYS, StepType.DELAY})
DURATION_UNITS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}

NEXT = "next"
WAIT = "wait"


class StepConfigError(ValueError):
    """A step's `config` is not valid for its type; the message says why."""


def validate_delay_config(config: Mapping) -> None:
    """Raise StepConfigError unless `config` is a duration or an `until` path."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    keys = set(config)
    if "until" in keys:
        if keys != {"until"}:
            raise StepConfigError('"until" cannot be combined with a duration.')
        path = config["until"]
        if not isinstance(path, str) or path.split(".", 1)[0] not in conditions.ROOTS:
            raise StepConfigError(
                f'"until" must be a path starting with one of: {", ".join(conditions.ROOTS)}.'
            )
        return
    unknown = keys - set(DURATION_UNITS)
    if unknown or not keys:
        raise StepConfigError(
            'Expected {"seconds"|"minutes"|"hours"|"days": number} or {"until": "data.<path>"}.'
        )
    for unit in keys:
        value = config[unit]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise StepConfigError(f'"{unit}" must be a number ≥ 0.')


def validate_channel_config(step_type: str, config: Mapping) -> None:
    """Raise StepConfigError for a webhook step without an http(s) `url`, or a chat step whose
    `channel` is not a string."""
    if not isinstance(config, Mapping):
        raise StepConfigError("Expected an object.")
    if step_type == StepType.WEBHOOK:
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise StepConfigError('A webhook step needs {"url": "https://…"}.')
    if step_type == StepType.CHAT and not isinstance(config.get("channel", ""), str):
        raise StepConfigError('"channel" must be a string, e.g. "C024BE91L" or "#ops".')
    if step_type == "whatsapp":
        for name, example in (("template", "order_update"), ("language", "en_US")):
            if not isinstance(config.get(name, ""), str):
                raise StepConfigError(f'"{name}" must be a string, e.g. "{example}".')


def delay_until(config: Mapping, variables: Mapping, now: datetime) -> tuple[datetime | None, str]:
    """When a delay step ends; (None, reason) when its timestamp is missing or unreadable."""
    if "until" in config:
        raw = conditions.resolve(config["until"], variables)
        try:
            moment = parse_datetime(raw) if isinstance(raw, str) else None
        except ValueError:  # well formed but impossible, e.g. month 13
            moment = None
        if moment is None:
            raw = None if raw is conditions.MISSING else raw
            return None, f"{config['until']} is not an ISO 8601 timestamp: {raw!r}"[:300]
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, UTC)
        return moment.astimezone(UTC), ""
    seconds = sum(float(config[unit]) * factor for unit, factor in DURATION_UNITS.items()
                  if unit in config)
    return now + timedelta(seconds=seconds), ""


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


def select_template(step: Step, locale: str, default_locale: str) -> Template | None:
    """The step's published template for `locale`: pt-BR → pt → the workflow's default → any."""
    templates = {t.locale.lower().replace("_", "-"): t for t in step.templates.all()
                 if t.published_version_id}
    for candidate in locale_candidates(locale, default_locale):
        if candidate in templates:
            return templates[candidate]
    return next(iter(templates.values()), None)


@dataclass
class Pass:
    """One advance of a run: its template variables and clock, the steps that already have a
    message (a re-run skips them), and the timeline entries, written together at the end."""

    run: Run
    now: datetime
    variables: dict = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    timeline: list[StepLog] = field(default_factory=list)
    preferences: dict = field(default_factory=dict)  # rows the preference gate read, per pass
    walked: frozenset[str] = frozenset()  # refs walked before the run last waited: passed over

    def log(self, step_ref: str, event: str, **detail) -> None:
        self.timeline.append(StepLog(run=self.run, step_ref=step_ref, event=event, detail=detail))


def advance(run: Run, *, now: datetime) -> None:
    """Walk `run` from its cursor. The caller holds the run's row lock in a transaction."""
    if run.status not in (Run.Status.RUNNING, Run.Status.WAITING):
        return
    if run.status == Run.Status.WAITING and run.wake_at and run.wake_at > now:
        return
    steps = list(run.workflow.steps.prefetch_related("templates__published_version"))
    p = Pass(run=run, now=now, variables=run_variables(run),
             done=set(run.messages.values_list("step_ref", flat=True)))
    _find_resume_point(p, steps)
    run.step_refs = []
    while run.cursor < len(steps):
        step = steps[run.cursor]
        if step.ref in p.walked:  # walked before an edit moved it after the resume point
            run.cursor += 1
            continue
        if _run_step(p, step) == WAIT:
            run.status = Run.Status.WAITING
            run.step_refs = [s.ref for s in steps]
            break
        run.cursor += 1
    else:
        run.status = Run.Status.COMPLETED
        run.wake_at = None
        p.log("", StepLog.Event.COMPLETED)
    StepLog.objects.bulk_create(p.timeline)
    run.save(update_fields=["status", "cursor", "wake_at", "step_refs", "state", "updated_at"])


STEP_REMOVED = "the step was removed from the workflow while the run waited on it"
STEP_MOVED_BEHIND = ("the workflow was edited while the run waited: the step moved before the "
                     "step the run waited at")


def _find_resume_point(p: Pass, steps: list[Step]) -> None:
    """Put the cursor where a run that waited goes on, however the workflow was edited meanwhile.

    `run.step_refs` holds the refs as they were when the run began waiting and `run.cursor` the
    one it waited at: the refs before it were walked, the refs after it were still ahead. The
    run resumes at the step it waited at, wherever that step now stands. If it was removed, a
    `skipped` entry says so and the run resumes at the earliest (in the current order) of the
    steps it still had ahead; if none of those is left either, after the last step it had
    walked that is still there (so steps added at the end run), or from the start when none is.
    Steps it had walked are passed over wherever they now stand, and a step it had ahead that
    an edit moved before the step it waited at gets a `skipped` entry: no step it had ahead is
    passed without one. Steps added before the resume point are not walked by this run.
    """
    run = p.run
    plan = list(run.step_refs or [])
    legacy = (run.state or {}).get("waiting_at")  # runs that began waiting before step_refs
    if legacy is not None:
        run.state = {k: v for k, v in run.state.items() if k != "waiting_at"}
        waiting_at, ahead, walked = legacy, [], frozenset()
    elif plan and run.cursor < len(plan):
        waiting_at = plan[run.cursor]
        ahead, walked = plan[run.cursor + 1:], frozenset(plan[:run.cursor])
    else:
        return
    p.walked = walked
    position = {step.ref: index for index, step in enumerate(steps)}
    here = position.get(waiting_at)
    # A run waits at a delay step, or at a channel step during the person's quiet hours.
    if here is not None and (steps[here].type == StepType.DELAY or steps[here].is_channel):
        run.cursor = here
        for ref in ahead:
            if position.get(ref, here) < here:
                p.log(ref, StepLog.Event.SKIPPED, reason=STEP_MOVED_BEHIND)
        return
    run.wake_at = None
    p.log(waiting_at, StepLog.Event.SKIPPED, reason=STEP_REMOVED)
    if legacy is not None:
        return  # nothing is known of the steps around it: go on from where it stood
    still_ahead = [position[ref] for ref in ahead if ref in position]
    still_walked = [position[ref] for ref in walked if ref in position]
    if still_ahead:
        run.cursor = min(still_ahead)
    else:
        run.cursor = max(still_walked) + 1 if still_walked else 0


def _run_step(p: Pass, step: Step) -> str:
    resuming = p.run.wake_at is not None  # only the step the run waited at has a wake-up time
    # A delay's conditions were asked before it started waiting; a channel step back from quiet
    # hours asks again (its conditions or the data may have changed while it waited).
    ask = not (resuming and step.type == StepType.DELAY)
    if ask and step.conditions and not conditions.evaluate(step.conditions, p.variables):
        p.run.wake_at = None
        p.log(step.ref, StepLog.Event.CONDITION_FALSE,
              conditions=conditions.explain(step.conditions, p.variables))
        return NEXT
    if step.type == StepType.DELAY:
        return _delay(p, step)
    if step.is_channel and step.ref not in p.done:
        gate = _preferences_gate(p, step)
        if gate is not None:
            return gate
    if step.is_channel:
        if step.ref not in p.done:  # a re-run: this step's message exists already
            # Email renders into a layout, in-app writes the inbox; the others go to providers.
            {StepType.EMAIL: _email, StepType.IN_APP: _in_app}.get(step.type, _channel)(p, step)
        return NEXT
    p.log(step.ref, StepLog.Event.SKIPPED, reason=f"step type {step.type!r} is not supported")
    return NEXT


def _preferences_gate(p: Pass, step: Step) -> str | None:
    """Preferences and quiet hours, asked by every channel step before its handler runs:
    NEXT when the person opted out (a `suppressed` Message and an `opted_out` log naming the
    rule), WAIT until their quiet hours end, None to go on and send."""
    run = p.run
    resuming = run.wake_at is not None
    if resuming:  # back after quiet hours: ask again (they may have opted out), but send now
        p.log(step.ref, StepLog.Event.RESUMED, waited_until=run.wake_at.isoformat())
        run.wake_at = None
    verdict = channel_step_verdict(recipient=run.recipient, workflow=run.workflow,
                                   tenant=run.tenant, channel=step.type, now=p.now,
                                   check_quiet_hours=not resuming, memo=p.preferences)
    if verdict.suppressed:
        message = _new_message(p, step, status=Message.Status.SUPPRESSED,
                               error=f"Opted out: {verdict.decision.rule}")
        p.log(step.ref, StepLog.Event.OPTED_OUT, rule=verdict.decision.rule,
              channel=step.type, message_id=str(message.id))
        return NEXT
    if verdict.wake_at is not None:
        run.wake_at = verdict.wake_at
        window = verdict.quiet_hours
        p.log(step.ref, StepLog.Event.QUIET_HOURS, until=verdict.wake_at.isoformat(),
              window=f"{window.start:%H:%M}-{window.end:%H:%M}", rule=window.source,
              timezone=run.recipient.timezone or "UTC")
        enqueue_at("notifications.tasks.advance_run", str(run.id), at=verdict.wake_at,
                   name=f"run:{run.id}@{int(verdict.wake_at.timestamp())}")
        return WAIT
    return None


def _delay(p: Pass, step: Step) -> str:
    run, now = p.run, p.now
    if run.wake_at is not None:
        if run.wake_at > now:
            return WAIT
        p.log(step.ref, StepLog.Event.RESUMED, waited_until=run.wake_at.isoformat())
        run.wake_at = None
        return NEXT
    wake_at, problem = delay_until(step.config, p.variables, now)
    if wake_at is None:
        p.log(step.ref, StepLog.Event.SKIPPED, reason=problem)
        return NEXT
    if wake_at <= now:
        p.log(step.ref, StepLog.Event.SKIPPED, reason="the delay has already passed",
              until=wake_at.isoformat())
        return NEXT
    run.wake_at = wake_at
    p.log(step.ref, StepLog.Event.DELAYED, until=wake_at.isoformat())
    enqueue_at("notifications.tasks.advance_run", str(run.id), at=wake_at,
               name=f"run:{run.id}@{int(wake_at.timestamp())}")
    return WAIT


def _new_message(p: Pass, step: Step, **fields) -> Message:
    """The (run, step) Message. Under the run's lock, after `done` was read, a plain INSERT;
    the unique (run, step_ref) constraint is the last guard against a second one."""
    run = p.run
    p.done.add(step.ref)
    return Message.objects.create(run=run, step=step, step_ref=step.ref, recipient=run.recipient,
                                  workflow=run.workflow, tenant=run.tenant, channel=step.type,
                                  **fields)


def _render(p: Pass, step: Step) -> tuple[Template | None, dict | None, str]:
    run = p.run
    template = select_template(step, run.recipient.locale, run.workflow.default_locale)
    if template is None:
        return None, None, "no published template for this step"
    options = RenderOptions(locale=template.locale)
    try:
        if step.type == StepType.EMAIL:
            email = render_email(template.fields, p.variables, _layout_for(run), options)
            content = {"subject": email.subject, "html": email.html, "text": email.text}
        else:
            content = render_fields(step.type, template.fields, p.variables, options)
    except TemplateError as exc:
        return template, None, f"template error in {exc.field or 'template'}: {exc.message}"
    return template, content, ""


def _layout_for(run: Run) -> Layout | None:
    return layout_for_tenant(run.tenant_id)


def layout_for_tenant(tenant_id: int | None) -> Layout | None:
    """The tenant's layout, else the default one (no tenant), in one query."""
    layouts = Layout.objects.filter(Q(tenant__isnull=True) | Q(tenant_id=tenant_id)
                                    if tenant_id else Q(tenant__isnull=True))
    return layouts.order_by(F("tenant_id").asc(nulls_last=True), "name").first()


def _email(p: Pass, step: Step) -> None:
    address = p.run.recipient.email
    if not address:
        _new_message(p, step, status=Message.Status.UNDELIVERABLE,
                     error="The recipient has no email address.")
        p.log(step.ref, StepLog.Event.SKIPPED, reason="the recipient has no email address")
        return
    template, content, problem = _render(p, step)
    if content is None:
        message = _new_message(p, step, status=Message.Status.FAILED, to=address, error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem)
        return
    message = _new_message(p, step, status=Message.Status.QUEUED, to=address, content=content,
                           template_version=template.published_version)
    p.log(step.ref, StepLog.Event.QUEUED, message_id=str(message.id), to=address,
          template_version=template.published_version.number, locale=template.locale)
    enqueue("notifications.tasks.deliver_message", str(message.id))


def _in_app(p: Pass, step: Step) -> None:
    from inbox.services import inbox_item_create

    template, content, problem = _render(p, step)
    if content is None:
        message = _new_message(p, step, status=Message.Status.FAILED, error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem)
        return
    message = _new_message(p, step, status=Message.Status.SENT, content=content,
                           template_version=template.published_version, provider="inbox",
                           sent_at=timezone.now(), to=p.run.recipient.external_id)
    item = inbox_item_create(message=message, content=content)
    p.log(step.ref, StepLog.Event.SENT, message_id=str(message.id), inbox_item_id=item.pk,
          template_version=template.published_version.number, locale=template.locale)


def channel_address(step: Step, run: Run) -> tuple[str, str]:
    """(address, "") for a provider channel step, or ("", why there is none).

    sms: the recipient's phone (E.164); push: the recipient has push ChannelData (the tokens are
    read when the message is sent); chat: the recipient's chat ChannelData (`webhook_url` or
    `channel`), else the step's `channel`; webhook: the step's `url`.
    """
    recipient = run.recipient
    source = channel_spec(step.type).address
    if source == "phone":
        if not recipient.phone:
            return "", "the recipient has no phone number"
        if not is_e164(recipient.phone):
            return "", f"the recipient's phone {recipient.phone!r} is not an E.164 number"
        return recipient.phone, ""
    if source == "step":
        url = (step.config or {}).get("url")
        return (url, "") if isinstance(url, str) and url else ("", "the webhook step has no url")
    rows = [row for row in ChannelData.objects.filter(recipient=recipient, channel=step.type)
            if any(value for key, value in (row.data or {}).items() if key != "inactive")]
    if step.type == StepType.PUSH:
        if not rows:
            return "", "the recipient has no push channel data (device tokens)"
        return ",".join(sorted(row.provider_kind or "push" for row in rows)), ""
    for row in rows:
        address = row.data.get("webhook_url") or row.data.get("channel")
        if address:
            return str(address), ""
    channel = (step.config or {}).get("channel")
    if isinstance(channel, str) and channel:
        return channel, ""
    return "", "the recipient has no chat channel data and the step names no channel"


def _sms_rate_limited(p: Pass, step: Step, phone: str) -> bool:
    """Count this SMS against its phone number's limit (a paid channel: one caller must not run
    up the bill); beyond it, a `suppressed` message and a `rate_limited` log say why. Counted in
    the run's transaction, so a pass that rolls back takes its count back with it."""
    conf = settings.CLARION
    limit, window = conf["SMS_RATE_LIMIT_PER_RECIPIENT"], conf["SMS_RATE_LIMIT_WINDOW_SECONDS"]
    verdict = rate_limit_hit(key=f"sms:{phone}", limit=limit, window_seconds=window, now=p.now)
    if verdict.allowed:
        return False
    reason = (f"Rate limited: more than {limit} SMS to {phone} within {window} seconds "
              f"(CLARION_SMS_RATE_LIMIT_PER_RECIPIENT).")
    message = _new_message(p, step, status=Message.Status.SUPPRESSED, to=phone[:320],
                           error=reason)
    p.log(step.ref, StepLog.Event.RATE_LIMITED, message_id=str(message.id), reason=reason,
          limit=limit, window_seconds=window)
    return True


def _channel(p: Pass, step: Step) -> None:
    """A step delivered through the channel's providers: resolve the address, render, queue."""
    address, problem = channel_address(step, p.run)
    if not address:
        _new_message(p, step, status=Message.Status.UNDELIVERABLE, error=problem[:1].upper()
                     + problem[1:] + ".")
        p.log(step.ref, StepLog.Event.SKIPPED, reason=problem)
        return
    template, content, problem = _render(p, step)
    if content is None:
        message = _new_message(p, step, status=Message.Status.FAILED, to=address[:320],
                               error=problem)
        p.log(step.ref, StepLog.Event.FAILED, message_id=str(message.id), reason=problem)
        return
    if step.type == StepType.SMS and _sms_rate_limited(p, step, address):
        return
    message = _new_message(p, step, status=Message.Status.QUEUED, to=address[:320],
                           content=content, template_version=template.published_version)
    detail = {"message_id": str(message.id), "to": address[:320],
              "template_version": template.published_version.number, "locale": template.locale}
    if step.type == StepType.SMS:
        segments = sms_size(content.get("text", ""))
        detail.update(segments=segments.segments, encoding=segments.encoding)
    p.log(step.ref, StepLog.Event.QUEUED, **detail)
    enqueue("notifications.tasks.deliver_message", str(message.id))
