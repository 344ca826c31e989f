"""Who is notified, and on whose behalf: tenants, API keys, recipients, their channel data, topics
and subscriptions."""


from django.db import models
from django.db.models.functions import Upper
from django.utils.translation import gettext_lazy as _

from ..addresses import validate_display_name, validate_email_address
from .base import (
    RECIPIENT_ID_MAX_LENGTH,
    Channel,
    color_validator,
    key_validator,
    validate_recipient_id,
)


class Tenant(models.Model):
    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           verbose_name=_("key"))
    # The From display name when sender_name is blank.
    name = models.CharField(max_length=200, validators=[validate_display_name],
                            verbose_name=_("name"))
    logo_url = models.URLField(blank=True, verbose_name=_("logo URL"))
    primary_color = models.CharField(max_length=32, blank=True, help_text=_("e.g. #4f46e5"),
                                     validators=[color_validator], verbose_name=_("primary color"))
    sender_name = models.CharField(max_length=200, blank=True,
                                   validators=[validate_display_name],
                                   verbose_name=_("sender name"))
    sender_email = models.EmailField(blank=True, validators=[validate_email_address],
                                     verbose_name=_("sender email"))
    footer = models.TextField(
        blank=True, help_text=_("Shown at the bottom of every email: address, legal line…"),
        verbose_name=_("footer"),
    )
    settings = models.JSONField(default=dict, blank=True, verbose_name=_("settings"))
    retention_days = models.PositiveIntegerField(
        null=True, blank=True,
        help_text=_("Days its runs, messages, attempts, events and inbox items are kept; empty: "
                    "the global CLARION_RETENTION_DAYS; 0: forever."),
        verbose_name=_("retention days"))
    # The tenant's inbox secret (recipient HMACs for its items): {"current": …, "previous": …},
    # encrypted at rest like provider credentials. Written by inbox.services; see docs/inbox.md.
    inbox_secrets_encrypted = models.TextField(blank=True, editable=False,
                                               verbose_name=_("inbox secrets encrypted"))
    inbox_secret_rotated_at = models.DateTimeField(null=True, blank=True, editable=False,
                                                   verbose_name=_("inbox secret rotated at"))
    inbox_previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text=_("Until then, HMACs made with the previous inbox secret are still accepted."),
        verbose_name=_("inbox previous secret expires at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")
        ordering = ["key"]

    def __str__(self):
        return self.name or self.key

    @property
    def inbox_secrets(self) -> dict:
        """{"current": str, "previous": str | None}, decrypted; {} before the first one.
        ValueError if CLARION_ENCRYPTION_KEY cannot open it."""
        from ..crypto import decrypt_json

        return decrypt_json(self.inbox_secrets_encrypted)


class ApiKey(models.Model):
    """A server API key. The secret is shown once; only its SHA-256 hash is stored."""

    name = models.CharField(max_length=200, verbose_name=_("name"))
    prefix = models.CharField(max_length=32, unique=True, help_text=_("Shown to tell keys apart."),
                              verbose_name=_("prefix"))
    secret_hash = models.CharField(max_length=64, unique=True, editable=False,
                                   verbose_name=_("secret hash"))
    scopes = models.JSONField(default=list, blank=True, verbose_name=_("scopes"))
    tenant = models.ForeignKey(
        Tenant,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
        help_text=_("When set, the key sees and triggers only for this tenant."),
        verbose_name=_("tenant"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    last_used_at = models.DateTimeField(null=True, blank=True, verbose_name=_("last used at"))
    revoked_at = models.DateTimeField(null=True, blank=True, verbose_name=_("revoked at"))

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class Recipient(models.Model):
    """A person (or anything) that receives notifications, known by the app's own id."""

    external_id = models.CharField(
        _("id"), max_length=RECIPIENT_ID_MAX_LENGTH, unique=True,
        validators=[validate_recipient_id],
        help_text=_("The id your application uses: any text of 1 to 255 characters but \".\" and "
                    "\"..\", without control characters."),
    )
    name = models.CharField(max_length=255, blank=True, validators=[validate_display_name],
                            verbose_name=_("name"))
    email = models.EmailField(max_length=320, blank=True, validators=[validate_email_address],
                              verbose_name=_("email"))
    phone = models.CharField(max_length=16, blank=True, help_text=_("E.164, e.g. +15550001111"),
                             verbose_name=_("phone"))
    locale = models.CharField(max_length=35, blank=True, verbose_name=_("locale"))
    timezone = models.CharField(max_length=64, blank=True, verbose_name=_("timezone"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("recipient")
        verbose_name_plural = _("recipients")
        ordering = ["external_id"]
        indexes = [
            # The admin's Find box: a recipient by email address, in any case.
            models.Index(Upper("email"), name="recipient_email_idx"),
        ]

    def __str__(self):
        return self.external_id


class ChannelData(models.Model):
    """Per recipient and channel (and optionally provider kind): push tokens, chat webhook URLs…"""

    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="channel_data",
                                  verbose_name=_("recipient"))
    channel = models.CharField(max_length=16, choices=Channel.choices, verbose_name=_("channel"))
    provider_kind = models.CharField(
        max_length=64, blank=True,
        help_text=_("Only for providers of this kind (fcm, apns…); blank: for any of the channel."),
        verbose_name=_("provider kind"))
    data = models.JSONField(default=dict, blank=True, verbose_name=_("data"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("channel data")
        verbose_name_plural = _("channel data")
        constraints = [
            models.UniqueConstraint(
                fields=["recipient", "channel", "provider_kind"], name="channeldata_unique"
            )
        ]

    def __str__(self):
        return f"{self.recipient} · {self.channel}"


class Topic(models.Model):
    """A named audience: triggering a workflow for `{"topic": key}` fans out to its subscribers."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           verbose_name=_("key"))
    name = models.CharField(max_length=200, blank=True, verbose_name=_("name"))
    tenant = models.ForeignKey(
        Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="topics",
        verbose_name=_("tenant"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("topic")
        verbose_name_plural = _("topics")
        ordering = ["key"]

    def __str__(self):
        return self.key


class Subscription(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions",
                              verbose_name=_("topic"))
    recipient = models.ForeignKey(
        Recipient, on_delete=models.CASCADE, related_name="subscriptions",
        verbose_name=_("recipient"),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        constraints = [
            models.UniqueConstraint(fields=["topic", "recipient"], name="subscription_unique")
        ]

    def __str__(self):
        return f"{self.recipient} → {self.topic}"
