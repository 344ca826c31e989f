"""Per-tenant inbox secrets: an HMAC made with a tenant's secret opens only that tenant's items,
the global secret only the items without a tenant; rotation keeps the previous secret for a
window; secrets are stored encrypted, shown once (API, admin) and printed by `inbox_hmac`."""

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from inbox.auth import inbox_hmac, inbox_principal
from inbox.models import InboxItem
from inbox.services import tenant_inbox_secret_rotate
from notifications.models import Tenant

from ..conftest import invalid
from .conftest import recipient_client

UNAUTHORIZED = {"error": "unauthorized", "detail": "Invalid recipient HMAC."}
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def hmac_client(recipient_id: str, signature: str, tenant_key: str | None = None) -> APIClient:
    client = APIClient()
    client.default_format = "json"
    client.credentials(HTTP_X_CLARION_RECIPIENT=recipient_id, HTTP_X_CLARION_HMAC=signature,
                       **({"HTTP_X_CLARION_TENANT": tenant_key} if tenant_key else {}))
    return client


def ids(response) -> set[int]:
    return {item["id"] for item in response.json()["items"]}


@pytest.fixture
def spread(ada, acme, globex, make_items):
    """Ada's items: two of acme, one of globex, one without a tenant."""
    return {"acme": make_items(ada, 2, tenant=acme), "globex": make_items(ada, 1, tenant=globex),
            "none": make_items(ada, 1)}


def test_a_tenant_secret_is_stored_encrypted(acme):
    secret = tenant_inbox_secret_rotate(tenant=acme)
    stored = Tenant.objects.get(pk=acme.pk)
    assert len(secret) >= 40
    assert secret not in stored.inbox_secrets_encrypted
    assert stored.inbox_secrets == {"current": secret, "previous": None}
    assert stored.inbox_previous_secret_expires_at is None


def test_a_tenant_hmac_sees_and_marks_only_that_tenants_items(ada, acme, spread):
    client = recipient_client(ada, acme, via="hmac")
    feed = client.get("/api/v1/inbox/")
    assert feed.status_code == 200
    assert ids(feed) == {item.pk for item in spread["acme"]}
    assert feed.json()["meta"]["total_count"] == 2
    assert client.get("/api/v1/inbox/counts").json()["unread_count"] == 2
    other = spread["globex"][0]
    assert client.post(f"/api/v1/inbox/items/{other.pk}/read").status_code == 404
    newest = max(item.pk for items in spread.values() for item in items)
    assert client.post("/api/v1/inbox/read", {"up_to": newest}).json()["updated"] == 2
    assert set(InboxItem.objects.filter(read_at__isnull=False)
               .values_list("id", flat=True)) == {item.pk for item in spread["acme"]}
    refused = client.get("/api/v1/inbox/", {"tenant": "globex"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "detail": (
        "This HMAC was made with the inbox secret of tenant 'acme': it opens only that "
        "tenant's items.")}


def test_another_tenants_secret_is_refused(ada, acme, globex, spread):
    tenant_inbox_secret_rotate(tenant=acme)
    globex_secret = tenant_inbox_secret_rotate(tenant=globex)
    signature = inbox_hmac("ada", globex_secret)
    for tenant_key in ("acme", None, "nope"):  # acme's, the global secret's, an unknown tenant
        response = hmac_client("ada", signature, tenant_key).get("/api/v1/inbox/")
        assert response.status_code == 401, tenant_key
        assert response.json() == UNAUTHORIZED
    assert hmac_client("ada", signature, "globex").get("/api/v1/inbox/").status_code == 200


def test_a_tenant_without_an_inbox_secret_accepts_no_hmac(ada, acme):
    for secret in (None, ""):  # the global secret, an empty key
        response = hmac_client("ada", inbox_hmac("ada", secret), "acme").get("/api/v1/inbox/")
        assert response.status_code == 401
        assert response.json() == UNAUTHORIZED


def test_the_global_secret_opens_only_items_without_a_tenant(ada, spread):
    client = recipient_client(ada, via="hmac")
    feed = client.get("/api/v1/inbox/")
    assert ids(feed) == {spread["none"][0].pk}
    assert feed.json()["meta"] == {"unread_count": 1, "unseen_count": 1, "total_count": 1}
    assert client.post(f"/api/v1/inbox/items/{spread['acme'][0].pk}/read").status_code == 404
    newest = max(item.pk for items in spread.values() for item in items)
    assert client.post("/api/v1/inbox/read", {"up_to": newest}).json()["updated"] == 1
    refused = client.get("/api/v1/inbox/counts", {"tenant": "acme"})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden", "detail": (
        "This HMAC was made with the global inbox secret: it opens only the items without a "
        "tenant. Make it with the tenant's inbox secret and send X-Clarion-Tenant.")}


