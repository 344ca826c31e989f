"""InboxItems are a ledger the engine writes: the admin shows them, never adds or changes them."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from clarion.admin import LedgerAdmin, pretty_json

from .models import InboxItem


@admin.register(InboxItem)
class InboxItemAdmin(LedgerAdmin):
    uuid_search_fields = ("message_id",)
    list_display = ("id", "recipient", "workflow_key", "tenant", "is_seen", "is_read",
                    "is_archived", "created_at")
    list_filter = ("workflow_key", "category", "tenant")
    list_select_related = ("recipient", "tenant")
    search_fields = ("recipient__external_id__exact", "workflow_key__exact")
    search_help_text = _("A recipient id, a workflow key or a message id (exact).")
    fields = ("id", "recipient", "tenant", "message", "workflow_key", "category", "tags",
              "created_at", "seen_at", "read_at", "archived_at", "content_json")
    readonly_fields = fields

    @admin.display(boolean=True, description=_("seen"))
    def is_seen(self, obj):
        return obj.seen_at is not None

    @admin.display(boolean=True, description=_("read"))
    def is_read(self, obj):
        return obj.read_at is not None

    @admin.display(boolean=True, description=_("archived"))
    def is_archived(self, obj):
        return obj.archived_at is not None

    @admin.display(description=_("content"))
    def content_json(self, obj):
        return pretty_json(obj.content)
