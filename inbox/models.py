from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class InboxItem(models.Model):
    """One in-app notification. Ordered by id (monotonic), so feeds page by keyset on id."""

    # No index of its own: inbox_feed_idx (recipient, -id) serves every lookup by recipient.
    recipient = models.ForeignKey(
        "notifications.Recipient", on_delete=models.CASCADE, related_name="inbox_items",
        db_index=False, verbose_name=_("recipient"),
    )
    tenant = models.ForeignKey(
        "notifications.Tenant",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="inbox_items",
        verbose_name=_("tenant"),
    )
    message = models.OneToOneField(
        "notifications.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="inbox_item",
        verbose_name=_("message"),
    )
    workflow_key = models.CharField(max_length=128, blank=True, verbose_name=_("workflow key"))
    category = models.CharField(max_length=128, blank=True, verbose_name=_("category"))
    tags = models.JSONField(default=list, blank=True, verbose_name=_("tags"))
    content = models.JSONField(default=dict, blank=True, help_text=_("body, action_url, avatar…"),
                               verbose_name=_("content"))
    seen_at = models.DateTimeField(null=True, blank=True, verbose_name=_("seen at"))
    read_at = models.DateTimeField(null=True, blank=True, verbose_name=_("read at"))
    archived_at = models.DateTimeField(null=True, blank=True, verbose_name=_("archived at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

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
