"""Retention: what is older than its retention period is deleted, in small batches.

The period is CLARION_RETENTION_DAYS (default 90; 0 keeps everything), or a tenant's own
`retention_days`. A trigger older than its tenant's period whose runs have all ended is deleted
with everything under it: its runs and their step logs, messages, delivery attempts, provider
status events and inbox items; outbound events and inbox items without a message older than the
period go too. Each batch (RETENTION_BATCH runs, or rows) is its own short transaction that
deletes rows by primary key, so no table is locked for long and workers keep going meanwhile.
The analytics rollups are separate tables, kept: the counts of what was deleted stay.
"""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from events.models import Event
from inbox.models import InboxItem

from .models import DeliveryAttempt, Message, MessageEvent, Run, StepLog, Tenant, Trigger

RETENTION_BATCH = 500
ACTIVE = (Run.Status.RUNNING, Run.Status.WAITING)


@dataclass
class RetentionReport:
    """What one pass deleted, per table, and whether it stopped for its time budget."""

    deleted: dict[str, int] = field(default_factory=dict)
    finished: bool = True

    def add(self, name: str, count: int) -> None:
        self.deleted[name] = self.deleted.get(name, 0) + count


def retention_scopes(now: datetime) -> list[tuple[Q, datetime]]:
    """(rows' tenant filter, cutoff) pairs: each tenant with its own period, then every other
    row with the global one. A period of 0 keeps everything (no pair)."""
    scopes, own = [], []
    for tenant_id, days in Tenant.objects.exclude(retention_days=None).values_list(
            "pk", "retention_days"):
        own.append(tenant_id)
        if days:
            scopes.append((Q(tenant_id=tenant_id), now - timedelta(days=days)))
    days = settings.CLARION.get("RETENTION_DAYS") or 0
    if days:
        scopes.append((~Q(tenant_id__in=own) if own else Q(), now - timedelta(days=days)))
    return scopes


def _delete_runs(run_ids: list, report: RetentionReport) -> None:
    """One batch: the runs and everything under them, children first, in one transaction."""
    with transaction.atomic():
        messages = Message.objects.filter(run_id__in=run_ids)
        report.add("delivery attempts", DeliveryAttempt.objects.filter(
            message__in=messages).delete()[0])
        report.add("message events", MessageEvent.objects.filter(
            message__in=messages).delete()[0])
        report.add("inbox items", InboxItem.objects.filter(message__in=messages).delete()[0])
        report.add("step logs", StepLog.objects.filter(run_id__in=run_ids).delete()[0])
        report.add("messages", Message.objects.filter(run_id__in=run_ids).delete()[0])
        report.add("runs", Run.objects.filter(pk__in=run_ids).delete()[0])


def _ids(queryset, batch: int) -> list:
    return list(queryset.values_list("pk", flat=True)[:batch])


def retention_apply(*, now: datetime | None = None, batch: int = RETENTION_BATCH,
                    budget_seconds: float = 300, pause_seconds: float = 0) -> RetentionReport:
    """Delete what is past its retention period (see the module's docstring), batch by batch,
    until nothing is left or `budget_seconds` have passed (the next pass goes on). `now`
    fixes the clock (tests); `pause_seconds` sleeps between batches. Returns what it did."""
    now = now or timezone.now()
    deadline = time.monotonic() + budget_seconds
    report = RetentionReport()

    def out_of_time() -> bool:
        if time.monotonic() > deadline:
            report.finished = False
            return True
        if pause_seconds:
            time.sleep(pause_seconds)
        return False

    active = Run.objects.filter(trigger_id=OuterRef("pk"), status__in=ACTIVE)
    for scope, cutoff in retention_scopes(now):
        triggers = (Trigger.objects.filter(scope, created_at__lt=cutoff,
                                           fanout=Trigger.Fanout.DONE)
                    .exclude(Exists(active)).order_by("created_at"))
        while trigger_ids := _ids(triggers, batch):
            for trigger_id in trigger_ids:
                while run_ids := _ids(Run.objects.filter(trigger_id=trigger_id), batch):
                    _delete_runs(run_ids, report)
                    if out_of_time():
                        return report
            with transaction.atomic():
                report.add("triggers", Trigger.objects.filter(pk__in=trigger_ids).exclude(
                    Exists(Run.objects.filter(trigger_id=OuterRef("pk")))).delete()[0])
            if out_of_time():
                return report
        for name, queryset in (
                ("outbound events", Event.objects.filter(scope, created_at__lt=cutoff)),
                ("inbox items", InboxItem.objects.filter(scope, message__isnull=True,
                                                         created_at__lt=cutoff))):
            while ids := _ids(queryset.order_by("created_at"), batch):
                with transaction.atomic():
                    report.add(name, queryset.model.objects.filter(pk__in=ids).delete()[0])
                if out_of_time():
                    return report
    return report
