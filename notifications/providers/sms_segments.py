"""What an SMS costs: its encoding, its length in the encoding's units and its segments.

The rules are GSM 03.38 (the GSM-7 default alphabet and its escape-coded extension table) and
3GPP TS 23.040 concatenation: 160 GSM-7 or 70 UCS-2 units in one message, 153 or 67 per part
once a 6-byte user-data header splits it. SMS providers bill per segment.
"""

from dataclasses import dataclass

GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNO"
           "PQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM7_EXTENDED = set("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsSize:
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int
    segments: int


def sms_size(text: str) -> SmsSize:
    """The SmsSize of `text`: GSM-7 (160 units, or 153 per part) unless a character needs
    UCS-2 (70, or 67 per part). `characters` counts encoding units: an extension character
    (`€`, `[`…) is 2 in GSM-7, a character beyond the BMP (most emoji) is 2 in UCS-2."""
    if all(ch in GSM7 or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)
        single, multi, encoding = 70, 67, "UCS-2"
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        segments = -(-units // multi)
    return SmsSize(encoding=encoding, characters=units, segments=segments)

