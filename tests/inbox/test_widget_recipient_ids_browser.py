"""<clarion-inbox> signs in with the HMAC of any recipient id, in Debian's chromium.

A header holds Latin-1 only: the widget percent-encodes the id in `X-Clarion-Recipient`, so ids
with "/", "%" or letters outside Latin-1 reach their own feed.
"""

import pytest
from django.db import connections
from playwright.sync_api import expect

from inbox.auth import inbox_hmac
from inbox.models import InboxItem
from notifications.models import Recipient

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EMBED = """([id, hmac]) => {
  const script = document.createElement("script");
  script.src = "/static/clarion/inbox.js";
  document.head.append(script);
  const inbox = document.createElement("clarion-inbox");
  inbox.setAttribute("recipient-id", id);
  inbox.setAttribute("hmac", hmac);
  document.body.append(inbox);
}"""


@pytest.fixture
def page(page):
    yield page
    connections.close_all()


@pytest.mark.parametrize("recipient_id", ["team/ops+oncall@example.com", "Łukasz Żółć", "a%2Fb"])
def test_widget_reads_the_feed_of_any_recipient_id_by_hmac(live_server, page, recipient_id):
    person = Recipient.objects.create(external_id=recipient_id)
    other = Recipient.objects.create(external_id="a/b" if recipient_id == "a%2Fb" else "other")
    InboxItem.objects.create(recipient=person, content={"body": "For you"})
    InboxItem.objects.bulk_create([InboxItem(recipient=other, content={"body": "Not yours"})] * 2)

    page.goto(f"{live_server.url}/healthz")  # any page of the server's origin
    page.evaluate(EMBED, [recipient_id, inbox_hmac(recipient_id)])

    expect(page.locator("clarion-inbox .badge")).to_have_text("1")
    page.locator("clarion-inbox .bell").click()
    expect(page.locator("clarion-inbox li")).to_have_count(1)
    expect(page.locator("clarion-inbox li").first).to_contain_text("For you")
