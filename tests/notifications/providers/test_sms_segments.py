"""SMS segment counting (GSM 03.38 alphabets, 3GPP TS 23.040 concatenation)."""

import pytest

from notifications.providers.sms_segments import SmsSize, sms_size


@pytest.mark.parametrize(("text", "encoding", "characters", "segments"), [
    ("", "GSM-7", 0, 0),
    ("x" * 160, "GSM-7", 160, 1),
    ("x" * 161, "GSM-7", 161, 2),
    ("x" * 306, "GSM-7", 306, 2),  # 153 per part of a long message
    ("x" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # € takes two GSM-7 septets
    ("€" * 81, "GSM-7", 162, 2),
    ("ç" * 70, "UCS-2", 70, 1),
    ("olá ☃", "UCS-2", 5, 1),
    ("☃" * 71, "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),  # outside the BMP: two UTF-16 units each
    ("😀" * 36, "UCS-2", 72, 2),
])
def test_sms_size_counts_characters_and_segments(text, encoding, characters, segments):
    assert sms_size(text) == SmsSize(encoding, characters, segments)
