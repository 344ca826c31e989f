"""The route step: cheapest channel first, the next one only while none has succeeded.

`{"channels": ["in_app", "push", "email", "sms"], "ttl": {"hours": 1}, "success": "read",
"always": ["in_app"]}` sends the first channel it can at once, waits ttl ÷ (channels − 1), and
sends the next one only if no message it sent has reached `success` (engagement_at, as `unless`
reads it); `always` channels go at once. A channel the person opted out of, or has no address
for, is passed over with the reason, and the next one is tried at once. Quiet hours hold the
channels that honour them (the run waits, never drops), the step's send window holds them all.

What the route has done is the run's `state["routes"][ref]`: `next` (the position in `channels`
of the next channel to try), `due_at` (when), `passed` (channels passed over), `held` (always
channels waiting for quiet hours, until when). Each channel it sends is a Message keyed by
(run, step, channel), written before its delivery is queued: a pass that runs twice finds the
state moved on, the constraint refuses a second Message.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import F, Q
from django.utils.dateparse import parse_datetime

from preferences.selectors import channel_step_verdict

from ..models import ChannelData, Message, ProviderConfig, Step, StepLog, StepType
from ..providers.base import channel_data_row
from ..providers.cost import estimate_cost
from ..providers.push import device_sets
from . import channel_steps
from .context import NEXT, WAIT, Pass
from .validation import route_interval_seconds
from .windows import next_open, parse_window

NOT_SENT = (Message.Status.FAILED, Message.Status.UNDELIVERABLE, Message.Status.SUPPRESSED)
PASSED, SENT, HOLD = "passed", "sent", "hold"


def route(p: Pass, step: Step) -> str:
    """Advance route step `step` of the pass's run: NEXT when it is done (a channel reached
    success, or every channel was tried), WAIT until its next channel is due."""
    run, now, config = p.run, p.now, step.config
    routes = dict((run.state or {}).get("routes") or {})
    state = dict(routes.get(step.ref) or {})
    if run.wake_at is not None:
        if run.wake_at > now:
            return WAIT
        p.log(step.ref, StepLog.Event.RESUMED, waited_until=run.wake_at.isoformat())
        run.wake_at = None
    interval = route_interval_seconds(config)
    if not state:
        state = {"next": 0, "due_at": now.isoformat(), "passed": [], "held": {}}
        p.log(step.ref, StepLog.Event.STARTED, channels=list(config["channels"]),
              always=list(config.get("always", [])), success=config["success"],
              interval_seconds=interval)
    p.flush()  # its messages written by an earlier pass of the batch are read back here
    messages = {m.channel: m for m in run.messages.filter(step_ref=step.ref)}
    outcome = _decide(p, step, state, messages, interval)
    routes[step.ref] = state
    run.state = {**(run.state or {}), "routes": routes}
    return outcome


def winner(messages, success: str) -> tuple[Message, datetime] | None:
    """(the message that reached `success` first, when) among a route's `messages`; None when
    none has (yet)."""
    reached = [(at, message) for message in messages
               if (at := channel_steps.engagement_at(message, success)) is not None]
    if not reached:
        return None
    at, message = min(reached, key=lambda pair: pair[0])
    return message, at


def _decide(p: Pass, step: Step, state: dict, messages: dict, interval: float) -> str:
    now, config = p.now, step.config
    chain, always = list(config["channels"]), list(config.get("always", []))
    won = winner(messages.values(), config["success"])
    if won is not None:
        message, at = won
        p.log(step.ref, StepLog.Event.SUCCEEDED, channel=message.channel,
              message_id=str(message.id), state=config["success"], reached_at=at.isoformat(),
              not_sent=[c for c in chain if c not in messages and c not in state["passed"]])
        state.update(next=len(chain), held={}, won=message.channel)
        return NEXT
    held = state["held"]
    waiting_for = [c for c in always if c not in messages and c not in state["passed"]]
    chain_due = state["next"] < len(chain) and _at(state["due_at"]) <= now
    if (waiting_for or chain_due) and step.send_window:
        window = parse_window(step.send_window)
        zone = window.zone(p.run.recipient.timezone)
        opens = next_open(window, now, zone)
        if opens is not None:
            p.log(step.ref, StepLog.Event.SEND_WINDOW, until=opens.isoformat(),
                  window=dict(step.send_window), timezone=str(zone.key))
            return _wait(p, opens)
    for channel in waiting_for:
        if channel in held and _at(held[channel]) > now:
            continue
        outcome, until = _offer(p, step, channel, state, messages)
        if outcome == HOLD:
            held[channel] = until.isoformat()
        else:
            held.pop(channel, None)
    while state["next"] < len(chain) and _at(state["due_at"]) <= now:
        channel = chain[state["next"]]
        if channel in state["passed"]:
            outcome = PASSED
        elif channel in messages:  # an `always` channel that went already: it takes its turn
            outcome = SENT
        elif channel in held and _at(held[channel]) > now:  # its quiet hours: its turn waits
            outcome, state["due_at"] = HOLD, held[channel]
        else:
            outcome, until = _offer(p, step, channel, state, messages)
            if outcome == HOLD:
                held[channel] = state["due_at"] = until.isoformat()
            else:
                held.pop(channel, None)
        if outcome == HOLD:
            break
        state["next"] += 1
        if outcome == SENT:
            state["due_at"] = (now + timedelta(seconds=interval)).isoformat()
    wakes = [_at(until) for until in held.values()]
    if state["next"] < len(chain):
        wakes.append(_at(state["due_at"]))
    if not wakes:
        p.log(step.ref, StepLog.Event.EXHAUSTED, sent=[c for c in chain if c in messages
                                                       and messages[c].status not in NOT_SENT],
              passed_over=list(state["passed"]), state=config["success"])
        return NEXT
    wake_at = min(wakes)
    if (state["next"] < len(chain) and chain[state["next"]] not in held
            and state.get("announced") != state["due_at"]):
        state["announced"] = state["due_at"]  # said once, not again at each wake-up
        p.log(step.ref, StepLog.Event.DELAYED, until=state["due_at"],
              next=chain[state["next"]], unless=config["success"])
    return _wait(p, wake_at)


def _offer(p: Pass, step: Step, channel: str, state: dict,
           messages: dict) -> tuple[str, datetime | None]:
    """Try to send on `channel` now: SENT (its Message written, delivery queued), PASSED (the
    person opted out, has no address, or the send failed at once: the next channel goes), or
    HOLD with the end of the person's quiet hours."""
    run = p.run
    waited = _at(state["held"][channel]) if channel in state["held"] else None
    verdict = channel_step_verdict(recipient=run.recipient, workflow=run.workflow,
                                   tenant=run.tenant, channel=channel, now=p.now,
                                   check_quiet_hours=waited is None or waited > p.now,
                                   urgent=step.urgent, memo=p.preferences)
    if verdict.suppressed:
        p.log(step.ref, StepLog.Event.OPTED_OUT, channel=channel, rule=verdict.decision.rule)
        state["passed"].append(channel)
        return PASSED, None
    address, problem = channel_steps.channel_address(step, run, channel)
    if not address:
        p.log(step.ref, StepLog.Event.SKIPPED, channel=channel, reason=problem)
        state["passed"].append(channel)
        return PASSED, None
    if verdict.wake_at is not None:
        window = verdict.quiet_hours
        p.log(step.ref, StepLog.Event.QUIET_HOURS, channel=channel,
              until=verdict.wake_at.isoformat(),
              window=f"{window.start:%H:%M}-{window.end:%H:%M}", rule=window.source,
              timezone=run.recipient.timezone or "UTC")
        return HOLD, verdict.wake_at
    message = channel_steps.send(p, step, channel)
    messages[channel] = message
    if message.status in NOT_SENT:  # the handler logged why (template error, rate limit…)
        state["passed"].append(channel)
        return PASSED, None
    cost = _estimated_cost(run, channel, message)
    if cost is not None:
        entry = next(log for log in reversed(p.timeline)
                     if log.detail.get("message_id") == str(message.id))
        entry.detail.update(estimated_cost=str(cost[0]), cost_currency=cost[1])
    return SENT, None


