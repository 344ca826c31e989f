"""Domain model of DESIGN.md §2. Behaviour lives in services.py and engine/, not here."""

import unicodedata
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper

from .addresses import validate_display_name, validate_email_address
from .channels import CHANNEL_KEYS, CHANNELS

key_validator = RegexValidator(
    r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,127}$",
    "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter or digit).",
)

RECIPIENT_ID_MAX_LENGTH = 255


def validate_recipient_id(value: str) -> None:
    """The one rule for recipient ids, wherever one enters (API, admin): any text of 1 to 255
    characters, kept exactly as given, except "." and ".." (a URL path cannot carry them:
    RFC 3986 §5.2.4 removes them, browsers even when percent-encoded) and text with control
    characters or unpaired surrogates (no header, link or database column keeps them).
    Raises ValidationError with the rule broken."""
    if not 0 < len(value) <= RECIPIENT_ID_MAX_LENGTH:
        raise ValidationError("A recipient id has 1 to 255 characters.", code="length")
    if value in (".", ".."):
        raise ValidationError('A recipient id cannot be "." or "..": no URL path can name it.',
                              code="dot_segment")
    if any(unicodedata.category(char) == "Cs" for char in value):
        raise ValidationError("A recipient id cannot contain an unpaired surrogate (such as "
                              "\\ud800 alone): it is not a character.", code="surrogate")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValidationError("A recipient id cannot contain control characters (such as a line "
                              "break or NUL).", code="control_character")


color_validator = RegexValidator(
    r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "Use a hex colour like #4f46e5 (it goes into CSS)."
)


# The channels come from the channel table (channels.py): Channel.EMAIL == "email" and so on.
Channel = models.TextChoices(
    "Channel", [(spec.key.upper(), (spec.key, spec.label)) for spec in CHANNELS], module=__name__)


# A step is a channel step (one per channel) or a function step.
StepType = models.TextChoices("StepType", [
    *((spec.key.upper(), (spec.key, spec.label)) for spec in CHANNELS),
    ("DELAY", ("delay", "Delay")),
    ("DIGEST", ("digest", "Digest")),
    ("THROTTLE", ("throttle", "Throttle")),
    ("BRANCH", ("branch", "Branch")),
    ("ROUTE", ("route", "Route")),
    ("APPROVAL", ("approval", "Approval")),
], module=__name__)


class Tenant(models.Model):
    key = models.CharField(max_length=128, unique=True, validators=[key_validator])
    # The From display name when sender_name is blank.
    name = models.CharField(max_length=200, validators=[validate_display_name])
    logo_url = models.URLField(blank=True)
    primary_color = models.CharField(max_length=32, blank=True, help_text="e.g. #4f46e5",
                                     validators=[color_validator])
    sender_name = models.CharField(max_length=200, blank=True,
                                   validators=[validate_display_name])
    sender_email = models.EmailField(blank=True, validators=[validate_email_address])
    footer = models.TextField(
        blank=True, help_text="Shown at the bottom of every email: address, legal line…"
    )
    settings = models.JSONField(default=dict, blank=True)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="Days its runs, messages, attempts, events and inbox items are kept; empty: "
                  "the global CLARION_RETENTION_DAYS; 0: forever.")
    # The tenant's inbox secret (recipient HMACs for its items): {"current": …, "previous": …},
    # encrypted at rest like provider credentials. Written by inbox.services; see docs/inbox.md.
    inbox_secrets_encrypted = models.TextField(blank=True, editable=False)
    inbox_secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    inbox_previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Until then, HMACs made with the previous inbox secret are still accepted.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.name or self.key

    @property
    def inbox_secrets(self) -> dict:
        """{"current": str, "previous": str | None}, decrypted; {} before the first one.
        ValueError if CLARION_ENCRYPTION_KEY cannot open it."""
        from .crypto import decrypt_json

        return decrypt_json(self.inbox_secrets_encrypted)


