"""In chromium: open the preference center from a received email, switch a channel off with the
keyboard, save, reload, and see it still off."""

import re

import pytest
from playwright.sync_api import expect

from preferences.models import PreferenceSet

from ..conftest import email_step, in_app_step

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FOOTER = '<p>Hi</p><p><a href="{{ preferences_url }}">Manage preferences</a></p>'


def test_switch_a_channel_off_in_the_preference_center_from_an_email(
        live_server, page, settings, api, run_tasks, smtp, make_workflow):
    settings.PUBLIC_URL = live_server.url
    make_workflow("newsletter", name="Newsletter", category="marketing",
                  steps=[email_step(html=FOOTER), in_app_step()])
    response = api.post("/api/v1/workflows/newsletter/trigger",
                        {"recipients": [{"id": "u1", "name": "Ada", "email": "ada@example.com"}]})
    assert response.status_code == 202
    run_tasks()
    html = smtp.wait_for(1)[0].get_body(("html",)).get_content()
    link = re.search(r'href="([^"]+)"', html).group(1)

    page.goto(link)
    assert page.title().startswith("Notification preferences")
    toggle = page.get_by_label("Newsletter: Email")
    expect(toggle).to_be_checked()
    toggle.focus()
    expect(toggle).to_be_focused()
    page.keyboard.press("Space")
    expect(toggle).not_to_be_checked()
    page.get_by_role("button", name="Save preferences").press("Enter")
    page.get_by_role("status").filter(has_text="Your preferences were saved.").wait_for()

    page.reload(wait_until="load")
    expect(page.get_by_label("Newsletter: Email")).not_to_be_checked()
    expect(page.get_by_label("Newsletter: In-app")).to_be_checked()
    assert PreferenceSet.objects.get().workflows == {
        "newsletter": {"channel_types": {"email": False}}}
