"""What every model module shares: the id rules and validators, and the channel and step type
choices (from the channel table, channels.py)."""

import unicodedata

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import pgettext_lazy

from ..channels import CHANNELS

key_validator = RegexValidator(
    r"^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,127}$",
    "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter or digit).",
)

RECIPIENT_ID_MAX_LENGTH = 255


def validate_recipient_id(value: str) -> None:
    """The one rule for recipient ids, wherever one enters (API, admin): any text of 1 to 255
    characters, kept exactly as given, except "." and ".." (a URL path cannot carry them:
    RFC 3986 §5.2.4 removes them, browsers even when percent-encoded) and text with control
    characters or unpaired surrogates (no header, link or database column keeps them).
    Raises ValidationError with the rule broken."""
    if not 0 < len(value) <= RECIPIENT_ID_MAX_LENGTH:
        raise ValidationError("A recipient id has 1 to 255 characters.", code="length")
    if value in (".", ".."):
        raise ValidationError('A recipient id cannot be "." or "..": no URL path can name it.',
                              code="dot_segment")
    if any(unicodedata.category(char) == "Cs" for char in value):
        raise ValidationError("A recipient id cannot contain an unpaired surrogate (such as "
                              "\\ud800 alone): it is not a character.", code="surrogate")
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise ValidationError("A recipient id cannot contain control characters (such as a line "
                              "break or NUL).", code="control_character")


color_validator = RegexValidator(
    r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "Use a hex colour like #4f46e5 (it goes into CSS)."
)


# The channels come from the channel table (channels.py): Channel.EMAIL == "email" and so on.
Channel = models.TextChoices(
    "Channel", [(spec.key.upper(), (spec.key, spec.label)) for spec in CHANNELS], module=__name__)


# A step is a channel step (one per channel) or a function step.
StepType = models.TextChoices("StepType", [
    *((spec.key.upper(), (spec.key, spec.label)) for spec in CHANNELS),
    ("DELAY", ("delay", pgettext_lazy("step type", "Delay"))),
    ("DIGEST", ("digest", pgettext_lazy("step type", "Digest"))),
    ("THROTTLE", ("throttle", pgettext_lazy("step type", "Throttle"))),
    ("BRANCH", ("branch", pgettext_lazy("step type", "Branch"))),
    ("ROUTE", ("route", pgettext_lazy("step type", "Route"))),
    ("APPROVAL", ("approval", pgettext_lazy("step type", "Approval"))),
], module=__name__)