class ApiKey(models.Model):
    """A server API key. The secret is shown once; only its SHA-256 hash is stored."""

    name = models.CharField(max_length=200)
    prefix = models.CharField(max_length=32, unique=True, help_text="Shown to tell keys apart.")
    secret_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text="When set, the key sees and triggers only for this tenant.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Recipient(models.Model):
    """A person (or anything) that receives notifications, known by the app's own id."""

    external_id = models.CharField(
        "id", max_length=RECIPIENT_ID_MAX_LENGTH, unique=True, validators=[validate_recipient_id],
        help_text="The id your application uses: any text of 1 to 255 characters but \".\" and "
                  "\"..\", without control characters.",
    )
    name = models.CharField(max_length=255, blank=True, validators=[validate_display_name])
    email = models.EmailField(max_length=320, blank=True, validators=[validate_email_address])
    phone = models.CharField(max_length=16, blank=True, help_text="E.164, e.g. +15550001111")
    locale = models.CharField(max_length=35, blank=True)
    timezone = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        indexes = [
            # The admin's Find box: a recipient by email address, in any case.
            models.Index(Upper("email"), name="recipient_email_idx"),
        ]

    def __str__(self):
        return self.external_id


class ChannelData(models.Model):
    """Per recipient and channel (and optionally provider kind): push tokens, chat webhook URLs…"""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="channel_data")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    provider_kind = models.CharField(
        max_length=64, blank=True,
        help_text="Only for providers of this kind (fcm, apns…); blank: for any of the channel.")
    data = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "channel data"
        verbose_name_plural = "channel data"
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "channel", "provider_kind"], name="channeldata_unique"
            )
        ]

    def __str__(self):
        return f"{self.recipient} · {self.channel}"


class Topic(models.Model):
    """A named audience: triggering a workflow for `{"topic": key}` fans out to its subscribers."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator])
    name = models.CharField(max_length=200, blank=True)
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="topics"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class Subscription(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="subscriptions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["topic", "recipient"], name="subscription_unique")
        ]

    def __str__(self):
        return f"{self.recipient} → {self.topic}"


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
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.name or self.key


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


class Trigger(models.Model):
    """One API call: the workflow, the audience and the data it was given."""

    class Fanout(models.TextChoices):
        DONE = "done", "Done"
        PENDING = "pending", "Pending"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="triggers")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="triggers"
    )
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="triggers"
    )
    actor = models.JSONField(null=True, blank=True)
    data = models.JSONField(default=dict, blank=True)
    recipients = models.JSONField(default=list, blank=True)
    cancellation_key = models.CharField(max_length=255, blank=True)
    idempotency_key = models.CharField(
        max_length=255, blank=True,
        help_text="The request's Idempotency-Key, if it sent one (kept after the 24-hour replay "
                  "record expires, so support can find the trigger by it).")
    fanout = models.CharField(max_length=16, choices=Fanout.choices, default=Fanout.DONE)
    recipients_total = models.PositiveIntegerField(
        null=True, blank=True,
        help_text="How many recipients the trigger reaches: direct ones, plus topic subscribers "
                  "counted when the fan-out starts (the actor left out). Empty until then.",
    )
    runs_created = models.PositiveIntegerField(default=0, help_text="Runs created so far.")
    fanout_after = models.BigIntegerField(
        default=0, help_text="The fan-out's keyset cursor: subscribers up to this recipient "
                             "primary key have their runs.",
    )
    fanout_at = models.DateTimeField(
        null=True, blank=True, help_text="When the fan-out last made progress (the sweeper "
                                         "resumes one that stalled).",
    )
    cancelled_at = models.DateTimeField(
        null=True, blank=True, help_text="Cancelled for everyone: a pending fan-out stops."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["workflow", "cancellation_key"],
                condition=~Q(cancellation_key=""),
                name="trigger_cancellation_idx",
            ),
            models.Index(
                fields=["idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="trigger_idempotency_idx",
            ),
        ]

    def __str__(self):
        return str(self.id)


class Run(models.Model):
    """One recipient's pass through one workflow."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        WAITING = "waiting", "Waiting"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="runs")
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="runs")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    cursor = models.PositiveIntegerField(default=0, help_text="Index of the next step.")
    wake_at = models.DateTimeField(null=True, blank=True)
    step_refs = models.JSONField(
        default=list, blank=True,
        help_text="While the run waits: the refs of the workflow's steps, in order, when it began "
                  "waiting (the cursor indexes them), so it resumes at the right step however "
                  "the workflow is edited meanwhile. Empty otherwise.",
    )
    state = models.JSONField(default=dict, blank=True, help_text="Step outputs.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["trigger", "recipient"], name="run_once_per_recipient")
        ]
        indexes = [
            # The sweeper: waiting runs that are due, running runs that stalled.
            models.Index(
                fields=["status", "wake_at"],
                condition=Q(status__in=["running", "waiting"]),
                name="run_active_idx",
            ),
            models.Index(fields=["recipient", "-created_at"], name="run_recipient_idx"),
        ]

    def __str__(self):
        return f"{self.workflow.key} → {self.recipient.external_id}"


