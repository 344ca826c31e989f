"""Recipients and their channel data through the server API: PUT, GET and DELETE of a profile,
bad bodies answered 400 with nothing written, and the erasure of everything about a person."""

import pytest

from inbox.models import InboxItem
from notifications import services
from notifications.models import (
    ChannelData,
    DeliveryAttempt,
    Message,
    Recipient,
    Run,
    StepLog,
    Topic,
    Trigger,
)

from ..conftest import email_step, in_app_step, invalid

# --- Recipients -------------------------------------------------------------------------------

def test_put_recipient_creates_then_replaces(api, db):
    created = api.put("/api/v1/recipients/u1", {
        "name": "Ada", "email": "ada@example.com", "phone": "+15550001111", "locale": "en-GB",
        "timezone": "Europe/London", "data": {"plan": "pro"},
        "channel_data": {"push": {"tokens": ["t1"]}},
    })

    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "name", "email", "phone", "locale", "timezone", "data",
                         "channel_data", "created_at", "updated_at"}
    assert {k: v for k, v in body.items() if k not in ("created_at", "updated_at")} == {
        "id": "u1", "name": "Ada", "email": "ada@example.com", "phone": "+15550001111",
        "locale": "en-GB", "timezone": "Europe/London", "data": {"plan": "pro"},
        "channel_data": {"push": {"tokens": ["t1"]}},
    }

    replaced = api.put("/api/v1/recipients/u1", {"name": "Ada L."})

    assert replaced.status_code == 200, replaced.content
    body = replaced.json()
    assert (body["name"], body["email"], body["phone"], body["locale"], body["timezone"],
            body["data"]) == ("Ada L.", "", "", "", "", {})
    # Channel data is set by entries given, never cleared by leaving it out.
    assert body["channel_data"] == {"push": {"tokens": ["t1"]}}
    assert Recipient.objects.count() == 1


def test_get_recipient_returns_the_profile_with_channel_data(api, db):
    recipient, _ = services.recipient_upsert(external_id="u1", name="Ada",
                                             email="ada@example.com")
    services.channel_data_set(recipient=recipient, channel="chat",
                              data={"url": "https://chat.example/hook"})
    services.channel_data_set(recipient=recipient, channel="push", provider_kind="fcm",
                              data={"tokens": ["f1"]})

    response = api.get("/api/v1/recipients/u1")

    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["name"], body["email"]) == ("u1", "Ada", "ada@example.com")
    assert body["channel_data"] == {"chat": {"url": "https://chat.example/hook"},
                                    "push:fcm": {"tokens": ["f1"]}}


def test_put_of_what_get_returned_for_a_recipient_changes_nothing(api, db):
    api.put("/api/v1/recipients/u1", {
        "name": "Ada", "email": "ada@example.com", "data": {"plan": "pro"},
        "channel_data": {"chat": {"url": "https://chat.example/hook"},
                         "push:fcm": {"tokens": ["f1"]}},
    })
    exported = api.get("/api/v1/recipients/u1").json()

    response = api.put("/api/v1/recipients/u1", exported)

    assert response.status_code == 200, response.content
    assert response.json() == exported
    assert sorted(ChannelData.objects.values_list("channel", "provider_kind")) == [
        ("chat", ""), ("push", "fcm")]


def test_get_unknown_recipient_is_404(api, db):
    response = api.get("/api/v1/recipients/nobody")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No recipient 'nobody'."}


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "nope"}, {"email": ["Enter a valid email address."]}),
        ({"phone": "020 7946 0000"},
         {"phone": ["Expected an E.164 number like +15550001111."]}),
        ({"timezone": "Europe/Atlantis"},
         {"timezone": ["Unknown time zone 'Europe/Atlantis'; use an IANA name like "
                       "'Europe/Paris'."]}),
        ({"locale": "en GB"}, {"locale": ["Expected a locale like 'en' or 'pt-BR'."]}),
        ({"data": "x"}, {"data": ['Expected a dictionary of items but got type "str".']}),
        ({"channel_data": {"push": "token"}},
         {"channel_data.push": ['Expected a dictionary of items but got type "str".']}),
        ({"channel_data": {"pager": {}}},
         {"channel_data.pager": [
             "Unknown channel; expected one of email, sms, push, chat, whatsapp, in_app, "
             "webhook."]}),
        ({"channel_data": {"pager:acme": {}}},
         {"channel_data.pager:acme": [
             "Unknown channel; expected one of email, sms, push, chat, whatsapp, in_app, "
             "webhook."]}),
        ({"channel_data": {f"push:{'p' * 65}": {}}},
         {f"channel_data.push:{'p' * 65}": ["A provider kind has at most 64 characters."]}),
        ({"name": "x" * 256, "email": "bad"},
         {"name": ["Ensure this field has no more than 255 characters."],
          "email": ["Enter a valid email address."]}),
    ],
    ids=["email", "phone", "timezone", "locale", "data", "channel-data-value",
         "channel-data-channel", "channel-data-provider-channel", "channel-data-long-provider",
         "two-fields"],
)
def test_put_recipient_with_a_bad_body_is_400_and_writes_nothing(api, db, body, fields):
    response = api.put("/api/v1/recipients/u1", body)

    assert response.status_code == 400
    assert response.json() == invalid(fields)
    assert Recipient.objects.count() == 0


def test_put_recipient_with_too_long_an_id_is_400(api, db):
    response = api.put(f"/api/v1/recipients/{'x' * 256}", {"name": "A"})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "detail": "A recipient id has 1 to 255 characters."}
    assert Recipient.objects.count() == 0


