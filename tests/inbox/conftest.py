"""Inbox fixtures: recipients with items, and API clients that authenticate as a recipient."""

import pytest
from rest_framework.test import APIClient

from inbox.auth import inbox_hmac, inbox_token_create
from inbox.models import InboxItem
from notifications.models import Recipient


@pytest.fixture
def ada(db):
    return Recipient.objects.create(external_id="ada", name="Ada")


@pytest.fixture
def bob(db):
    return Recipient.objects.create(external_id="bob", name="Bob")


@pytest.fixture
def make_items(db):
    """make_items(recipient, n, **fields) → n InboxItems, oldest first (ids ascending)."""

    def make(recipient, n=1, **fields):
        fields.setdefault("workflow_key", "welcome")
        items = [InboxItem(recipient=recipient, content={"body": f"item {i}"}, **fields)
                 for i in range(n)]
        return InboxItem.objects.bulk_create(items)

    return make


def recipient_client(recipient, tenant=None, *, via="token") -> APIClient:
    """A JSON API client authenticated as the recipient (token, or HMAC headers)."""
    client = APIClient()
    client.default_format = "json"
    if via == "token":
        token, _ = inbox_token_create(recipient=recipient, tenant=tenant)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        client.credentials(HTTP_X_CLARION_RECIPIENT=recipient.external_id,
                           HTTP_X_CLARION_HMAC=inbox_hmac(recipient.external_id))
    return client


@pytest.fixture
def ada_client(ada):
    return recipient_client(ada)
