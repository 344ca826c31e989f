"""The browser fixture drives Debian's chromium against the live server."""

import pytest


@pytest.mark.browser
def test_admin_login_page_renders_in_chromium(page, live_server):
    page.goto(f"{live_server.url}/admin/login/")
    assert page.locator("input[name=username]").is_visible()
    assert "Log in" in page.title()
