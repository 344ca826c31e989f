"""Writes to the inbox."""

from notifications.models import Message

from .models import InboxItem


def inbox_item_create(*, message: Message, content: dict) -> InboxItem:
    """The InboxItem of a new in_app Message (one per message: the column is unique)."""
    return InboxItem.objects.create(
        message=message,
        recipient=message.recipient,
        tenant=message.tenant,
        workflow_key=message.workflow.key,
        category=message.workflow.category,
        content=content,
    )