def _estimated_cost(run, channel: str, message: Message):
    """(cost, currency) of `message` through the provider delivery tries first (the tenant's
    own, then the global ones, by priority: delivery/pool.py's order); None without a price
    (in-app, or a provider with no cost options). A push goes to every device set of the
    person (providers/push.py): the sum of each set's first provider's price (a set no
    provider serves is not sent), None unless every one has a price, in one currency."""
    tenants = Q(tenant__isnull=True) | Q(tenant_id=run.tenant_id) if run.tenant_id \
        else Q(tenant__isnull=True)
    configs = list(ProviderConfig.objects.filter(tenants, channel=channel, active=True)
                   .order_by(F("tenant_id").asc(nulls_last=True), "priority", "key"))
    if channel == StepType.PUSH:
        rows = ChannelData.objects.filter(recipient_id=run.recipient_id, channel=channel)
        sets = device_sets(configs, rows, lambda config, live: channel_data_row(config.kind,
                                                                                live))
        firsts = [providers[0] for _, providers in sets if providers]  # none: never sent
    else:
        firsts = configs[:1]
    costs = [estimate_cost(channel, config.options or {}, to=message.to,
                           content=message.content) for config in firsts]
    if not costs or None in costs or len({currency for _, currency in costs}) > 1:
        return None
    return sum((cost for cost, _ in costs), Decimal(0)), costs[0][1]


def _wait(p: Pass, until: datetime) -> str:
    run = p.run
    run.wake_at = until
    p.writes.wake("notifications.tasks.advance_run", str(run.id), at=until,
                  name=f"run:{run.id}@{int(until.timestamp())}")
    return WAIT


def _at(value: str) -> datetime:
    return parse_datetime(value)
