"""Phone numbers as the box stores and matches them: E.164 through the ``phonenumbers`` library."""
from __future__ import annotations

import phonenumbers


def to_e164(raw: str | None, region: str = "") -> str | None:
    """``raw`` as E.164 (``+441632960001``), or None when it is not a possible phone number.

    National numbers need the box's ``region`` (ISO 3166 alpha-2, e.g. "GB"); SIP user parts
    such as ``sipp`` or ``support`` are not numbers and give None.
    """
    if not raw:
        return None
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, region.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
