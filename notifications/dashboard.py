"""The admin home's figures: today's triggers and messages by outcome, providers in trouble, the
latest failures, and workflow drafts and template drafts waiting for review.

Each query filters on an indexed range (`Trigger.created_at`, the message log's
`(-created_at, -id)` index) or reads a small table (providers, templates): the page costs the
same with a billion messages as with ten.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Exists, F, Max, OuterRef, Q
from django.utils import timezone

from .models import Message, ProviderConfig, Template, TemplateVersion, Trigger, WorkflowVersion

SENT = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.OPENED,
        Message.Status.CLICKED, Message.Status.COMPLAINED)
FAILED = (Message.Status.FAILED, Message.Status.UNDELIVERABLE, Message.Status.BOUNCED)
FAILURES_SHOWN = 10
FAILURES_WITHIN = timedelta(days=7)  # "latest failures" looks this far back, no further


@dataclass
class Dashboard:
    now: datetime
    since: datetime
    counts: dict[str, int] | None = None  # triggered, sent, failed, suppressed
    providers: list[ProviderConfig] = field(default_factory=list)
    failures: list[Message] = field(default_factory=list)
    drafts: list[TemplateVersion] = field(default_factory=list)
    reviews: list[WorkflowVersion] = field(default_factory=list)  # workflow drafts in review


def today_start(now: datetime | None = None) -> datetime:
    """Midnight of today in the current time zone."""
    local = timezone.localtime(now or timezone.now())
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def today_counts(since: datetime) -> dict[str, int]:
    """Triggers, and messages sent / failed / suppressed, created since `since`: two queries,
    each a range on an indexed created_at."""
    messages = Message.objects.order_by().filter(created_at__gte=since).aggregate(
        sent=Count("pk", filter=Q(status__in=SENT)),
        failed=Count("pk", filter=Q(status__in=FAILED)),
        suppressed=Count("pk", filter=Q(status=Message.Status.SUPPRESSED)))
    return {"triggered": Trigger.objects.order_by().filter(created_at__gte=since).count(),
            **messages}


def providers_in_trouble(now: datetime) -> list[ProviderConfig]:
    """Active providers whose circuit is open or whose last sends failed, worst first."""
    return list(ProviderConfig.objects.select_related("tenant").filter(
        Q(circuit_open_until__gt=now) | Q(consecutive_failures__gt=0), active=True)
        .order_by(F("circuit_open_until").desc(nulls_last=True), "-consecutive_failures"))


def latest_failures(now: datetime, limit: int = FAILURES_SHOWN) -> list[Message]:
    """The newest failed messages of the last week, with their reasons."""
    return list(Message.objects.select_related("recipient", "workflow").filter(
        created_at__gte=now - FAILURES_WITHIN, status__in=FAILED)
        .order_by("-created_at", "-id")[:limit])


def drafts_waiting() -> list[TemplateVersion]:
    """Each template's newest version where it is newer than the published one (or nothing is
    published): the drafts a Publisher has to review. Not those of a workflow with an open
    draft: they are in it, reviewed with it (reviews_waiting)."""
    open_draft = WorkflowVersion.objects.filter(workflow=OuterRef("step__workflow"),
                                                state__in=WorkflowVersion.OPEN_STATES)
    pending = (Template.objects.order_by().filter(~Exists(open_draft))
               .annotate(latest=Max("versions__number"))
               .filter(Q(published_version__isnull=True, latest__isnull=False)
                       | Q(latest__gt=F("published_version__number")))
               .values_list("pk", "latest"))
    match = Q()
    for template_id, number in pending:
        match |= Q(template_id=template_id, number=number)
    if not match:
        return []
    return list(TemplateVersion.objects.filter(match)
                .select_related("template__step__workflow", "author")
                .order_by("-created_at"))


def reviews_waiting() -> list[WorkflowVersion]:
    """Workflow drafts submitted for review, oldest first (a partial index holds them)."""
    return list(WorkflowVersion.objects.filter(state=WorkflowVersion.State.IN_REVIEW)
                .select_related("workflow", "submitted_by").order_by("submitted_at"))


def dashboard_for(user, now: datetime | None = None) -> Dashboard:
    """What the home page shows `user`: each part only with the permission to view its rows."""
    now = now or timezone.now()
    board = Dashboard(now=now, since=today_start(now))
    if user.has_perm("notifications.view_message") and user.has_perm(
            "notifications.view_trigger"):
        board.counts = today_counts(board.since)
    if user.has_perm("notifications.view_providerconfig"):
        board.providers = providers_in_trouble(now)
    if user.has_perm("notifications.view_message"):
        board.failures = latest_failures(now)
    if user.has_perm("notifications.view_template"):
        board.drafts = drafts_waiting()
    if user.has_perm("notifications.view_workflow"):
        board.reviews = reviews_waiting()
    return board