class Message(models.Model):
    """One channel step for one recipient. Keyed by (run, step, channel): the idempotency
    record (a channel step sends on its one channel; a route step once per channel)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        COMPLAINED = "complained", "Complained (marked as spam)"
        BOUNCED = "bounced", "Bounced"
        FAILED = "failed", "Failed"
        UNDELIVERABLE = "undeliverable", "Undeliverable"
        SUPPRESSED = "suppressed", "Suppressed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages")
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    step_ref = models.CharField(max_length=64)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="messages")
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="messages")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="messages"
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    to = models.CharField(max_length=320, blank=True, help_text="Address it was sent to.")
    content = models.JSONField(default=dict, blank=True, help_text="Rendered fields.")
    template_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    provider = models.CharField(max_length=128, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True)
    estimated_cost = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text="What the send that succeeded is estimated to cost (its provider's cost "
        "options), in cost_currency; null: not sent, or the provider has no price.")
    cost_currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, e.g. USD.")
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    # Set from provider status events (notifications/delivery/status.py), first time only.
    opened_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    complained_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("resend_message", "Can resend a failed message")]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_ref", "channel"],
                                    name="message_once_per_step_channel")
        ]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=Q(status__in=["queued", "sending"]),
                name="message_pending_idx",
            ),
            models.Index(fields=["recipient", "-created_at"], name="message_recipient_idx"),
            # The message log (GET /api/v1/messages): newest first, keyset on (created_at, id),
            # for everyone or one tenant.
            models.Index(fields=["-created_at", "-id"], name="message_log_idx"),
            models.Index(fields=["tenant", "-created_at", "-id"], name="message_log_tenant_idx"),
        ]

    def __str__(self):
        # The recipient's own id, never the row's primary key (the admin titles pages with it).
        return f"{self.channel} to {self.to or self.recipient.external_id} ({self.status})"


class ProviderConfig(models.Model):
    """One provider account for one channel: kind, encrypted credentials, priority, tenant.

    A channel's providers are tried in order: the message's tenant's own first, then the global
    ones (no tenant), each group by `priority` (lower first). The circuit-breaker columns are
    shared by every worker process (see notifications/providers/breaker.py).
    """

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text="The provider key: how messages, callbacks and the API "
                                     "name this provider.")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    kind = models.CharField(max_length=64, help_text="The provider kind: which service it is "
                                                     "(twilio, vonage, slack_webhook, smtp…).")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="providers",
        help_text="When set, used only for this tenant's messages (before the global ones).",
    )
    priority = models.PositiveSmallIntegerField(default=1, help_text="Lower is tried first.")
    active = models.BooleanField(default=True)
    credentials_encrypted = models.TextField(blank=True, editable=False)
    options = models.JSONField(default=dict, blank=True, help_text='e.g. {"base_url": "…"}')
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    circuit_open_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "provider"
        ordering = ["channel", "priority", "key"]
        indexes = [
            models.Index(fields=["channel", "active", "priority"], name="providerconfig_pick_idx")
        ]

    def __str__(self):
        return f"{self.key} ({self.channel}/{self.kind})"

    @property
    def credentials(self) -> dict:
        from .crypto import decrypt_json

        return decrypt_json(self.credentials_encrypted)

    @credentials.setter
    def credentials(self, value: dict) -> None:
        from .crypto import encrypt_json

        self.credentials_encrypted = encrypt_json(dict(value or {}))


class DeliveryAttempt(models.Model):
    """One provider call, written before it starts and completed after it returns."""

    class Outcome(models.TextChoices):
        STARTED = "started", "Started"
        SUCCEEDED = "succeeded", "Succeeded"
        TRANSIENT_ERROR = "transient_error", "Transient error"
        PERMANENT_ERROR = "permanent_error", "Permanent error"
        UNKNOWN = "unknown", "Unknown (worker stopped)"
        # The provider accepted the message, then its status callback said the carrier did not
        # deliver it (written when Clarion fails over to the next provider because of it).
        CARRIER_REFUSED = "carrier_refused", "Refused by the carrier after acceptance"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="delivery_attempts")
    provider = models.CharField(
        max_length=128, help_text="The provider key: a configured provider's, or a built-in "
        "default's (smtp, webhook).")
    provider_kind = models.CharField(max_length=64, blank=True,
                                     help_text="The provider kind: twilio, postmark, fcm…")
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.STARTED)
    request = models.JSONField(default=dict, blank=True, help_text="Redacted.")
    response = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    estimated_cost = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text="For a succeeded call: the provider's price for it (its cost options: per "
        "message, per SMS segment, per country), in cost_currency. Null: no price set.")
    cost_currency = models.CharField(max_length=3, blank=True, help_text="ISO 4217, e.g. USD.")

    class Meta:
        ordering = ["message", "started_at", "id"]
        # /metrics: the provider calls started in its window.
        indexes = [models.Index(fields=["started_at"], name="deliveryattempt_started_idx")]

    def __str__(self):
        return f"{self.provider} {self.outcome}"


class MessageEvent(models.Model):
    """One delivery-status event a provider reported about a message (anymail tracking, Twilio
    and Vonage callbacks), normalised to `kind`, with the provider's raw payload beside it."""

    class Kind(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DEFERRED = "deferred", "Deferred"
        DELIVERED = "delivered", "Delivered"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"
        COMPLAINED = "complained", "Complained"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"
        UNKNOWN = "unknown", "Unknown"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    provider_kind = models.CharField(max_length=64,
                                     help_text="The provider kind that reported it: twilio…")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    provider_message_id = models.CharField(max_length=255, blank=True)
    event_id = models.CharField(
        max_length=255, help_text="The provider's id for the event, else a digest of its payload."
    )
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    description = models.TextField(blank=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The provider's payload as sent.")

    class Meta:
        ordering = ["message", "occurred_at", "id"]
        constraints = [
            # A provider that re-sends an event (its retry after a timeout) adds nothing.
            models.UniqueConstraint(fields=["provider_kind", "event_id"],
                                    name="messageevent_once")
        ]

    def __str__(self):
        return f"{self.provider_kind} {self.kind}"


class StepLog(models.Model):
    """One decision on a run: the admin shows these as the run's timeline."""

    class Event(models.TextChoices):
        TRIGGERED = "triggered", "Triggered"
        STARTED = "started", "Started"
        SKIPPED = "skipped", "Skipped"
        CONDITION_FALSE = "condition_false", "Condition false"
        OPTED_OUT = "opted_out", "Opted out"
        QUIET_HOURS = "quiet_hours", "Quiet hours"
        DELAYED = "delayed", "Delayed"
        RESUMED = "resumed", "Resumed"
        BATCHED = "batched", "Joined a digest"
        DIGESTED = "digested", "Digested"
        QUEUED = "queued", "Queued"
        RETRYING = "retrying", "Retrying"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        RATE_LIMITED = "rate_limited", "Rate limited"
        THROTTLED = "throttled", "Throttled"
        BRANCHED = "branched", "Branch taken"
        PASSED = "passed", "Passed"
        SEND_WINDOW = "send_window", "Outside the send window"
        SUCCEEDED = "succeeded", "Success reached"  # a route: a channel reached its success
        EXHAUSTED = "exhausted", "Every channel tried"  # a route sent all it could
        CANCELLED = "cancelled", "Cancelled"
        COMPLETED = "completed", "Completed"
        ASKED = "asked", "Approval asked"
        ANSWERED = "answered", "Approval answered"
        EXPIRED = "expired", "Approval expired"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="step_logs")
    step_ref = models.CharField(max_length=64, blank=True)
    event = models.CharField(max_length=32, choices=Event.choices)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        verbose_name = "step log"

    def __str__(self):
        return f"{self.step_ref or '-'} {self.event}"


class IdempotencyRecord(models.Model):
    """The first response to a request carrying an `Idempotency-Key`, kept 24 hours."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique")
        ]

    def __str__(self):
        return self.key

    @property
    def in_progress(self) -> bool:
        return self.response_status is None


class ThrottleCounter(models.Model):
    """The runs a throttle step let through for one bucket (workflow, step, recipient, tenant and
    the step's key value, hashed into `key`) within its window: their times, oldest first. The
    row is locked while a run is counted, so every process counts against the same list."""

    key = models.CharField(max_length=64, unique=True)
    passed = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return self.key


class RateLimitCounter(models.Model):
    """Calls counted against one rate limit (`key`, e.g. "api-trigger:<api key id>" or
    "sms:<phone>") in one fixed window. In the database so that every web and worker process
    counts together; a key keeps only its current window's row."""

    key = models.CharField(max_length=200)
    window_start = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_limit_window")
        ]

    def __str__(self):
        return f"{self.key} {self.window_start:%Y-%m-%d %H:%M:%S}: {self.count}"


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


class DigestBatch(models.Model):
    """The events one digest step gathers for one recipient, tenant and key value while its
    window is open (notifications/engine/digest.py). At most one open batch per `key`: the
    database refuses a second (digestbatch_one_open), so concurrent runs join the same one."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    class CloseReason(models.TextChoices):
        WINDOW = "window", "Its window ended"
        MAX_EVENTS = "max_events", "It reached max_events"
        CANCELLED = "cancelled", "Every run in it was cancelled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE,
                                 related_name="digest_batches")
    step_ref = models.CharField(max_length=64)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE,
                                  related_name="digest_batches")
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="digest_batches")
    key = models.CharField(max_length=64, help_text="SHA-256 of (workflow, step, recipient, "
                                                    "tenant, key value).")
    key_value = models.JSONField(null=True, blank=True,
                                 help_text="The value at the step's `key` path.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField()
    closes_at = models.DateTimeField(help_text="When its window ends.")
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    carrier = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+", help_text="The run that goes on with it.")

    class Meta:
        ordering = ["-opened_at"]
        verbose_name_plural = "digest batches"
        constraints = [
            models.UniqueConstraint(fields=["key"], condition=Q(status="open"),
                                    name="digestbatch_one_open"),
        ]

    def __str__(self):
        return f"{self.step_ref} batch {self.id}"


class DigestEvent(models.Model):
    """One run's event in a digest batch: the trigger's data and actor, and what became of it
    when the batch closed."""

    class Outcome(models.TextChoices):
        PENDING = "", "Waiting for the batch to close"
        INCLUDED = "included", "In the digest"
        SENT_AT_ONCE = "sent_at_once", "Sent at once (first_at_once)"
        CANCELLED = "cancelled", "Left out: its run was cancelled"
        READ = "read", "Left out: read in-app before the window closed"

    batch = models.ForeignKey(DigestBatch, on_delete=models.CASCADE, related_name="events")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="digest_events")
    step_ref = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    actor = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(help_text="When its trigger was made.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)

    class Meta:
        ordering = ["batch", "at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_ref"], name="digestevent_once"),
        ]
        indexes = [models.Index(fields=["batch", "at"], name="digestevent_batch_at")]

    def __str__(self):
        return f"{self.step_ref} event of run {self.run_id}"


class Approval(models.Model):
    """A question an `approval` step put to one person (or the `request_approval` tool), and its
    answer. The first answer from any channel wins: the row moves from `pending` once, by a
    conditional UPDATE; a later answer finds it answered. Unanswered at `expires_at`, it expires
    with the step's default decision."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for an answer"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired (no answer in time)"

    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="approvals")
    step_ref = models.CharField(max_length=64)
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="approvals")
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="approvals"
    )
    question = models.TextField()
    details = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    decision = models.CharField(
        max_length=16, choices=Decision.choices, blank=True,
        help_text="What the run goes on with: the answer, or the default once expired.")
    default_decision = models.CharField(max_length=16, choices=Decision.choices,
                                        default=Decision.REJECTED)
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    answered_via = models.CharField(max_length=16, blank=True,
                                    help_text="email, in_app, chat (Slack) or api.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["run", "step_ref"], name="approval_once_per_step"),
        ]

    def __str__(self):
        return f"{self.step_ref} of run {self.run_id}: {self.status}"
