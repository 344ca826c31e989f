"""What preferences add to an email: the RFC 8058 one-click unsubscribe headers."""

from .tokens import unsubscribe_url


def unsubscribe_headers(message) -> dict[str, str]:
    """`List-Unsubscribe` + `List-Unsubscribe-Post` for a non-critical email Message; none for
    critical ones (nobody may opt out of them). The link opts out of the workflow's category on
    email, for the message's tenant."""
    workflow = message.workflow
    if workflow.critical:
        return {}
    url = unsubscribe_url(recipient_id=message.recipient_id, tenant_id=message.tenant_id,
                          workflow_key=workflow.key, category=workflow.category)
    return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
