"""Event endpoints, the outbox of events, and the ledger of their deliveries and attempts."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from clarion.ids import new_id
from notifications.models import Tenant, key_validator

# Every event type an endpoint may subscribe to.
EVENT_TYPES = (
    "message.sent",
    "message.delivered",
    "message.bounced",
    "message.failed",
    "message.seen",
    "message.read",
    "message.clicked",
    "message.archived",
    "message.suppressed",
    "run.completed",
    "run.failed",
    "preferences.updated",
    "recipient.unsubscribed",
    "approval.answered",
    "approval.expired",
)


class EventEndpoint(models.Model):
    """An HTTPS URL subscribed to some event types, for one tenant's events or for all."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text=_("The endpoint's id in the API: "
                                       "/api/v1/event-endpoints/{id}."),
                           verbose_name=_("key"))
    url = models.URLField(max_length=2000, verbose_name=_("URL"))
    events = models.JSONField(default=list, help_text=_("The event types it receives."),
                              verbose_name=_("events"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="event_endpoints",
        help_text=_("When set, only this tenant's events; otherwise every event."),
        verbose_name=_("tenant"))
    secret_encrypted = models.TextField(editable=False, verbose_name=_("secret encrypted"))
    active = models.BooleanField(default=True, help_text=_("Off: its deliveries wait."),
                                 verbose_name=_("active"))
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False,
                                       verbose_name=_("disabled at"))
    disabled_reason = models.TextField(blank=True, editable=False,
                                       verbose_name=_("disabled reason"))
    failing_since = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text=_("The first failed attempt since its last success."),
        verbose_name=_("failing since"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("event endpoint")
        verbose_name_plural = _("event endpoints")
        ordering = ["key"]

    def __str__(self):
        return self.key

    @property
    def secret(self) -> str:
        """The signing secret, `whsec_…` (Standard Webhooks)."""
        from notifications.crypto import decrypt_json

        return decrypt_json(self.secret_encrypted).get("secret", "")

    @secret.setter
    def secret(self, value: str) -> None:
        from notifications.crypto import encrypt_json

        self.secret_encrypted = encrypt_json({"secret": value})


class Event(models.Model):
    """One event, written in the transaction of the change that caused it (the outbox)."""

    id = models.UUIDField(primary_key=True, default=new_id, editable=False,
                          verbose_name=_("id"))
    type = models.CharField(max_length=32, verbose_name=_("type"))
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="+", verbose_name=_("tenant"))
    recipient = models.CharField(
        max_length=255, blank=True,
        help_text=_("The recipient's id: events about one recipient are delivered in order."),
        verbose_name=_("recipient"))
    data = models.JSONField(default=dict, verbose_name=_("data"))
    created_at = models.DateTimeField(verbose_name=_("created at"))

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["created_at"]
        indexes = [models.Index(fields=["created_at"], name="event_created_idx"),
                   models.Index(fields=["recipient"], name="event_recipient_idx")]

    def __str__(self):
        return f"{self.type} {self.webhook_id}"

    @property
    def webhook_id(self) -> str:
        """The `webhook-id` header: the same on every attempt, so receivers can deduplicate."""
        return f"msg_{self.id.hex}"

    def payload(self) -> dict:
        """The body: Standard Webhooks' `{type, timestamp, data}`."""
        return {"type": self.type, "timestamp": self.created_at.isoformat(), "data": self.data}


class EventDelivery(models.Model):
    """One event for one endpoint: pending until an attempt succeeds or the retries run out."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries",
                              verbose_name=_("event"))
    endpoint = models.ForeignKey(EventEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries", verbose_name=_("endpoint"))
    ordering_key = models.CharField(max_length=255, blank=True, verbose_name=_("ordering key"))
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING,
                              verbose_name=_("status"))
    attempts = models.PositiveIntegerField(default=0, verbose_name=_("attempts"))
    next_attempt_at = models.DateTimeField(verbose_name=_("next attempt at"))
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text=_("A worker is sending it until then."),
        verbose_name=_("lease until"))
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True,
                                                        verbose_name=_("last status code"))
    last_error = models.TextField(blank=True, verbose_name=_("last error"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("event delivery")
        verbose_name_plural = _("event deliveries")
        ordering = ["-id"]
        indexes = [
            # The head of each recipient's line, per endpoint.
            models.Index(fields=["endpoint", "ordering_key", "id"],
                         condition=Q(status="pending"), name="eventdelivery_pending_idx"),
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"),
                         name="eventdelivery_due_idx"),
        ]

    def __str__(self):
        return f"{self.event.type} → {self.endpoint.key} ({self.status})"


class EventAttempt(models.Model):
    """One HTTP request of a delivery."""

    delivery = models.ForeignKey(EventDelivery, on_delete=models.CASCADE,
                                 related_name="delivery_attempts", verbose_name=_("delivery"))
    started_at = models.DateTimeField(verbose_name=_("started at"))
    duration_ms = models.PositiveIntegerField(null=True, blank=True, verbose_name=_("duration ms"))
    status_code = models.PositiveSmallIntegerField(null=True, blank=True,
                                                   verbose_name=_("status code"))
    succeeded = models.BooleanField(default=False, verbose_name=_("succeeded"))
    response = models.TextField(blank=True, help_text=_("The first 2,000 characters."),
                                verbose_name=_("response"))
    error = models.TextField(blank=True, verbose_name=_("error"))

    class Meta:
        verbose_name = _("event attempt")
        verbose_name_plural = _("event attempts")
        ordering = ["delivery", "started_at", "id"]

    def __str__(self):
        return f"{self.status_code or self.error[:40]}"
