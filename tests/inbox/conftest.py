"""Inbox fixtures: recipients with items, and API clients that authenticate as a recipient."""

import pytest
from rest_framework.test import APIClient

from inbox.auth import inbox_hmac, inbox_token_create
from inbox.models import InboxItem
from inbox.services import tenant_inbox_secret_rotate
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


def tenant_secret(tenant) -> str:
    """The tenant's current inbox secret; one is made first if it has none."""
    return tenant.inbox_secrets.get("current") or tenant_inbox_secret_rotate(tenant=tenant)


def recipient_client(recipient, tenant=None, *, via="token") -> APIClient:
    """A JSON API client authenticated as the recipient: a token (for `tenant`, if given), or
    HMAC headers (made with `tenant`'s inbox secret and naming it, else the global secret)."""
    client = APIClient()
    client.default_format = "json"
    if via == "token":
        token, _ = inbox_token_create(recipient=recipient, tenant=tenant)
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        secret = tenant_secret(tenant) if tenant is not None else None
        client.credentials(HTTP_X_CLARION_RECIPIENT=recipient.external_id,
                           HTTP_X_CLARION_HMAC=inbox_hmac(recipient.external_id, secret),
                           **({"HTTP_X_CLARION_TENANT": tenant.key} if tenant else {}))
    return client


@pytest.fixture
def ada_client(ada):
    return recipient_client(ada)
