"""In chromium: an operator opens the audit log, filters it by the API key that changed a
provider, and reads the change with its credentials masked."""

import pytest
from django.contrib.auth.models import User

from clarion.audit import MASK

SECRET_TOKEN = "tok-5b4a39281706f5e4d3c2b1a09f8e7d6c"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_audit_log_filtered_by_api_key_shows_a_masked_credential_change(
        request, live_server, api, api_key):
    key, _ = api_key
    body = {"channel": "sms", "kind": "twilio",
            "credentials": {"account_sid": "AC0123456789abcdef0123456789abcdef",
                            "auth_token": SECRET_TOKEN, "from": "+15550001111"}}
    assert api.put("/api/v1/providers/sms-main", body).status_code == 201
    assert api.put("/api/v1/tenants/acme", {"name": "Acme"}).status_code == 201
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pass")
    page = request.getfixturevalue("page")

    page.goto(f"{live_server.url}/admin/login/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", "s3cret-pass")
    page.click("input[type=submit]")
    page.locator("#settings-logentry").get_by_role("link", name="Audit log").click()
    page.locator("#changelist-filter").get_by_role("link", name=str(key)).click()
    rows = page.locator("#result_list tbody tr")
    rows.filter(has_text="sms-main").wait_for()
    assert rows.count() == 2  # the provider and the tenant, both by this key
    assert all(f"API key tests ({key.prefix}…)" in row.inner_text() for row in rows.all())

    rows.filter(has_text="sms-main").locator("th a, td a").first.click()
    page.get_by_text("Credentials").first.wait_for()
    text = page.locator("#content-main").inner_text()
    assert MASK in text and SECRET_TOKEN not in text and "sms-main" in text
