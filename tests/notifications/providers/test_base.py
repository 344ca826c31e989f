"""The pieces of the provider contract on their own: errors, redaction, E.164, SMS segments."""

from datetime import UTC, datetime

import pytest

from notifications.models import ChannelData, Recipient
from notifications.providers import registry
from notifications.providers.base import parse_retry_after, redact
from notifications.providers.phone import is_e164
from notifications.providers.services import channel_data_deactivate


@pytest.mark.parametrize("number, valid", [
    ("+15550001111", True), ("+447700900123", True), ("+4915123456789", True),
    ("15550001111", False), ("+1 555 000 1111", False), ("+1555", False),
    ("+999123456789", False), ("+1555000111122223333", False), ("", False),
])
def test_is_e164_accepts_only_well_formed_international_numbers(number, valid):
    assert is_e164(number) is valid


def test_redact_replaces_secrets_anywhere():
    request = {"url": "https://api/Accounts/AC123secret/x", "headers": {"X": "Bearer tok-123"},
               "data": ["tok-123", {"nested": "a tok-123 b"}]}
    assert redact(request, ["AC123secret", "tok-123", "ab"]) == {
        "url": "https://api/Accounts/[redacted]/x", "headers": {"X": "Bearer [redacted]"},
        "data": ["[redacted]", {"nested": "a [redacted] b"}]}


def test_retry_after_seconds_or_http_date():
    now = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC)
    assert parse_retry_after("30") == 30
    assert parse_retry_after("Sun, 22 Nov 2026 03:02:00 GMT", now=now) == 120
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_registry_lists_the_kinds_per_channel():
    assert set(registry.kinds("sms")) == {"twilio", "vonage", "plivo", "messagebird", "sinch",
                                          "gupshup"}
    assert set(registry.kinds("chat")) == {"slack", "slack_webhook", "teams_webhook",
                                           "discord_webhook", "google_chat_webhook",
                                           "mattermost_webhook"}
    assert {"smtp", "sendgrid", "mailgun", "postmark", "amazon_ses"} <= set(
        registry.kinds("email"))
    assert set(registry.kinds("webhook")) == {"webhook"}


def test_dead_addresses_leave_the_channel_data_and_are_kept_as_inactive(db):
    recipient = Recipient.objects.create(external_id="u1")
    row = ChannelData.objects.create(recipient=recipient, channel="push", provider_kind="fcm",
                                     data={"tokens": ["a", "b", "c"]})
    assert channel_data_deactivate(channel_data_id=row.pk, addresses=["b", "zz"],
                                   reason="UNREGISTERED") == 1
    row.refresh_from_db()
    assert row.data["tokens"] == ["a", "c"]
    assert [(i["address"], i["reason"]) for i in row.data["inactive"]] == [("b", "UNREGISTERED")]
