"""One rule for recipient ids: any text the trigger accepts can be addressed again everywhere.

Paths carry an id as one percent-encoded segment (`quote(id, safe="")`). The client below hands
Django the scope daphne builds (the decoded `path` and the undecoded `raw_path`), which Django's
own test clients do not; `test_e2e_recipient_ids.py` does the same against a real daphne.
"""

from urllib.parse import quote, unquote, urlencode, urlsplit

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ValidationError
from django.test import AsyncClient
from django.urls import NoReverseMatch, reverse
from django.utils.html import escape

from clarion.asgi import application
from clarion.paths import NOT_UTF8, routing_path
from inbox.auth import inbox_hmac
from notifications.models import (
    ChannelData,
    Recipient,
    Subscription,
    Topic,
    validate_recipient_id,
)
from preferences.models import PreferenceSet
from preferences.tokens import preferences_url

from ..conftest import in_app_step, invalid

# Ids from issue 11: each must be reachable everywhere. "a/b" is there to prove that it and
# "a%2Fb" are two people.
IDS = ["team/ops+oncall@example.com", "José Müller", "a b", "..%2F", "a%2Fb", "x?y=1#z", "a/b"]
REFUSED = {
    "": "A recipient id has 1 to 255 characters.",
    "x" * 256: "A recipient id has 1 to 255 characters.",
    ".": 'A recipient id cannot be "." or "..": no URL path can name it.',
    "..": 'A recipient id cannot be "." or "..": no URL path can name it.',
    "line\nbreak": "A recipient id cannot contain control characters (such as a line break or "
                   "NUL).",
}
# Refused by the model's rule where no JSON parser comes first (the admin; the JSON API answers
# these as text no column can store: tests/test_unstorable_text.py).
REFUSED_BY_THE_RULE_ONLY = {
    "nul\x00": "A recipient id cannot contain control characters (such as a line break or NUL).",
    "half\ud800": "A recipient id cannot contain an unpaired surrogate (such as \\ud800 alone): "
                  "it is not a character.",
}


def path_of(recipient_id: str, suffix: str = "") -> str:
    return f"/api/v1/recipients/{quote(recipient_id, safe='')}{suffix}"


class DaphneScopeClient(AsyncClient):
    """Django's ASGI test client with the scope daphne builds: `path` decoded as UTF-8 and the
    undecoded `raw_path` beside it (Django's client decodes as Latin-1 and gives no raw path).
    Synchronous: each call returns the response."""

    def __init__(self, *, secret: str | None = None, headers: dict | None = None):
        super().__init__()
        self.auth_headers = {**({"Authorization": f"Bearer {secret}"} if secret else {}),
                             **(headers or {})}

    def generic(self, method, path, *args, **kwargs):
        self._raw = urlsplit(str(path)).path.encode("ascii")
        return super().generic(method, path, *args, **kwargs)

    async def request(self, **request):
        request["path"] = unquote(self._raw.decode("ascii"))
        request["raw_path"] = self._raw
        return await super().request(**request)

    def call(self, method: str, path: str, body=None, **kwargs):
        send = getattr(super(), method)
        if body is not None:
            kwargs.update(data=body, content_type="application/json")
        kwargs["headers"] = self.auth_headers
        return async_to_sync(send)(path, **kwargs)


@pytest.fixture
def http(api_key):
    _, secret = api_key
    return DaphneScopeClient(secret=secret)


@pytest.fixture
def feed_workflow(make_workflow):
    return make_workflow("ping", steps=[in_app_step(body="Hi {{ recipient.name }}")])


# --- The routing path ----------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "expected"), [
    (b"/api/v1/recipients/a%2Fb", "/api/v1/recipients/a%2Fb"),
    (b"/api/v1/recipients/a%252Fb", "/api/v1/recipients/a%252Fb"),
    (b"/api/v1/recipients/Jos%C3%A9%20M%C3%BCller", "/api/v1/recipients/José Müller"),
    (b"/api/v1/recipients/x%3Fy%3D1%23z/preferences", "/api/v1/recipients/x?y=1#z/preferences"),
    (b"/api/v1/recipients/a/b", "/api/v1/recipients/a/b"),
])
def test_routing_path_decodes_each_segment_but_keeps_slash_and_percent_encoded(raw, expected):
    assert routing_path(decoded=unquote(raw.decode()), raw=raw) == expected


def test_without_a_raw_path_only_percent_stays_encoded():
    assert routing_path(decoded="/api/v1/recipients/a%2Fb", raw=None) == \
        "/api/v1/recipients/a%252Fb"


def test_reverse_builds_a_path_that_routes_back_to_the_same_id_or_refuses():
    assert reverse("recipient-detail", args=["José Müller"]) == \
        "/api/v1/recipients/Jos%C3%A9%20M%C3%BCller"
    assert reverse("recipient-detail", args=["a%2Fb"]) == "/api/v1/recipients/a%252Fb"
    with pytest.raises(NoReverseMatch):
        reverse("recipient-detail", args=["a/b"])  # would name two segments


