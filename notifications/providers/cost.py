"""What a message is estimated to cost through a provider: per-kind prices set on the
ProviderConfig's options, recorded on each successful DeliveryAttempt and on the Message.

Options (every kind takes them):

- `cost_per_message`: the price of one message as a decimal string ("0.0079"); for SMS, of one
  segment (GSM-7 160/153, UCS-2 70/67 characters: sms_segments.py), as SMS providers bill;
- `cost_by_country`: {ISO 3166-1 alpha-2 region: price}, for phone-addressed channels where the
  price differs by the recipient's country ({"US": "0.0079", "GB": "0.0350"}); the region comes
  from the E.164 number (libphonenumber); a country not listed costs `cost_per_message`;
- `cost_currency`: ISO 4217 code of those prices ("USD"; default "USD").

The estimate is the provider's list price, not its invoice: carrier surcharges, discounts and
parts a provider splits differently are not known here.
"""

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

from .sms_segments import sms_size

COST_OPTIONS = ("cost_per_message", "cost_by_country", "cost_currency")
DEFAULT_CURRENCY = "USD"


def _price(value: Any) -> Decimal | None:
    """A non-negative finite Decimal from a decimal string or number; None otherwise."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return price if price.is_finite() and price >= 0 else None


def cost_option_problems(options: Mapping[str, Any]) -> dict[str, list[str]]:
    """{"options.<name>": [problem]} for cost options that are set but unusable; {} if fine."""
    problems: dict[str, list[str]] = {}
    if "cost_per_message" in options and _price(options["cost_per_message"]) is None:
        problems["options.cost_per_message"] = [
            'Expected a non-negative decimal price, e.g. "0.0079".']
    by_country = options.get("cost_by_country")
    if by_country is not None:
        if not isinstance(by_country, Mapping):
            problems["options.cost_by_country"] = [
                'Expected an object of country codes to prices, e.g. {"US": "0.0079"}.']
        else:
            for region, value in by_country.items():
                if not (isinstance(region, str) and len(region) == 2 and region.isalpha()
                        and region.isupper()):
                    problems.setdefault("options.cost_by_country", []).append(
                        f"{region!r} is not an ISO 3166-1 alpha-2 code such as \"US\".")
                elif _price(value) is None:
                    problems.setdefault("options.cost_by_country", []).append(
                        f"{region}: expected a non-negative decimal price.")
    currency = options.get("cost_currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3
                                     and currency.isalpha() and currency.isupper()):
        problems["options.cost_currency"] = ['Expected an ISO 4217 code such as "USD".']
    return problems


def region_of(address: str) -> str:
    """The ISO 3166-1 alpha-2 region of an E.164 number ("+447700900123" → "GB"); "" for
    anything else."""
    if not address.startswith("+"):
        return ""
    try:
        number = phonenumbers.parse(address, None)
    except phonenumbers.NumberParseException:
        return ""
    # The number's own region; for a number libphonenumber cannot place (a fictional +1 555
    # number), the main region of its country code (+1: US, +44: GB).
    region = (phonenumbers.region_code_for_number(number)
              or phonenumbers.region_code_for_country_code(number.country_code))
    return "" if region in (None, "ZZ", "001") else region


def estimate_cost(channel: str, options: Mapping[str, Any], *, to: str,
                  content: Mapping[str, Any]) -> tuple[Decimal, str] | None:
    """(estimated cost, currency) of one message to `to` with rendered `content` through a
    provider with these `options`; None when the provider has no price. SMS is priced per
    segment of content["text"]; phone-addressed channels use `cost_by_country` first."""
    unit = None
    by_country = options.get("cost_by_country")
    if isinstance(by_country, Mapping) and to.startswith("+"):
        unit = _price(by_country.get(region_of(to)))
    if unit is None:
        unit = _price(options.get("cost_per_message"))
    if unit is None:
        return None
    count = 1
    if channel == "sms":
        count = max(sms_size(str(content.get("text") or "")).segments, 1)
    currency = str(options.get("cost_currency") or DEFAULT_CURRENCY)
    return (unit * count).quantize(Decimal("0.000001")), currency