def test_the_previous_secret_works_during_the_rotation_window_and_not_after(ada, acme):
    """A controlled clock: the first secret at T0, rotated an hour later with a one-hour
    window."""
    old = tenant_inbox_secret_rotate(tenant=acme, now=T0)
    rotated_at = T0 + timedelta(hours=1)
    new = tenant_inbox_secret_rotate(tenant=acme, keep_previous_seconds=3600, now=rotated_at)
    window_end = rotated_at + timedelta(hours=1)
    assert acme.inbox_previous_secret_expires_at == window_end

    def principal(secret, now):
        return inbox_principal(recipient_id="ada", signature=inbox_hmac("ada", secret),
                               tenant_key="acme", now=now)

    during = principal(old, window_end - timedelta(seconds=1))
    assert (during.recipient, during.tenant, during.expires_at) == (ada, acme, window_end)
    assert principal(old, window_end) is None
    assert principal(old, window_end + timedelta(days=30)) is None
    for now in (rotated_at, window_end, window_end + timedelta(days=30)):
        assert principal(new, now).expires_at is None  # the current secret has no end


def test_over_the_api_the_previous_secret_works_until_its_window_ends(ada, acme):
    old = tenant_inbox_secret_rotate(tenant=acme)
    new = tenant_inbox_secret_rotate(tenant=acme)  # the default window: a day
    assert hmac_client("ada", inbox_hmac("ada", old), "acme").get(
        "/api/v1/inbox/").status_code == 200
    # Rotated two hours ago with a one-hour window: the window is over.
    tenant_inbox_secret_rotate(tenant=acme, keep_previous_seconds=3600,
                               now=timezone.now() - timedelta(hours=2))
    newest = acme.inbox_secrets["current"]
    assert hmac_client("ada", inbox_hmac("ada", new), "acme").get(
        "/api/v1/inbox/").json() == UNAUTHORIZED
    assert hmac_client("ada", inbox_hmac("ada", newest), "acme").get(
        "/api/v1/inbox/").status_code == 200


def test_replacing_the_secret_ends_the_previous_one_at_once(ada, acme):
    old = tenant_inbox_secret_rotate(tenant=acme)
    tenant_inbox_secret_rotate(tenant=acme, keep_previous_seconds=0)
    assert acme.inbox_previous_secret_expires_at is None
    assert hmac_client("ada", inbox_hmac("ada", old), "acme").get(
        "/api/v1/inbox/").status_code == 401


def test_a_second_rotation_drops_the_oldest_secret(ada, acme):
    first = tenant_inbox_secret_rotate(tenant=acme)
    second = tenant_inbox_secret_rotate(tenant=acme)
    tenant_inbox_secret_rotate(tenant=acme)
    assert hmac_client("ada", inbox_hmac("ada", first), "acme").get(
        "/api/v1/inbox/").status_code == 401
    assert hmac_client("ada", inbox_hmac("ada", second), "acme").get(
        "/api/v1/inbox/").status_code == 200


def test_a_secret_the_encryption_key_cannot_open_is_a_401_never_a_500(clarion_settings, ada, acme):
    clarion_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    secret = tenant_inbox_secret_rotate(tenant=acme)
    clarion_settings(ENCRYPTION_KEYS=[Fernet.generate_key().decode()])
    response = hmac_client("ada", inbox_hmac("ada", secret), "acme").get("/api/v1/inbox/")
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_a_browser_may_send_the_tenant_header_cross_origin(ada):
    response = APIClient().options("/api/v1/inbox/", HTTP_ORIGIN="https://app.example.com",
                                   HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
                                   HTTP_ACCESS_CONTROL_REQUEST_HEADERS="x-clarion-tenant")
    assert response.status_code == 200
    assert "x-clarion-tenant" in response["Access-Control-Allow-Headers"]