# --- Every route round-trips every id ------------------------------------------------------------

@pytest.mark.parametrize("recipient_id", IDS)
def test_an_id_the_trigger_accepts_is_reachable_on_every_recipient_route(
        http, feed_workflow, run_tasks, admin_client, recipient_id):
    response = http.call("post", "/api/v1/workflows/ping/trigger",
                         {"recipients": [{"id": recipient_id, "name": "Pat"}]})
    assert response.status_code == 202, response.json()
    assert response.json()["runs"][0]["recipient"] == recipient_id
    run_tasks()
    recipient = Recipient.objects.get(external_id=recipient_id)
    assert Recipient.objects.count() == 1

    response = http.call("get", path_of(recipient_id))
    assert response.status_code == 200, response.json()
    assert response.json()["id"] == recipient_id

    response = http.call("put", path_of(recipient_id), {"name": "Pat", "email": "pat@example.com"})
    assert (response.status_code, response.json()["id"]) == (200, recipient_id)

    response = http.call("put", path_of(recipient_id, "/channel-data/push"),
                         {"data": {"tokens": ["t-1"]}})
    assert response.status_code == 200, response.json()
    assert ChannelData.objects.get(recipient=recipient).data == {"tokens": ["t-1"]}

    response = http.call("put", path_of(recipient_id, "/preferences"),
                         {"channel_types": {"in_app": False}})
    assert response.status_code == 200, response.json()
    response = http.call("get", path_of(recipient_id, "/preferences"))
    assert (response.status_code, response.json()["channel_types"]) == (200, {"in_app": False})
    assert PreferenceSet.objects.get(recipient=recipient).channel_types == {"in_app": False}

    response = http.call("post", path_of(recipient_id, "/inbox-token"), {})
    assert response.status_code == 201, response.json()
    token = response.json()["token"]
    feed = DaphneScopeClient(headers={"Authorization": f"Bearer {token}"}).call(
        "get", "/api/v1/inbox/")
    assert feed.status_code == 200, feed.json()
    assert [item["content"]["body"] for item in feed.json()["items"]] == ["Hi Pat"]

    by_hmac = DaphneScopeClient(headers={"X-Clarion-Recipient": quote(recipient_id, safe=""),
                                         "X-Clarion-Hmac": inbox_hmac(recipient_id)})
    response = by_hmac.call("get", "/api/v1/inbox/counts")
    assert response.status_code == 200, response.json()
    assert response.json()["unread_count"] == 1

    center = admin_client.get(urlsplit(preferences_url(recipient_id=recipient.pk,
                                                       tenant_id=None)).path)
    assert center.status_code == 200
    # The center shows this person's own choice (in-app off), not the default (on).
    assert 'name="channel:in_app" id="channel-in_app">' in center.content.decode()

    changelist = admin_client.get(reverse("admin:notifications_recipient_changelist"),
                                  {"q": recipient_id})
    change_url = reverse("admin:notifications_recipient_change", args=[recipient.pk])
    assert f'href="{change_url}?_changelist_filters=' in changelist.content.decode()
    change = admin_client.get(change_url)
    assert change.status_code == 200
    assert f'value="{escape(recipient_id)}"' in change.content.decode()

    response = http.call("delete", path_of(recipient_id))
    assert response.status_code == 204
    assert not Recipient.objects.filter(external_id=recipient_id).exists()
    assert http.call("get", path_of(recipient_id)).status_code == 404


def test_an_encoded_slash_and_a_slash_are_two_people(http, feed_workflow):
    response = http.call("post", "/api/v1/workflows/ping/trigger",
                         {"recipients": ["a/b", "a%2Fb", {"id": "a", "name": "Just a"}]})
    assert response.status_code == 202
    assert sorted(Recipient.objects.values_list("external_id", flat=True)) == \
        ["a", "a%2Fb", "a/b"]

    assert http.call("get", "/api/v1/recipients/a%2Fb").json()["id"] == "a/b"
    assert http.call("get", "/api/v1/recipients/a%252Fb").json()["id"] == "a%2Fb"
    # A literal "/" is a path separator, never part of an id: no such route.
    assert http.call("get", "/api/v1/recipients/a/b").status_code == 404
    # "a%2Fpreferences" is the person "a/preferences" (unknown), not the preferences of "a".
    response = http.call("get", "/api/v1/recipients/a%2Fpreferences")
    assert (response.status_code, response.json()["detail"]) == \
        (404, "No recipient 'a/preferences'.")

    assert http.call("delete", "/api/v1/recipients/a%2Fb").status_code == 204
    assert sorted(Recipient.objects.values_list("external_id", flat=True)) == ["a", "a%2Fb"]