def test_put_recipient_channel_data_with_a_bad_channel_keeps_the_old_profile(api, db):
    services.recipient_upsert(external_id="u1", name="Ada")

    response = api.put("/api/v1/recipients/u1", {"name": "Changed",
                                                 "channel_data": {"pager": {}}})

    assert response.status_code == 400
    assert Recipient.objects.get().name == "Ada"


def test_delete_recipient_erases_everything_about_them(api, make_workflow, run_tasks, locmem):
    make_workflow("welcome", steps=[in_app_step(), email_step()])
    topic = Topic.objects.create(key="news")
    trigger_id = api.post("/api/v1/workflows/welcome/trigger", {"recipients": [
        {"id": "u1", "name": "Ada", "email": "ada@example.com",
         "channel_data": {"push": {"tokens": ["t1"]}}},
        {"id": "u2", "name": "Grace", "email": "grace@example.com"},
    ]}).json()["trigger_id"]
    run_tasks()
    api.post("/api/v1/topics/news/subscriptions", {"recipients": ["u1", "u2"]})
    ada = Recipient.objects.get(external_id="u1")
    run_id = str(Run.objects.get(recipient=ada).id)
    assert Message.objects.filter(recipient=ada).count() == 2
    assert DeliveryAttempt.objects.filter(message__recipient=ada).count() == 1
    assert InboxItem.objects.filter(recipient=ada).count() == 1

    response = api.delete("/api/v1/recipients/u1")

    assert response.status_code == 204
    assert response.content == b""
    assert not Recipient.objects.filter(external_id="u1").exists()
    assert not Run.objects.filter(pk=run_id).exists()
    assert not StepLog.objects.filter(run_id=run_id).exists()
    assert not Message.objects.filter(run_id=run_id).exists()
    assert not Message.objects.filter(to="ada@example.com").exists()
    assert DeliveryAttempt.objects.count() == 1  # Grace's
    assert list(InboxItem.objects.values_list("recipient__external_id", flat=True)) == ["u2"]
    assert not ChannelData.objects.exists()
    assert list(topic.subscriptions.values_list("recipient__external_id", flat=True)) == ["u2"]
    trigger = Trigger.objects.get(pk=trigger_id)
    assert trigger.recipients == [
        "[erased]", {"id": "u2", "name": "Grace", "email": "grace@example.com"}]
    assert "ada@example.com" not in str(trigger.recipients)
    assert api.get("/api/v1/recipients/u1").status_code == 404
    assert api.get(f"/api/v1/runs/{run_id}").status_code == 404
    assert [r["recipient"] for r in api.get(f"/api/v1/triggers/{trigger_id}").json()["runs"]
            ] == ["u2"]


def test_delete_recipient_erases_their_profile_from_triggers_they_acted_in(api, make_workflow):
    make_workflow("welcome", steps=[in_app_step()])
    api.post("/api/v1/workflows/welcome/trigger", {
        "recipients": ["u2"], "actor": {"id": "u1", "name": "Ada", "email": "ada@example.com"},
    })

    response = api.delete("/api/v1/recipients/u1")

    assert response.status_code == 204
    assert Trigger.objects.get().actor == "[erased]"
    assert Run.objects.get().recipient.external_id == "u2"


def test_delete_unknown_recipient_is_404(api, db):
    response = api.delete("/api/v1/recipients/nobody")

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "No recipient 'nobody'."}


def test_put_channel_data_sets_and_replaces_one_channel(api, db):
    services.recipient_upsert(external_id="u1")

    first = api.put("/api/v1/recipients/u1/channel-data/push", {"data": {"tokens": ["a"]}})
    second = api.put("/api/v1/recipients/u1/channel-data/push", {"data": {"tokens": ["b"]}})
    provider = api.put("/api/v1/recipients/u1/channel-data/push",
                       {"data": {"tokens": ["c"]}, "provider_kind": "apns"})

    assert first.status_code == 200, first.content
    assert first.json() == {"data": {"tokens": ["a"]}, "provider_kind": ""}
    assert second.json() == {"data": {"tokens": ["b"]}, "provider_kind": ""}
    assert provider.json() == {"data": {"tokens": ["c"]}, "provider_kind": "apns"}
    assert api.get("/api/v1/recipients/u1").json()["channel_data"] == {
        "push": {"tokens": ["b"]}, "push:apns": {"tokens": ["c"]}}


def test_put_channel_data_for_an_unknown_channel_or_recipient_is_404(api, db):
    services.recipient_upsert(external_id="u1")

    channel = api.put("/api/v1/recipients/u1/channel-data/fax", {"data": {}})
    recipient = api.put("/api/v1/recipients/nobody/channel-data/push", {"data": {}})

    assert channel.status_code == 404
    assert channel.json() == {"error": "not_found", "detail": "No channel 'fax'."}
    assert recipient.status_code == 404
    assert recipient.json() == {"error": "not_found", "detail": "No recipient 'nobody'."}
    assert not ChannelData.objects.exists()


def test_put_channel_data_without_data_is_400_naming_the_stray_field_too(api, db):
    services.recipient_upsert(external_id="u1")

    response = api.put("/api/v1/recipients/u1/channel-data/push", {"tokens": ["a"]})

    assert response.status_code == 400
    assert response.json() == invalid({
        "data": ["This field is required."],
        "tokens": ["Unknown field; expected one of: data, provider_kind."]})
