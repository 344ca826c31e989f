from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class InboxItem(models.Model):
    """One in-app notification. Ordered by id (monotonic), so feeds page by keyset on id."""

    recipient = models.ForeignKey(
        "notifications.Recipient", on_delete=models.CASCADE, related_name="inbox_items"
    )
    tenant = models.ForeignKey(
        "notifications.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="inbox_items",
    )
    message = models.OneToOneField(
        "notifications.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbox_item",
    )
    workflow_key = models.CharField(max_length=128, blank=True)
    category = models.CharField(max_length=128, blank=True)
    tags = models.JSONField(default=list, blank=True)
    content = models.JSONField(default=dict, blank=True, help_text="body, action_url, avatar…")
    seen_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("inbox item")
        verbose_name_plural = _("inbox items")
        ordering = ["-id"]
        indexes = [
            # The feed: newest first for one recipient, keyset on id.
            models.Index(fields=["recipient", "-id"], name="inbox_feed_idx"),
            # total_count (items not archived). Keyed on (recipient, tenant) without the id, the
            # entries of one recipient deduplicate into a few pages: an index-only count.
            models.Index(
                fields=["recipient", "tenant"],
                condition=Q(archived_at__isnull=True),
                name="inbox_active_idx",
            ),
            # Unread / unseen badges: small partial indexes, counted without touching the heap rows
            # of read items, per recipient or per recipient and tenant.
            models.Index(
                fields=["recipient", "tenant"],
                condition=Q(read_at__isnull=True, archived_at__isnull=True),
                name="inbox_unread_idx",
            ),
            models.Index(
                fields=["recipient", "tenant"],
                condition=Q(seen_at__isnull=True, archived_at__isnull=True),
                name="inbox_unseen_idx",
            ),
        ]

    def __str__(self):
        return f"#{self.pk} for {self.recipient.external_id}"
