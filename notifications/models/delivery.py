"""Messages and their delivery: provider configurations, delivery attempts, provider status events,
and the counters of throttles and rate limits."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clarion.ids import new_id

from .audience import Recipient, Tenant
from .base import Channel, key_validator
from .runs import Run
from .workflows import Step, TemplateVersion, Workflow


class Message(models.Model):
    """One channel step for one recipient. Keyed by (run, step, channel): the idempotency
    record (a channel step sends on its one channel; a route step once per channel)."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        OPENED = "opened", _("Opened")
        CLICKED = "clicked", _("Clicked")
        COMPLAINED = "complained", _("Complained (marked as spam)")
        BOUNCED = "bounced", _("Bounced")
        FAILED = "failed", _("Failed")
        UNDELIVERABLE = "undeliverable", _("Undeliverable")
        SUPPRESSED = "suppressed", _("Suppressed")
        CANCELLED = "cancelled", _("Cancelled")

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    # No index of their own on run, recipient and tenant: each is the first column of one
    # below (message_once_per_step_channel, message_recipient_idx, message_log_tenant_idx),
    # which serves every lookup by it, and one index less is written per message.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="messages",
                            db_index=False, verbose_name=_("run"))
    step = models.ForeignKey(
        Step, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages",
        verbose_name=_("step"),
    )
    step_ref = models.CharField(max_length=64, verbose_name=_("step ref"))
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="messages",
                                  db_index=False, verbose_name=_("recipient"))
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="messages",
                                 verbose_name=_("workflow"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.PROTECT, related_name="messages",
        db_index=False, verbose_name=_("tenant"),
    )
    channel = models.CharField(max_length=16, choices=Channel.choices, verbose_name=_("channel"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED,
                              verbose_name=_("status"))
    to = models.CharField(max_length=320, blank=True, help_text=_("Address it was sent to."),
                          verbose_name=_("to"))
    content = models.JSONField(default=dict, blank=True, help_text=_("Rendered fields."),
                               verbose_name=_("content"))
    template_version = models.ForeignKey(
        TemplateVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        verbose_name=_("template version"),
    )
    provider = models.CharField(max_length=128, blank=True, verbose_name=_("provider"))
    provider_message_id = models.CharField(max_length=255, blank=True, db_index=True,
                                           verbose_name=_("provider message id"))
    estimated_cost = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text=_("What the send that succeeded is estimated to cost (its provider's cost "
          "options), in cost_currency; null: not sent, or the provider has no price."),
        verbose_name=_("estimated cost"))
    cost_currency = models.CharField(max_length=3, blank=True, help_text=_("ISO 4217, e.g. USD."),
                                     verbose_name=_("cost currency"))
    attempts = models.PositiveIntegerField(
        default=0, help_text=_("Delivery passes of the current send (each may call several "
          "providers); back to 0 when the message is resent."), verbose_name=_("attempts"))
    send_number = models.PositiveIntegerField(
        default=1, help_text=_("The current send: 1, then one more each time it is resent. "
          "Delivery reads only the current send's attempts."), verbose_name=_("send number"))
    next_attempt_at = models.DateTimeField(null=True, blank=True, verbose_name=_("next attempt at"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))
    sent_at = models.DateTimeField(null=True, blank=True, verbose_name=_("sent at"))
    delivered_at = models.DateTimeField(null=True, blank=True, verbose_name=_("delivered at"))
    seen_at = models.DateTimeField(null=True, blank=True, verbose_name=_("seen at"))
    read_at = models.DateTimeField(null=True, blank=True, verbose_name=_("read at"))
    clicked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("clicked at"))
    # Set from provider status events (notifications/delivery/status.py), first time only.
    opened_at = models.DateTimeField(null=True, blank=True, verbose_name=_("opened at"))
    bounced_at = models.DateTimeField(null=True, blank=True, verbose_name=_("bounced at"))
    complained_at = models.DateTimeField(null=True, blank=True, verbose_name=_("complained at"))

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
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
        # The recipient's own id, never the row's primary key (the admin titles pages with it),
        # in the admin's language.
        return _("%(channel)s to %(address)s (%(status)s)") % {
            "channel": self.get_channel_display(), "status": self.get_status_display().lower(),
            "address": self.to or self.recipient.external_id}


