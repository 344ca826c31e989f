"""Filters that format dates, numbers and money in the recipient's locale and time zone (Babel).

Each filter reads the locale and time zone from the render context (sandbox.SafeContext), chosen
once per render by `locale_and_zone`: the recipient's own, else the RenderOptions defaults.
Locale names are BCP 47 / CLDR (`en-GB`, `pt_BR`); time zones are IANA names (`Europe/Paris`).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import babel
import babel.dates
import babel.numbers
from django.utils.dateparse import parse_date, parse_datetime
from liquid.exceptions import FilterArgumentError, FilterValueError
from liquid.filter import with_context
from liquid.undefined import is_undefined


@dataclass(frozen=True)
class RenderOptions:
    """The locale and time zone the formatting filters use when the recipient has none."""

    locale: str = "en"
    timezone: str = "UTC"


def locale_and_zone(variables: Mapping, options: RenderOptions) -> tuple[object, object]:
    """The Babel locale and tzinfo a render formats with: `variables["recipient"]`'s locale and
    timezone when they are valid, else `options`', else English and UTC."""
    recipient = variables.get("recipient") or {}
    locale = _babel_locale("en")
    for candidate in (recipient.get("locale"), options.locale):
        found = _babel_locale(str(candidate)) if candidate else None
        if found is not None:
            locale = found
            break
    tzinfo = UTC
    for candidate in (recipient.get("timezone"), options.timezone):
        zone = _zone(str(candidate)) if candidate else None
        if zone is not None:
            tzinfo = zone
            break
    return locale, tzinfo


@cache
def _babel_locale(name: str):
    try:
        return babel.Locale.parse(name.replace("-", "_"))
    except (ValueError, TypeError, babel.UnknownLocaleError):
        return None


@cache
def _zone(name: str):
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _context_locale(context):
    return getattr(context, "locale", None) or _babel_locale("en")


def _as_datetime(value, filter_name: str):
    """A datetime or date from what a trigger's JSON can hold: ISO 8601 text or a Unix time."""
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return datetime.now(UTC)
        try:
            moment = parse_datetime(text)
            if moment is not None:
                return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            day = parse_date(text)
        except ValueError:
            day = None
        if day is not None:
            return day
    raise FilterValueError(
        f"{filter_name}: expected a date like 2026-01-31 or 2026-01-31T09:30:00Z, "
        f"got {value!r}", token=None)


def _blank(value) -> bool:
    return value is None or value == "" or is_undefined(value)


DATE_FORMATS = ("short", "medium", "long", "full")


@with_context
def format_date(value, format="medium", *, context):  # noqa: A002 (the template's word)
    """`{{ data.due | format_date: "long" }}` → "31 January 2026" (en-GB)."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_date")
    if isinstance(moment, datetime):
        moment = moment.astimezone(context.tzinfo).date()
    return babel.dates.format_date(moment, format=str(format), locale=_context_locale(context))


@with_context
def format_datetime(value, format="medium", *, context):  # noqa: A002
    """`{{ data.starts_at | format_datetime: "short" }}` in the recipient's time zone."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_datetime")
    if not isinstance(moment, datetime):
        return babel.dates.format_date(moment, format=str(format),
                                       locale=_context_locale(context))
    return babel.dates.format_datetime(moment, format=str(format), tzinfo=context.tzinfo,
                                       locale=_context_locale(context))


@with_context
def format_time(value, format="short", *, context):  # noqa: A002
    """`{{ data.starts_at | format_time }}` → "09:30" in the recipient's time zone."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "format_time")
    if not isinstance(moment, datetime):
        raise FilterValueError(f"format_time: {value!r} has no time of day", token=None)
    return babel.dates.format_time(moment, format=str(format), tzinfo=context.tzinfo,
                                   locale=_context_locale(context))


@with_context
def time_ago(value, *, context):
    """`{{ data.created_at | time_ago }}` → "3 hours ago" / "in 2 days"."""
    if _blank(value):
        return ""
    moment = _as_datetime(value, "time_ago")
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day, tzinfo=context.tzinfo)
    return babel.dates.format_timedelta(moment - datetime.now(UTC), add_direction=True,
                                        locale=_context_locale(context))


def _as_number(value, filter_name: str) -> Decimal:
    if isinstance(value, bool):
        raise FilterValueError(f"{filter_name}: expected a number, got {value!r}", token=None)
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise FilterValueError(f"{filter_name}: expected a number, got {value!r}",
                               token=None) from None


@with_context
def format_number(value, decimals=None, *, context):
    """`{{ data.count | format_number }}` → "1,234,567" (en) / "1.234.567" (de)."""
    if _blank(value):
        return ""
    number = _as_number(value, "format_number")
    if decimals is not None:
        try:
            places = max(0, min(int(decimals), 10))
        except (TypeError, ValueError):
            raise FilterArgumentError("format_number: decimals must be a whole number",
                                      token=None) from None
        pattern = "#,##0" + ("." + "0" * places if places else "")
        return babel.numbers.format_decimal(number, format=pattern,
                                            locale=_context_locale(context))
    return babel.numbers.format_decimal(number, locale=_context_locale(context))


@with_context
def format_currency(value, currency="USD", *, context):
    """`{{ data.total | format_currency: "EUR" }}` → "€12.50" (en) / "12,50 €" (fr)."""
    if _blank(value):
        return ""
    number = _as_number(value, "format_currency")
    code = str(currency).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise FilterArgumentError(
            f"format_currency: expected a currency code like EUR, got {currency!r}", token=None)
    return babel.numbers.format_currency(number, code, locale=_context_locale(context))


@with_context
def format_percent(value, *, context):
    """`{{ 0.25 | format_percent }}` → "25%"."""
    if _blank(value):
        return ""
    return babel.numbers.format_percent(_as_number(value, "format_percent"),
                                        locale=_context_locale(context))


LOCALE_FILTERS = {
    "format_date": format_date,
    "format_datetime": format_datetime,
    "format_time": format_time,
    "time_ago": time_ago,
    "format_number": format_number,
    "format_currency": format_currency,
    "format_percent": format_percent,
}
