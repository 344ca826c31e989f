"""Per-kind cost: the provider's price options give each successful send an estimated cost,
recorded on its DeliveryAttempt and on the Message (per SMS segment, per country)."""

from decimal import Decimal

import pytest

from notifications.delivery import deliver
from notifications.providers.base import ConfigurationError
from notifications.providers.cost import estimate_cost, region_of
from notifications.providers.twilio import Twilio

from .test_sms import SID, TOKEN, twilio_accepts, twilio_check

TWILIO_CREDENTIALS = {"account_sid": SID, "auth_token": TOKEN, "from": "+15550001111"}
PRICES = {"cost_per_message": "0.0500", "cost_by_country": {"US": "0.0079", "GB": "0.0350"},
          "cost_currency": "USD"}


@pytest.fixture
def priced_twilio(provider_server, provider_config):
    server = provider_server(twilio_check, twilio_accepts)
    provider_config("twilio-main", "sms", "twilio", TWILIO_CREDENTIALS,
                    options={"base_url": server.url, **PRICES})
    return server


def test_an_sms_costs_its_countrys_price_per_segment_on_the_attempt_and_the_message(
        priced_twilio, queue_message):
    message = queue_message("sms", {"text": "ж" * 100})  # UCS-2, 2 segments, to +1 (US)
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.estimated_cost, message.cost_currency) == (Decimal("0.015800"), "USD")
    attempt = message.delivery_attempts.get()
    assert (attempt.estimated_cost, attempt.cost_currency) == (Decimal("0.015800"), "USD")


def test_a_country_without_its_own_price_costs_the_per_message_price(priced_twilio,
                                                                     queue_message):
    message = queue_message("sms", {"text": "Hi"}, recipient={"id": "fr", "phone": "+33612345678"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.estimated_cost == Decimal("0.050000")


def test_a_provider_without_prices_records_no_cost(twilio_provider, queue_message):
    twilio_provider()
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert (message.estimated_cost, message.cost_currency) == (None, "")
    assert message.delivery_attempts.get().estimated_cost is None


def test_a_failed_send_costs_nothing(provider_server, provider_config, queue_message,
                                     clarion_settings):
    from .servers import Reply

    server = provider_server(twilio_check, lambda r: Reply(400, json={"code": 21211,
                                                                      "message": "bad To"}))
    provider_config("twilio-main", "sms", "twilio", TWILIO_CREDENTIALS,
                    options={"base_url": server.url, **PRICES})
    message = queue_message("sms", {"text": "Hi"})
    deliver(str(message.id))
    message.refresh_from_db()
    assert message.status == "failed" and message.estimated_cost is None


def test_email_is_priced_per_message():
    assert estimate_cost("email", {"cost_per_message": "0.0008", "cost_currency": "EUR"},
                         to="ada@example.com", content={"subject": "x"}) == (
        Decimal("0.000800"), "EUR")


def test_regions_come_from_the_e164_number():
    assert (region_of("+447700900123"), region_of("+15550002222"), region_of("ada@x")) == (
        "GB", "US", "")


@pytest.mark.parametrize(("options", "field"), [
    ({"cost_per_message": "free"}, "options.cost_per_message"),
    ({"cost_per_message": "NaN"}, "options.cost_per_message"),
    ({"cost_by_country": ["US"]}, "options.cost_by_country"),
    ({"cost_by_country": {"US": "-0.1"}}, "options.cost_by_country"),
    ({"cost_currency": "dollars"}, "options.cost_currency"),
])
def test_unusable_cost_options_are_refused_naming_the_option(options, field):
    with pytest.raises(ConfigurationError) as refused:
        Twilio.validate_config(TWILIO_CREDENTIALS, options)
    assert list(refused.value.fields) == [field]