class ProviderConfig(models.Model):
    """One provider account for one channel: kind, encrypted credentials, priority, tenant.

    A channel's providers are tried in order: the message's tenant's own first, then the global
    ones (no tenant), each group by `priority` (lower first). The circuit-breaker columns are
    shared by every worker process (see notifications/providers/breaker.py).
    """

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text=_("The provider key: how messages, callbacks and the API "
                                       "name this provider."), verbose_name=_("key"))
    channel = models.CharField(max_length=16, choices=Channel.choices, verbose_name=_("channel"))
    kind = models.CharField(max_length=64, help_text=_("The provider kind: which service it is "
                                                       "(twilio, vonage, slack_webhook, smtp…)."),
                            verbose_name=_("kind"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="providers",
        help_text=_("When set, used only for this tenant's messages (before the global ones)."),
        verbose_name=_("tenant"),
    )
    priority = models.PositiveSmallIntegerField(default=1, help_text=_("Lower is tried first."),
                                                verbose_name=_("priority"))
    active = models.BooleanField(default=True, verbose_name=_("active"))
    credentials_encrypted = models.TextField(blank=True, editable=False,
                                             verbose_name=_("credentials encrypted"))
    options = models.JSONField(default=dict, blank=True, help_text=_('e.g. {"base_url": "…"}'),
                               verbose_name=_("options"))
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False,
                                                       verbose_name=_("consecutive failures"))
    circuit_open_until = models.DateTimeField(null=True, blank=True, editable=False,
                                              verbose_name=_("circuit open until"))
    last_error = models.TextField(blank=True, editable=False, verbose_name=_("last error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("provider")
        verbose_name_plural = _("providers")
        ordering = ["channel", "priority", "key"]
        indexes = [
            models.Index(fields=["channel", "active", "priority"], name="providerconfig_pick_idx")
        ]

    def __str__(self):
        return f"{self.key} ({self.channel}/{self.kind})"

    @property
    def credentials(self) -> dict:
        from ..crypto import decrypt_json

        return decrypt_json(self.credentials_encrypted)

    @credentials.setter
    def credentials(self, value: dict) -> None:
        from ..crypto import encrypt_json

        self.credentials_encrypted = encrypt_json(dict(value or {}))


class DeliveryAttempt(models.Model):
    """One provider call, written before it starts and completed after it returns."""

    class Outcome(models.TextChoices):
        STARTED = "started", _("Started")
        SUCCEEDED = "succeeded", _("Succeeded")
        TRANSIENT_ERROR = "transient_error", _("Transient error")
        PERMANENT_ERROR = "permanent_error", _("Permanent error")
        UNKNOWN = "unknown", _("Unknown (worker stopped)")
        # The provider accepted the message, then its status callback said the carrier did not
        # deliver it (written when Clarion fails over to the next provider because of it).
        CARRIER_REFUSED = "carrier_refused", _("Refused by the carrier after acceptance")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="delivery_attempts",
                                verbose_name=_("message"))
    provider = models.CharField(
        max_length=128, help_text=_("The provider key: a configured provider's, or a built-in "
          "default's (smtp, webhook)."), verbose_name=_("provider"))
    provider_kind = models.CharField(max_length=64, blank=True,
                                     help_text=_("The provider kind: twilio, postmark, fcm…"),
                                     verbose_name=_("provider kind"))
    started_at = models.DateTimeField(verbose_name=_("started at"))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True,
                                                   verbose_name=_("status code"))
    duration_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("duration ms"))
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.STARTED,
                               verbose_name=_("outcome"))
    request = models.JSONField(default=dict, blank=True, help_text=_("Redacted."),
                               verbose_name=_("request"))
    response = models.JSONField(default=dict, blank=True, verbose_name=_("response"))
    error = models.TextField(blank=True, verbose_name=_("error"))
    estimated_cost = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True,
        help_text=_("For a succeeded call: the provider's price for it (its cost options: per "
          "message, per SMS segment, per country), in cost_currency. Null: no price set."),
        verbose_name=_("estimated cost"))
    cost_currency = models.CharField(max_length=3, blank=True, help_text=_("ISO 4217, e.g. USD."),
                                     verbose_name=_("cost currency"))
    send_number = models.PositiveIntegerField(
        default=1, help_text=_("The send of its message this call belongs to (the message's "
          "send_number when it was made): 1, then one more per resend."),
        verbose_name=_("send number"))

    class Meta:
        verbose_name = _("delivery attempt")
        verbose_name_plural = _("delivery attempts")
        ordering = ["message", "started_at", "id"]
        # /metrics: the provider calls started in its window.
        indexes = [models.Index(fields=["started_at"], name="deliveryattempt_started_idx")]

    def __str__(self):
        return f"{self.provider} {self.outcome}"


