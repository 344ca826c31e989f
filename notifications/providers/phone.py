"""E.164 phone numbers, checked with libphonenumber's metadata (the `phonenumbers` package)."""

import phonenumbers


def is_e164(value: str) -> bool:
    """True for a number written in E.164 ('+', country code, subscriber number, nothing else)
    whose country code exists and whose length is possible there. Whether the number is assigned
    is the provider's to say (fictional +1 555 numbers pass, as tests need)."""
    if not isinstance(value, str) or not value.startswith("+"):
        return False
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return (phonenumbers.is_possible_number(number)
            and phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == value)
