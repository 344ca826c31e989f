"""A push message reaches every device set of its recipient (providers/push.py: one ChannelData
row per kind, say APNs for an iPhone and Web Push for a browser), not only the first kind that
takes it.

A delivery pass splits a push message's `Delivery` into one per device set
(`split_device_sets`), each with the providers that use its row, in their order: a set fails over
among its own providers, retries on its own, and is done when one of them took it. At the end of
the pass the sets' outcomes become the message's (`merge_device_sets`): queued again while a set
still has to retry (the sets already sent are read back from the ledger next pass and never sent
again, batch._load_history), else sent when any set was sent, else failed with each set's error.
A message sent by some sets but not all keeps the others' errors in `Message.error`
(`unsent_sets_error`): status `sent`, error "Not sent to every device set — webpush: …".
Each provider call's result per device goes on the run's timeline (`device_entries`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ..models import Channel
from ..providers.push import device_sets, has_devices

# How a device set's outcome ranks when a message's sets end a pass in different states.
LATER = ("retry", "wait")


def split_device_sets(deliveries: list) -> list:
    """Each push Delivery (calls.Delivery) that has not decided yet, as one Delivery per device
    set with its own providers (`target`: the set's kind, "push" for the generic row); every
    other Delivery as it is. A push message with no device left stays whole (its providers
    then fail with "no tokens"), and so does one with no push provider at all."""
    split = []
    for d in deliveries:
        sets = device_sets(d.candidates, d.channel_data,
                           lambda candidate, rows: candidate.provider.channel_data_for(rows)) \
            if d.message.channel == Channel.PUSH and d.outcome is None and d.candidates else []
        if not sets:
            split.append(d)
            continue
        split += [replace(d, candidates=candidates, channel_data=[row],
                          target=row.provider_kind or "push", transient=defaultdict(int),
                          excluded=set(), tried=[], devices=[], sets={})
                  for row, candidates in sets]
    return split


def device_entries(candidate, exchange) -> list[dict]:
    """The timeline's record of one push call: per device, the provider, its kind, the device
    (shortened), its result (accepted, deactivated, transient_error, permanent_error), the HTTP
    status and the provider's error. Empty for a call that reached no device."""
    devices = (exchange.response or {}).get("devices") if exchange is not None else None
    if not isinstance(devices, list):
        return []
    entries = []
    for device in devices:
        entry = {"kind": candidate.provider.kind, "provider": candidate.key,
                 "device": device.get("device", ""), "result": device.get("result", ""),
                 "status": device.get("status")}
        if device.get("error"):
            entry["error"] = str(device["error"])[:300]
        entries.append(entry)
    return entries


def forget_devices(d, channel_data_id: int, dead: list[Any]) -> None:
    """Take the `dead` addresses just deactivated out of this pass's copy of their row too, so
    a failover in the same pass does not send to them again; a device set left with no device
    is done (failed) rather than tried on its next provider."""
    for row in d.channel_data:
        if row.pk != channel_data_id:
            continue
        row.data = {key: [item for item in value if item not in dead]
                    if isinstance(value, list) and key != "inactive" else value
                    for key, value in (row.data or {}).items()}
        if d.target and d.outcome is None and not has_devices(row.data):
            d.outcome = ("failed", d.last_provider, "")


def merge_device_sets(deliveries: list) -> list:
    """One Delivery per message: a message split into device sets gets one that carries the
    sets' combined outcome, cost, providers tried, devices and `sets` ({target: state})."""
    by_message: dict[Any, list] = {}
    for d in deliveries:
        by_message.setdefault(d.message.pk, []).append(d)
    return [parts[0] if len(parts) == 1 else _merged(parts) for parts in by_message.values()]


def _merged(parts: list):
    for part in parts:
        if part.outcome is None:  # cannot happen; never leave a message in `sending`
            part.outcome = ("failed", part.last_provider, "")
    states = {part.target: part.outcome[0] for part in parts}
    sent = [part for part in parts if part.outcome[0] == "sent"]
    later = [part for part in parts if part.outcome[0] in LATER]
    unfinished = [part for part in parts if part.outcome[0] != "sent"]
    error = "; ".join(f"{part.target}: {part.last_error or part.outcome[0]}"
                      for part in unfinished)
    if any(part.outcome[0] == "deferred" for part in parts):
        outcome = ("deferred", "", None)
    elif later:
        retrying = [part for part in later if part.outcome[0] == "retry"] or later
        outcome = (retrying[0].outcome[0], retrying[0].outcome[1],
                   min(part.outcome[2] for part in later))
    elif sent:
        outcome = sent[0].outcome
    else:
        outcome = ("failed", parts[-1].outcome[1], "")
    return replace(parts[0], outcome=outcome, cost=_total_cost(sent), last_error=error,
                   last_provider=unfinished[-1].last_provider if unfinished else "",
                   tried=[key for part in parts for key in part.tried],
                   devices=[entry for part in parts for entry in part.devices], sets=states)


def unsent_sets_error(sets: dict[str, str], why: str) -> str:
    """The error a push message that some device sets took, but not all, is left with (its
    status stays `sent`): the sets that did not take it and why, so support sees the failure
    on the message itself — "Not sent to every device set — webpush: <the last error>".
    `sets`: {target: state} (`Delivery.sets`); `why`: the unfinished sets' errors as
    `_merged` joins them. "" when every set took it (or the message was not split)."""
    unsent = [target for target, state in sets.items() if state != "sent"]
    if not unsent:
        return ""
    return f"Not sent to every device set — {why or ', '.join(unsent)}"


def _total_cost(sent: list) -> tuple[Decimal, str] | None:
    """The sum of the sent sets' estimated costs, when every one has a price in one currency;
    None otherwise (an estimate that leaves a set out would read as the whole)."""
    costs = [part.cost for part in sent]
    if not costs or any(cost is None for cost in costs) or len({c[1] for c in costs}) > 1:
        return None
    return sum((Decimal(cost[0]) for cost in costs), Decimal(0)), costs[0][1]