class MessageEvent(models.Model):
    """One delivery-status event a provider reported about a message (anymail tracking, Twilio
    and Vonage callbacks), normalised to `kind`, with the provider's raw payload beside it."""

    class Kind(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        DEFERRED = "deferred", _("Deferred")
        DELIVERED = "delivered", _("Delivered")
        OPENED = "opened", _("Opened")
        CLICKED = "clicked", _("Clicked")
        COMPLAINED = "complained", _("Complained")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        BOUNCED = "bounced", _("Bounced")
        REJECTED = "rejected", _("Rejected")
        FAILED = "failed", _("Failed")
        UNKNOWN = "unknown", _("Unknown")

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events",
                                verbose_name=_("message"))
    provider_kind = models.CharField(max_length=64,
                                     help_text=_("The provider kind that reported it: twilio…"),
                                     verbose_name=_("provider kind"))
    kind = models.CharField(max_length=16, choices=Kind.choices, verbose_name=_("kind"))
    provider_message_id = models.CharField(max_length=255, blank=True,
                                           verbose_name=_("provider message id"))
    event_id = models.CharField(
        max_length=255,
        help_text=_("The provider's id for the event, else a digest of its payload."),
        verbose_name=_("event id"),
    )
    occurred_at = models.DateTimeField(verbose_name=_("occurred at"))
    received_at = models.DateTimeField(auto_now_add=True, verbose_name=_("received at"))
    description = models.TextField(blank=True, verbose_name=_("description"))
    raw = models.JSONField(default=dict, blank=True, help_text=_("The provider's payload as sent."),
                           verbose_name=_("raw"))

    class Meta:
        verbose_name = _("status event")
        verbose_name_plural = _("status events")
        ordering = ["message", "occurred_at", "id"]
        constraints = [
            # A provider that re-sends an event (its retry after a timeout) adds nothing.
            models.UniqueConstraint(fields=["provider_kind", "event_id"],
                                    name="messageevent_once")
        ]

    def __str__(self):
        return f"{self.provider_kind} {self.kind}"


class ThrottleCounter(models.Model):
    """The runs a throttle step let through for one bucket (workflow, step, recipient, tenant and
    the step's key value, hashed into `key`) within its window: their times, oldest first. The
    row is locked while a run is counted, so every process counts against the same list."""

    key = models.CharField(max_length=64, unique=True, verbose_name=_("key"))
    passed = models.JSONField(default=list, blank=True, verbose_name=_("passed"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    def __str__(self):
        return self.key


class RateLimitCounter(models.Model):
    """Calls counted against one rate limit (`key`, e.g. "api-trigger:<api key prefix>" or
    "sms:<phone>") in one fixed window. In the database so that every web and worker process
    counts together; a key keeps only its current window's row."""

    key = models.CharField(max_length=200, verbose_name=_("key"))
    window_start = models.DateTimeField(verbose_name=_("window start"))
    count = models.PositiveIntegerField(default=0, verbose_name=_("count"))

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key", "window_start"], name="rate_limit_window")
        ]

    def __str__(self):
        return f"{self.key} {self.window_start:%Y-%m-%d %H:%M:%S}: {self.count}"
