"""Recipient authentication: tokens minted by the server API, HMACs, and what is refused."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.test import APIClient

from inbox.auth import inbox_hmac, inbox_principal, inbox_token_create

from .conftest import recipient_client

UNAUTHORIZED = {"error": "unauthorized", "detail": "Invalid or expired inbox token."}


def test_server_api_mints_a_token_that_opens_the_recipients_feed(api, ada, make_items):
    make_items(ada, 2)
    response = api.post("/api/v1/recipients/ada/inbox-token", {}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert set(body) == {"token", "expires_at"}
    expires_at = parse_datetime(body["expires_at"])
    assert timedelta(minutes=59) < expires_at - timezone.now() <= timedelta(hours=1)

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    feed = client.get("/api/v1/inbox/")
    assert feed.status_code == 200
    assert feed.json()["meta"]["total_count"] == 2


def test_minting_needs_a_server_api_key(ada):
    response = APIClient().post("/api/v1/recipients/ada/inbox-token", {}, format="json")
    assert response.status_code == 401


def test_minting_for_an_unknown_recipient_is_404(api):
    response = api.post("/api/v1/recipients/nobody/inbox-token", {}, format="json")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No recipient 'nobody'."}


def test_minting_for_an_unknown_tenant_names_the_field(api, ada):
    response = api.post("/api/v1/recipients/ada/inbox-token", {"tenant": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"tenant": ["Unknown tenant 'nope'."]}


def test_tenant_key_mints_only_for_its_own_tenant(acme_api, globex, ada):
    refused = acme_api.post("/api/v1/recipients/ada/inbox-token", {"tenant": "globex"},
                            format="json")
    assert refused.status_code == 403
    minted = acme_api.post("/api/v1/recipients/ada/inbox-token", {}, format="json")
    assert minted.status_code == 201
    principal = inbox_principal(token=minted.json()["token"])
    assert principal.tenant.key == "acme"


def test_hmac_headers_authenticate_the_recipient(ada, make_items):
    make_items(ada, 3)
    response = recipient_client(ada, via="hmac").get("/api/v1/inbox/")
    assert response.status_code == 200
    assert len(response.json()["items"]) == 3


def test_hmac_uses_the_configured_secret(settings, ada):
    settings.INBOX_HMAC_SECRET = "shared-with-the-app"
    import hashlib
    import hmac

    expected = hmac.new(b"shared-with-the-app", b"ada", hashlib.sha256).hexdigest()
    assert inbox_hmac("ada") == expected
    assert inbox_principal(recipient_id="ada", signature=expected).recipient == ada


@pytest.mark.parametrize("headers,detail", [
    ({}, "Authentication credentials were not provided."),
    ({"HTTP_AUTHORIZATION": "Bearer not-a-token"}, "Invalid or expired inbox token."),
    ({"HTTP_AUTHORIZATION": "Basic abc"}, "Expected 'Authorization: Bearer <inbox token>'."),
    ({"HTTP_X_CLARION_RECIPIENT": "ada", "HTTP_X_CLARION_HMAC": "0" * 64},
     "Invalid recipient HMAC."),
    ({"HTTP_X_CLARION_RECIPIENT": "ada"}, "Send both X-Clarion-Recipient and X-Clarion-Hmac."),
])
def test_without_valid_credentials_the_feed_is_401_and_empty(ada, make_items, headers, detail):
    make_items(ada, 1)
    response = APIClient().get("/api/v1/inbox/", **headers)
    assert response.status_code == 401
    assert response.json() == {"error": response.json()["error"], "detail": detail}
    assert "items" not in response.json()


def test_a_server_api_key_does_not_open_a_feed(api, ada, make_items):
    make_items(ada, 1)
    assert api.get("/api/v1/inbox/").status_code == 401


def test_an_expired_token_is_refused(settings, ada):
    token, _ = inbox_token_create(recipient=ada)
    settings.INBOX_TOKEN_TTL_SECONDS = -1
    response = APIClient().get("/api/v1/inbox/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_a_token_for_an_erased_recipient_is_refused(ada):
    token, _ = inbox_token_create(recipient=ada)
    ada.delete()
    response = APIClient().get("/api/v1/inbox/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401


def test_an_hmac_for_one_recipient_does_not_open_another(ada, bob):
    response = APIClient().get("/api/v1/inbox/", HTTP_X_CLARION_RECIPIENT="bob",
                               HTTP_X_CLARION_HMAC=inbox_hmac("ada"))
    assert response.status_code == 401


def test_a_token_signed_for_something_else_is_refused(ada):
    from django.core import signing

    forged = signing.TimestampSigner(salt="another.purpose").sign_object({"r": "ada", "t": None})
    assert inbox_principal(token=forged) is None


def test_browsers_on_other_origins_may_call_the_inbox_api(ada_client):
    response = ada_client.options("/api/v1/inbox/", HTTP_ORIGIN="https://app.example.com",
                                  HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
                                  HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-clarion-hmac")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "x-clarion-hmac" in response["Access-Control-Allow-Headers"]


def test_inbox_hmac_command_prints_the_recipients_hmac(settings):
    from io import StringIO

    from django.core.management import call_command

    settings.INBOX_HMAC_SECRET = "s3cret"
    out = StringIO()
    call_command("inbox_hmac", "user-42", stdout=out)
    assert out.getvalue().strip() == inbox_hmac("user-42")
    assert len(out.getvalue().strip()) == 64
