"""Writes to the inbox."""

from notifications.models import Message

from .models import InboxItem


def inbox_item_create(*, message: Message, content: dict) -> InboxItem:
    """The InboxItem of an in_app Message (one per message)."""
    item, _ = InboxItem.objects.get_or_create(
        message=message,
        defaults={
            "recipient": message.recipient,
            "tenant": message.tenant,
            "workflow_key": message.workflow.key,
            "category": message.workflow.category,
            "content": content,
        },
    )
    return item
