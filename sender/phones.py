"""Phone numbers: normalised to digits with country code, masked in every log line.

    normalise("+54 9 11 2345-6821")  -> "5491123456821"
    normalise("011 15 2345-6821")    -> "5491123456821"   (local mobile form)
    normalise("1123456821")          -> "541123456821"    (country code added)
    normalise("")                    -> raises InvalidPhone("no phone number")

Numbers without a leading + are read as numbers of `region` (Argentina by
default), so both production forms ("5491123456701" and local ones) work.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "AR"
_WA_SUFFIX = re.compile(r"@(c\.us|s\.whatsapp\.net)$", re.IGNORECASE)
_LONG_DIGITS = re.compile(r"\d{6,}")


class InvalidPhone(ValueError):
    """The number cannot be sent to; str() is the reason (never the full number)."""


def normalise(raw: object, region: str = DEFAULT_REGION) -> str:
    """Digits only, country code first (E.164 without '+'), or InvalidPhone with a reason."""
    text = "" if raw is None else str(raw).strip()
    text = _WA_SUFFIX.sub("", text)  # legacy rows may carry the WhatsApp JID suffix
    if not text:
        raise InvalidPhone("no phone number")
    if not re.search(r"\d", text):
        raise InvalidPhone(f"not a phone number ({mask(text)})")
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number ({mask(text)}): {_parse_reason(exc)}") from None
    if not phonenumbers.is_possible_number(number):
        why = phonenumbers.is_possible_number_with_reason(number)
        reason = {
            phonenumbers.ValidationResult.TOO_SHORT: "too short",
            phonenumbers.ValidationResult.TOO_LONG: "too long",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
            phonenumbers.ValidationResult.INVALID_LENGTH: "impossible length",
        }.get(why, "impossible number")
        raise InvalidPhone(f"impossible phone number ({mask(text)}): {reason}")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


def _parse_reason(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "not a number",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "unparseable")


def mask(raw: object) -> str:
    """Everything but the last 4 digits hidden: '+54 9 11 2345-6821' -> '*********6821'."""
    digits = re.sub(r"\D", "", "" if raw is None else str(raw))
    if not digits:
        return "-" if raw in (None, "") else "***"
    if len(digits) <= 4:
        return "*" * len(digits)
    return "*" * (len(digits) - 4) + digits[-4:]


def scrub(text: str) -> str:
    """Mask every run of 6+ digits in free text (gateway error messages may echo the number)."""
    return _LONG_DIGITS.sub(lambda m: mask(m.group(0)), text or "")
