"""End to end: recipient ids with "/", "%", "?", "#", spaces and accents, over a real daphne.

Daphne decodes the path it hands Django (`%2F` included); this proves that every recipient route
still names the person the trigger created, and that `a%2Fb` and `a/b` stay two people.
"""

import json
import re
import time
import urllib.parse
from email.utils import getaddresses
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

IDS = ["team/ops+oncall@example.com", "José Müller", "a b", "..%2F", "a%2Fb", "x?y=1#z", "a/b"]


def recipient_path(recipient_id: str, suffix: str = "") -> str:
    return f"/api/v1/recipients/{quote(recipient_id, safe='')}{suffix}"


def test_every_id_the_trigger_accepts_is_reachable_over_daphne(serve, smtp_server):
    _, _, smtp_inbox = smtp_server
    server = serve.start()
    with serve.logs_on_failure():
        server.wait_until_ready(timeout=60)
        key = server.credentials()["api_key"]
        emails = {recipient_id: f"person{index}@example.com"
                  for index, recipient_id in enumerate(IDS)}
        response = server.request(
            "POST", "/api/v1/workflows/welcome/trigger", api_key=key,
            body={"recipients": [{"id": recipient_id, "name": f"Person {index}",
                                  "email": emails[recipient_id]}
                                 for index, recipient_id in enumerate(IDS)]})
        assert response.status == 202, response
        assert [run["recipient"] for run in response.json()["runs"]] == IDS

        mails = smtp_inbox.wait_for(len(IDS), timeout=60)
        settings_link = {}
        for mail in mails:
            [(_, address)] = getaddresses([mail["To"]])
            link = re.search(r"Notification settings: (\S+)",
                             mail.get_body(("plain",)).get_content())
            settings_link[address] = urllib.parse.urlsplit(link.group(1)).path

        for index, recipient_id in enumerate(IDS):
            response = server.request("GET", recipient_path(recipient_id), api_key=key)
            assert response.status == 200, (recipient_id, response)
            assert response.json()["id"] == recipient_id
            assert response.json()["email"] == emails[recipient_id]

            response = server.request("PUT", recipient_path(recipient_id, "/preferences"),
                                      api_key=key, body={"channel_types": {"email": False}})
            assert response.status == 200, (recipient_id, response)

            response = server.request("POST", recipient_path(recipient_id, "/inbox-token"),
                                      api_key=key, body={})
            assert response.status == 201, (recipient_id, response)
            token = response.json()["token"]
            deadline = time.monotonic() + 30
            while True:
                feed = server.request("GET", "/api/v1/inbox/",
                                      headers={"Authorization": f"Bearer {token}"})
                assert feed.status == 200, (recipient_id, feed)
                if feed.json()["items"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert [item["content"]["body"] for item in feed.json()["items"]] == [
                f"Welcome aboard, Person {index}! Take the tour to get started."]

            center = server.request("GET", settings_link[emails[recipient_id]],
                                    headers={"Accept": "text/html"})
            assert center.status == 200, (recipient_id, center)
            # This person's own choice (email off, set above), not the default (on).
            assert 'name="channel:email" id="channel-email">' in center.body.decode()

        # "a/b" and "a%2Fb" are two people: erasing one leaves the other.
        assert server.request("DELETE", recipient_path("a/b"), api_key=key).status == 204
        assert server.request("GET", recipient_path("a/b"), api_key=key).status == 404
        response = server.request("GET", recipient_path("a%2Fb"), api_key=key)
        assert (response.status, response.json()["id"]) == (200, "a%2Fb")
        # A literal "/" separates segments: never part of an id.
        response = server.request("GET", "/api/v1/recipients/team/ops+oncall@example.com",
                                  api_key=key)
        assert response.status == 404
        assert json.loads(response.body)["error"] == "not_found"
