"""What is sent: workflows, their steps, templates (each save an immutable version), email layouts,
and schedules that trigger workflows."""


from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from ..channels import CHANNEL_KEYS
from .audience import Tenant, Topic
from .base import Channel, StepType, key_validator


class Workflow(models.Model):
    key = models.CharField(max_length=128, unique=True, validators=[key_validator])
    name = models.CharField(max_length=200)
    category = models.CharField(
        max_length=128, blank=True, help_text="Groups workflows in the preference center."
    )
    critical = models.BooleanField(
        default=False, help_text="Critical workflows are sent even to people who opted out."
    )
    active = models.BooleanField(default=True)
    default_locale = models.CharField(max_length=35, default="en")
    data_schema = models.JSONField(
        null=True, blank=True, help_text="Optional JSON Schema the trigger's `data` must match."
    )
    sample_data = models.JSONField(
        default=dict, blank=True,
        help_text="An example of the trigger's `data`: the template editor previews with it.",
    )
    # The version the steps and templates below are (notifications/workflow_versions.py); empty
    # for a workflow made before versions, or one whose first draft is not published yet.
    published_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        # "change" edits drafts; "publish" approves and publishes them (roles.py).
        permissions = [("publish_workflow", "Can approve and publish a workflow version")]

    def __str__(self):
        return self.name or self.key


class WorkflowVersion(models.Model):
    """One version of a workflow: its whole JSON (`PUT workflows/{key}`'s body with every step's
    templates, plus the sample data). At most one open draft (draft or in review) and one
    published version per workflow; a published version is never changed again, and a newer
    one supersedes it. The Step and Template rows are the published version (the engine reads
    them); a draft is applied to them when it is published (notifications/publishing.py)."""

    class State(models.TextChoices):
        DRAFT = "draft", _("Draft")
        IN_REVIEW = "in_review", _("In review")
        PUBLISHED = "published", _("Published")
        SUPERSEDED = "superseded", _("Superseded")

    OPEN_STATES = (State.DRAFT, State.IN_REVIEW)

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    document = models.JSONField(
        help_text="The workflow's JSON as `GET workflows/{key}` answers it, plus sample_data.")
    base_number = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="The published version this draft started from (empty: none was published).")
    source = models.CharField(
        max_length=16, default="admin",
        help_text='Where it came from: "admin", "api", "import", "template" or "rollback".')
    note = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+",
                               help_text="Who started it (empty: an API key or the system).")
    authors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+",
        help_text="Everyone who changed this draft: none of them may approve it.")
    submitted_at = models.DateTimeField(null=True, blank=True)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    review_note = models.TextField(blank=True, help_text="The reviewer's words to the authors.")
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"],
                                    name="workflowversion_number_unique"),
            models.UniqueConstraint(fields=["workflow"], condition=Q(state__in=["draft",
                                                                              "in_review"]),
                                    name="workflowversion_one_open_draft"),
            models.UniqueConstraint(fields=["workflow"], condition=Q(state="published"),
                                    name="workflowversion_one_published"),
        ]
        indexes = [  # the home page's "drafts waiting for review"
            models.Index(fields=["state"], condition=Q(state="in_review"),
                         name="workflowversion_review_idx"),
        ]

    def __str__(self):
        try:
            return f"{self.workflow.key} v{self.number}"
        except Workflow.DoesNotExist:  # its workflow being deleted (the audit log's diff)
            return f"v{self.number}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class Step(models.Model):
    """One step of a workflow. A step with branches (a `branch` step) holds the steps of each
    branch as its children: `parent` is that step and `branch` the branch's name ("default" for
    its default branch); `position` orders the steps of one branch (or of the top level). Refs
    are unique across the whole workflow, nested steps included."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        help_text="The branch step this step is inside of; empty for a top-level step.")
    branch = models.CharField(
        max_length=64, blank=True,
        help_text='Which branch of the parent step this step is in ("default" for its default).')
    position = models.PositiveIntegerField(default=0)
    ref = models.CharField(max_length=64, validators=[key_validator])
    type = models.CharField(max_length=16, choices=StepType.choices)
    config = models.JSONField(default=dict, blank=True)
    conditions = models.JSONField(
        null=True,
        blank=True,
        help_text='e.g. {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}',
    )
    # Channel steps only (docs/workflows.md): skip when an earlier step's message reached a state,
    # wait for a window of days and hours, and pass quiet hours in a critical workflow.
    unless = models.JSONField(
        null=True, blank=True, help_text='e.g. {"step": "inbox", "is": "read"}',
    )
    send_window = models.JSONField(
        null=True, blank=True,
        help_text='e.g. {"days": ["mon", "tue"], "start": "08:00", "end": "17:30", '
                  '"timezone": "recipient"}',
    )
    urgent = models.BooleanField(
        default=False, help_text="In a critical workflow, send during the person's quiet hours.",
    )
    # Branch steps only: the branches in the order they are tried, first match wins.
    branches = models.JSONField(
        null=True, blank=True,
        help_text='Branch steps: e.g. [{"name": "pro", "conditions": {"all": [{"path": '
                  '"data.plan", "op": "eq", "value": "pro"}]}}]; the first whose conditions '
                  'hold is taken, else "default".')

    class Meta:
        ordering = ["workflow", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["workflow", "ref"], name="step_ref_unique")]

    def __str__(self):
        return f"{self.workflow.key}/{self.ref}"

    @property
    def is_channel(self) -> bool:
        return self.type in CHANNEL_KEYS


class Template(models.Model):
    """The words of one channel step in one locale (of a route step: of one of its channels in
    one locale). Each save is an immutable version."""

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="templates")
    # Blank for a channel step (its channel is the step's type); a route step has one template
    # per channel it may send on, and this says which.
    channel = models.CharField(max_length=16, blank=True, choices=Channel.choices)
    locale = models.CharField(max_length=35, default="en")
    published_version = models.ForeignKey(
        "TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["step", "channel", "locale"]
        # "change" saves drafts; "publish" makes a version the one that renders (roles.py).
        permissions = [("publish_template", "Can publish a template version")]
        constraints = [
            models.UniqueConstraint(fields=["step", "channel", "locale"],
                                    name="template_channel_locale_unique")
        ]

    def __str__(self):
        if self.channel:
            return f"{self.step} {self.channel} [{self.locale}]"
        return f"{self.step} [{self.locale}]"

    @property
    def channel_key(self) -> str:
        """The channel these words are for: the route channel, else the step's own type."""
        return self.channel or self.step.type

    @property
    def fields(self) -> dict:
        return dict(self.published_version.fields) if self.published_version else {}