# --- the server API ----------------------------------------------------------------------------

def test_the_server_api_rotates_a_tenants_secret_and_shows_it_once(api, ada, acme):
    first = api.post("/api/v1/tenants/acme/inbox-secret", {})
    assert first.status_code == 201, first.json()
    body = first.json()
    assert set(body) == {"secret", "rotated_at", "previous_expires_at"}
    assert body["previous_expires_at"] is None
    assert hmac_client("ada", inbox_hmac("ada", body["secret"]), "acme").get(
        "/api/v1/inbox/").status_code == 200

    second = api.post("/api/v1/tenants/acme/inbox-secret", {"keep_previous_seconds": 60}).json()
    rotated_at = datetime.fromisoformat(second["rotated_at"])
    assert datetime.fromisoformat(second["previous_expires_at"]) == rotated_at + timedelta(
        seconds=60)
    assert second["secret"] != body["secret"]
    detail = api.get("/api/v1/tenants/acme")
    assert detail.status_code == 200
    assert body["secret"] not in detail.content.decode()
    assert second["secret"] not in detail.content.decode()


def test_a_tenant_key_rotates_only_its_own_tenants_secret(acme_api, acme, globex):
    refused = acme_api.post("/api/v1/tenants/globex/inbox-secret", {})
    assert refused.status_code == 403
    assert refused.json() == {"error": "forbidden",
                              "detail": "This API key is restricted to another tenant."}
    assert Tenant.objects.get(pk=globex.pk).inbox_secrets_encrypted == ""
    assert acme_api.post("/api/v1/tenants/acme/inbox-secret", {}).status_code == 201


@pytest.mark.parametrize("body,fields", [
    ({"keep_previous_seconds": -1}, {"keep_previous_seconds": [
        "Ensure this value is greater than or equal to 0."]}),
    ({"keep_previous_seconds": "soon"}, {"keep_previous_seconds": [
        "A valid integer is required."]}),
])
def test_a_bad_rotation_window_is_a_400_naming_it(api, acme, body, fields):
    response = api.post("/api/v1/tenants/acme/inbox-secret", body)
    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert Tenant.objects.get(pk=acme.pk).inbox_secrets_encrypted == ""


def test_rotating_the_secret_of_an_unknown_tenant_is_404(api):
    response = api.post("/api/v1/tenants/nope/inbox-secret", {})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No tenant 'nope'."}


# --- the admin and the command -------------------------------------------------------------------

def test_the_admin_shows_a_new_secret_once(admin_client, ada, acme):
    response = admin_client.post("/admin/notifications/tenant/", {
        "action": "rotate_inbox_secret", "_selected_action": [acme.pk]}, follow=True)
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 1
    secret = re.search(r"“acme” is (\S+) — copy it now", shown[0]).group(1)
    assert Tenant.objects.get(pk=acme.pk).inbox_secrets["current"] == secret
    assert hmac_client("ada", inbox_hmac("ada", secret), "acme").get(
        "/api/v1/inbox/").status_code == 200

    change = admin_client.get(f"/admin/notifications/tenant/{acme.pk}/change/")
    assert change.status_code == 200
    assert secret not in change.content.decode()
    assert "(shown only when made)" in change.content.decode()

    replaced = admin_client.post("/admin/notifications/tenant/", {
        "action": "replace_inbox_secret", "_selected_action": [acme.pk]}, follow=True)
    assert "The previous one no longer works." in str(list(replaced.context["messages"])[0])
    assert hmac_client("ada", inbox_hmac("ada", secret), "acme").get(
        "/api/v1/inbox/").status_code == 401


def test_inbox_hmac_command_uses_the_tenants_current_secret(acme):
    out = StringIO()
    with pytest.raises(CommandError, match="Tenant 'acme' has no inbox secret yet"):
        call_command("inbox_hmac", "user-42", "--tenant", "acme", stdout=out)
    secret = tenant_inbox_secret_rotate(tenant=acme)
    call_command("inbox_hmac", "user-42", "--tenant", "acme", stdout=out)
    assert out.getvalue().strip() == inbox_hmac("user-42", secret)
    with pytest.raises(CommandError, match="No tenant 'nope'."):
        call_command("inbox_hmac", "user-42", "--tenant", "nope")