def test_topic_subscriptions_take_and_drop_any_id(http, db):
    Topic.objects.create(key="ops")
    response = http.call("post", "/api/v1/topics/ops/subscriptions",
                         {"recipients": IDS})
    assert response.status_code == 200, response.json()
    assert sorted(Subscription.objects.values_list("recipient__external_id", flat=True)) == \
        sorted(IDS)
    response = http.call("delete", "/api/v1/topics/ops/subscriptions",
                         {"recipients": ["a/b"]})
    assert response.status_code == 200
    assert "a/b" not in Subscription.objects.values_list("recipient__external_id", flat=True)
    assert Subscription.objects.filter(recipient__external_id="a%2Fb").exists()


@pytest.mark.parametrize("recipient_id", ["team/ops+oncall@example.com", "José Müller", "a%2Fb"])
def test_the_inbox_socket_takes_any_id_with_its_hmac(transactional_db, recipient_id):
    Recipient.objects.create(external_id=recipient_id)
    query = urlencode({"recipient": recipient_id, "hmac": inbox_hmac(recipient_id)})

    async def connect():
        communicator = WebsocketCommunicator(application, f"/ws/inbox/?{query}",
                                             headers=[(b"origin", b"http://testserver")])
        # Generous waits (the default is 1 s): a loaded machine is slow, never wrong.
        connected, _ = await communicator.connect(timeout=10)
        frame = await communicator.receive_json_from(timeout=10) if connected else None
        await communicator.disconnect()
        return connected, frame

    connected, frame = async_to_sync(connect)()
    assert connected
    assert frame["type"] == "counts.changed"


# --- Ids no path can carry are refused at every entry point --------------------------------------

@pytest.mark.parametrize(("recipient_id", "message"), REFUSED.items())
def test_the_trigger_refuses_an_id_outside_the_rule(api, feed_workflow, recipient_id, message):
    for recipients, field in (([recipient_id], "recipients[0]"),
                              ([{"id": recipient_id}], "recipients[0].id")):
        response = api.post("/api/v1/workflows/ping/trigger", {"recipients": recipients})
        assert response.status_code == 400
        assert response.json() == invalid({field: [message]})
    response = api.post("/api/v1/workflows/ping/trigger",
                        {"recipients": ["ok"], "actor": {"id": recipient_id}})
    assert response.json() == invalid({"actor.id": [message]})
    assert not Recipient.objects.exists()


@pytest.mark.parametrize(("recipient_id", "message"), REFUSED.items())
def test_subscriptions_and_cancel_refuse_an_id_outside_the_rule(api, feed_workflow, recipient_id,
                                                                message):
    Topic.objects.create(key="ops")
    response = api.post("/api/v1/topics/ops/subscriptions", {"recipients": [recipient_id]})
    assert response.json() == invalid({"recipients[0]": [message]})
    response = api.post("/api/v1/workflows/ping/cancel",
                        {"cancellation_key": "k", "recipients": [recipient_id]})
    assert response.json() == invalid({"recipients[0]": [message]})
    assert not Recipient.objects.exists()


@pytest.mark.parametrize(("encoded", "message"), [
    ("%2E", REFUSED["."]), ("%2E%2E", REFUSED[".."]), ("a%0Ab", REFUSED["line\nbreak"]),
    ("x" * 256, REFUSED["x" * 256]),
])
def test_put_recipient_refuses_an_id_outside_the_rule(http, encoded, message):
    response = http.call("put", f"/api/v1/recipients/{encoded}", {"name": "A"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request", "detail": message}
    assert not Recipient.objects.exists()


def test_the_admin_refuses_an_id_outside_the_rule_and_keeps_spaces(admin_client):
    add = reverse("admin:notifications_recipient_add")
    form = {"name": "", "email": "", "phone": "", "locale": "", "timezone": "", "data": "{}",
            "channel_data-TOTAL_FORMS": "0", "channel_data-INITIAL_FORMS": "0",
            "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0",
            "preference_sets-TOTAL_FORMS": "0", "preference_sets-INITIAL_FORMS": "0"}
    response = admin_client.post(add, {**form, "external_id": ".."})
    assert response.status_code == 200
    assert escape(REFUSED[".."]) in response.content.decode()
    assert not Recipient.objects.exists()

    response = admin_client.post(add, {**form, "external_id": " team/ops "})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Recipient.objects.get().external_id == " team/ops "



@pytest.mark.parametrize(("recipient_id", "message"), REFUSED_BY_THE_RULE_ONLY.items())
def test_the_rule_names_nul_and_surrogates_for_what_they_are(recipient_id, message):
    with pytest.raises(ValidationError) as caught:
        validate_recipient_id(recipient_id)
    assert caught.value.messages == [message]


@pytest.mark.parametrize("encoded", ["a%FF", "a%FE", "%C3", "ok/%80x"])
def test_a_path_that_is_not_utf8_once_decoded_is_a_400_not_another_id(http, encoded):
    Recipient.objects.create(external_id="a\ufffd")  # what a lenient decoding would read
    for method in ("get", "put"):
        response = http.call(method, f"/api/v1/recipients/{encoded}",
                             {"name": "A"} if method == "put" else None)
        assert response.status_code == 400
        assert response.json() == {"error": "invalid_request", "detail": NOT_UTF8}
    assert Recipient.objects.count() == 1