class TemplateVersion(models.Model):
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    fields = models.JSONField(default=dict)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="templateversion_unique")
        ]

    def __str__(self):
        return f"{self.template} v{self.number}"


class Layout(models.Model):
    """The email wrapper around `{{ content }}`; a tenant's own, or the default (no tenant)."""

    name = models.CharField(max_length=200)
    tenant = models.OneToOneField(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="layout"
    )
    html = models.TextField(help_text="Liquid HTML; must contain {{ content }}.")
    text = models.TextField(blank=True, help_text="Liquid text; {{ content }} is the text part.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Schedule(models.Model):
    """A recurring trigger of a workflow for a recipient list or a topic (notifications/
    schedules.py fires it; notifications/recurrence.py says when)."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text="The schedule's id in the API.")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="schedules")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="schedules")
    recipients = models.JSONField(default=list, blank=True,
                                  help_text="Recipient ids (or empty, with a topic).")
    topic = models.ForeignKey(Topic, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="schedules")
    data = models.JSONField(default=dict, blank=True)
    repeat = models.JSONField(help_text='e.g. {"frequency": "daily", "at": "09:00"}; '
                                        'see notifications/recurrence.py.')
    timezone = models.CharField(max_length=64, default="recipient",
                                help_text='"recipient" (each recipient\'s own) or an IANA name.')
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class ScheduleZone(models.Model):
    """One time zone of a schedule's audience and its next occurrence there: the unit that
    fires (once per occurrence, under this row's lock)."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="zones")
    timezone = models.CharField(max_length=64)
    next_at = models.DateTimeField(null=True, blank=True, help_text="Empty: no more.")
    last_fired_at = models.DateTimeField(null=True, blank=True,
                                         help_text="The occurrence fired last.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "timezone"],
                                               name="schedulezone_unique")]
        indexes = [models.Index(fields=["next_at"], name="schedulezone_due_idx")]

    def __str__(self):
        return f"{self.schedule} @ {self.timezone}"
