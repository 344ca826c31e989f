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
    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           verbose_name=_("key"))
    name = models.CharField(max_length=200, verbose_name=_("name"))
    category = models.CharField(
        max_length=128, blank=True, help_text=_("Groups workflows in the preference center."),
        verbose_name=_("category"),
    )
    critical = models.BooleanField(
        default=False, help_text=_("Critical workflows are sent even to people who opted out."),
        verbose_name=_("critical"),
    )
    active = models.BooleanField(default=True, verbose_name=_("active"))
    default_locale = models.CharField(max_length=35, default="en", verbose_name=_("default locale"))
    data_schema = models.JSONField(
        null=True, blank=True, help_text=_("Optional JSON Schema the trigger's `data` must match."),
        verbose_name=_("data schema"),
    )
    sample_data = models.JSONField(
        default=dict, blank=True,
        help_text=_("An example of the trigger's `data`: the template editor previews with it."),
        verbose_name=_("sample data"),
    )
    # The version the steps and templates below are (notifications/workflow_versions.py); empty
    # for a workflow made before versions, or one whose first draft is not published yet.
    published_version = models.ForeignKey(
        "WorkflowVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("published version"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("workflow")
        verbose_name_plural = _("workflows")
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

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions",
                                 verbose_name=_("workflow"))
    number = models.PositiveIntegerField(verbose_name=_("number"))
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT,
                             verbose_name=_("state"))
    document = models.JSONField(
        help_text=_("The workflow's JSON as `GET workflows/{key}` answers it, plus sample_data."),
        verbose_name=_("document"))
    base_number = models.PositiveIntegerField(
        null=True, blank=True,
        help_text=_("The published version this draft started from (empty: none was published)."),
        verbose_name=_("base number"))
    source = models.CharField(
        max_length=16, default="admin",
        help_text=_('Where it came from: "admin", "api", "import", "template" or "rollback".'),
        verbose_name=_("source"))
    note = models.CharField(max_length=500, blank=True, verbose_name=_("note"))
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+",
                               help_text=_("Who started it (empty: an API key or the system)."),
                               verbose_name=_("author"))
    authors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="+",
        help_text=_("Everyone who changed this draft: none of them may approve it."),
        verbose_name=_("authors"))
    submitted_at = models.DateTimeField(null=True, blank=True, verbose_name=_("submitted at"))
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+",
                                     verbose_name=_("submitted by"))
    review_note = models.TextField(blank=True, help_text=_("The reviewer's words to the authors."),
                                   verbose_name=_("review note"))
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+",
                                    verbose_name=_("approved by"))
    published_at = models.DateTimeField(null=True, blank=True, verbose_name=_("published at"))
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+",
                                     verbose_name=_("published by"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("workflow version")
        verbose_name_plural = _("workflow versions")
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

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="steps",
                                 verbose_name=_("workflow"))
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children",
        help_text=_("The branch step this step is inside of; empty for a top-level step."),
        verbose_name=_("parent"))
    branch = models.CharField(
        max_length=64, blank=True,
        help_text=_('Which branch of the parent step this step is in ("default" for its default).'),
        verbose_name=_("branch"))
    position = models.PositiveIntegerField(default=0, verbose_name=_("position"))
    ref = models.CharField(max_length=64, validators=[key_validator], verbose_name=_("ref"))
    type = models.CharField(max_length=16, choices=StepType.choices, verbose_name=_("type"))
    config = models.JSONField(default=dict, blank=True, verbose_name=_("config"))
    conditions = models.JSONField(
        null=True,
        blank=True,
        help_text=_('e.g. {"all": [{"path": "data.plan", "op": "eq", "value": "pro"}]}'),
        verbose_name=_("conditions"),
    )
    # Channel steps only (docs/workflows.md): skip when an earlier step's message reached a state,
    # wait for a window of days and hours, and pass quiet hours in a critical workflow.
    unless = models.JSONField(
        null=True, blank=True, help_text=_('e.g. {"step": "inbox", "is": "read"}'),
        verbose_name=_("unless"),
    )
    send_window = models.JSONField(
        null=True, blank=True,
        help_text=_('e.g. {"days": ["mon", "tue"], "start": "08:00", "end": "17:30", '
                    '"timezone": "recipient"}'),
        verbose_name=_("send window"),
    )
    urgent = models.BooleanField(
        default=False, help_text=_("In a critical workflow, send during the person's quiet hours."),
        verbose_name=_("urgent"),
    )
    # Branch steps only: the branches in the order they are tried, first match wins.
    branches = models.JSONField(
        null=True, blank=True,
        help_text=_('Branch steps: e.g. [{"name": "pro", "conditions": {"all": [{"path": '
                    '"data.plan", "op": "eq", "value": "pro"}]}}]; the first whose conditions '
                    'hold is taken, else "default".'), verbose_name=_("branches"))

    class Meta:
        verbose_name = _("step")
        verbose_name_plural = _("steps")
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

    step = models.ForeignKey(Step, on_delete=models.CASCADE, related_name="templates",
                             verbose_name=_("step"))
    # Blank for a channel step (its channel is the step's type); a route step has one template
    # per channel it may send on, and this says which.
    channel = models.CharField(max_length=16, blank=True, choices=Channel.choices,
                               verbose_name=_("channel"))
    locale = models.CharField(max_length=35, default="en", verbose_name=_("locale"))
    published_version = models.ForeignKey(
        "TemplateVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("published version"),
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("template")
        verbose_name_plural = _("templates")
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
    template = models.ForeignKey(Template, on_delete=models.CASCADE, related_name="versions",
                                 verbose_name=_("template"))
    number = models.PositiveIntegerField(verbose_name=_("number"))
    fields = models.JSONField(default=dict, verbose_name=_("fields"))
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        verbose_name=_("author"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("template version")
        verbose_name_plural = _("template versions")
        ordering = ["template", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["template", "number"], name="templateversion_unique")
        ]

    def __str__(self):
        return f"{self.template} v{self.number}"


class Layout(models.Model):
    """The email wrapper around `{{ content }}`; a tenant's own, or the default (no tenant)."""

    name = models.CharField(max_length=200, verbose_name=_("name"))
    tenant = models.OneToOneField(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="layout",
        verbose_name=_("tenant"),
    )
    html = models.TextField(help_text=_("Liquid HTML; must contain {{ content }}."),
                            verbose_name=_("html"))
    text = models.TextField(blank=True, help_text=_("Liquid text; {{ content }} is the text part."),
                            verbose_name=_("text"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("layout")
        verbose_name_plural = _("layouts")
        ordering = ["name"]

    def __str__(self):
        return self.name


class Schedule(models.Model):
    """A recurring trigger of a workflow for a recipient list or a topic (notifications/
    schedules.py fires it; notifications/recurrence.py says when)."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text=_("The schedule's id in the API."), verbose_name=_("key"))
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="schedules",
                                 verbose_name=_("workflow"))
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="schedules", verbose_name=_("tenant"))
    recipients = models.JSONField(default=list, blank=True,
                                  help_text=_("Recipient ids (or empty, with a topic)."),
                                  verbose_name=_("recipients"))
    topic = models.ForeignKey(Topic, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="schedules", verbose_name=_("topic"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    repeat = models.JSONField(help_text=_('e.g. {"frequency": "daily", "at": "09:00"}; '
                                          'see notifications/recurrence.py.'),
                              verbose_name=_("repeat"))
    timezone = models.CharField(max_length=64, default="recipient",
                                help_text=_('"recipient" (each recipient\'s own) or an IANA name.'),
                                verbose_name=_("timezone"))
    starts_at = models.DateTimeField(null=True, blank=True, verbose_name=_("starts at"))
    ends_at = models.DateTimeField(null=True, blank=True, verbose_name=_("ends at"))
    active = models.BooleanField(default=True, verbose_name=_("active"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        ordering = ["key"]

    def __str__(self):
        return self.key


class ScheduleZone(models.Model):
    """One time zone of a schedule's audience and its next occurrence there: the unit that
    fires (once per occurrence, under this row's lock)."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="zones",
                                 verbose_name=_("schedule"))
    timezone = models.CharField(max_length=64, verbose_name=_("timezone"))
    next_at = models.DateTimeField(null=True, blank=True, help_text=_("Empty: no more."),
                                   verbose_name=_("next at"))
    last_fired_at = models.DateTimeField(null=True, blank=True,
                                         help_text=_("The occurrence fired last."),
                                         verbose_name=_("last fired at"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["schedule", "timezone"],
                                               name="schedulezone_unique")]
        indexes = [models.Index(fields=["next_at"], name="schedulezone_due_idx")]

    def __str__(self):
        return f"{self.schedule} @ {self.timezone}"
