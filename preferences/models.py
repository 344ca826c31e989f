"""Preference rows. Behaviour lives in resolution.py (pure) and services.py (writes)."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from notifications.models import Recipient, Tenant, Workflow, key_validator


class PreferenceSet(models.Model):
    """One set of choices in Knock's PreferenceSet shape.

    - recipient, no tenant: the person's own choices, everywhere;
    - recipient and tenant: the person's choices for that tenant (win over their own set);
    - tenant, no recipient: the tenant's default, for people who have not decided.

    `channel_types` is {channel: bool}; `categories` and `workflows` map a key to a bool or to
    {"channel_types": {channel: bool}}. `quiet_hours` is null (inherit), false (none, even if a
    tenant default has some) or {"start": "22:00", "end": "08:00"} in the person's time zone.
    """

    recipient = models.ForeignKey(Recipient, null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="preference_sets", verbose_name=_("recipient"))
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE,
                               related_name="preference_sets", verbose_name=_("tenant"))
    channel_types = models.JSONField(default=dict, blank=True, verbose_name=_("channel types"))
    categories = models.JSONField(default=dict, blank=True, verbose_name=_("categories"))
    workflows = models.JSONField(default=dict, blank=True, verbose_name=_("workflows"))
    quiet_hours = models.JSONField(null=True, blank=True, verbose_name=_("quiet hours"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("preference set")
        verbose_name_plural = _("preference sets")
        ordering = ["recipient", "tenant"]
        constraints = [
            models.CheckConstraint(
                condition=Q(recipient__isnull=False) | Q(tenant__isnull=False),
                name="preferenceset_has_owner",
                violation_error_message="A preference set belongs to a recipient, a tenant or "
                                        "both.",
            ),
            models.UniqueConstraint(fields=["recipient", "tenant"],
                                    condition=Q(recipient__isnull=False, tenant__isnull=False),
                                    name="preferenceset_recipient_tenant_unique"),
            models.UniqueConstraint(fields=["recipient"], condition=Q(tenant__isnull=True),
                                    name="preferenceset_recipient_unique"),
            models.UniqueConstraint(fields=["tenant"], condition=Q(recipient__isnull=True),
                                    name="preferenceset_tenant_default_unique"),
        ]

    def __str__(self):
        if self.recipient_id is None:
            return f"default for tenant {self.tenant}"
        if self.tenant_id is None:
            return f"{self.recipient}"
        return f"{self.recipient} in tenant {self.tenant}"

    @property
    def scope(self) -> str:
        """Which kind of set this is, as named in a decision's rule."""
        if self.recipient_id is None:
            return "tenant_default"
        return "recipient_tenant" if self.tenant_id else "recipient"


class WorkflowDefault(models.Model):
    """How a workflow ships: channels off until the person turns them on."""

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE,
                                    related_name="preference_default", verbose_name=_("workflow"))
    channel_types = models.JSONField(
        default=dict, blank=True, help_text=_('e.g. {"sms": false}: SMS is off unless opted in.'),
        verbose_name=_("channel types"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("workflow default")
        verbose_name_plural = _("workflow defaults")

    def __str__(self):
        return f"default for {self.workflow.key}"


class Category(models.Model):
    """The name people see in the preference center for a workflow category key."""

    key = models.CharField(max_length=128, unique=True, validators=[key_validator],
                           help_text=_("The `category` of the workflows it groups."),
                           verbose_name=_("key"))
    name = models.CharField(max_length=200, verbose_name=_("name"))
    description = models.CharField(max_length=500, blank=True, verbose_name=_("description"))
    position = models.PositiveIntegerField(default=0, verbose_name=_("position"))

    class Meta:
        verbose_name = _("category")
        verbose_name_plural = _("categories")
        ordering = ["position", "key"]

    def __str__(self):
        return self.name or self.key
