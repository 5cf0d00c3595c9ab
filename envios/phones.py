"""Phone numbers: normalised to digits with country code, masked in every log line.

    normalise("+54 9 11 2345-6821")  -> "5491123456821"
    normalise("011 15 2345-6821")    -> "5491123456821"   (local mobile form)
    normalise("1123456821")          -> "541123456821"    (country code added)
    normalise("")                    -> raises InvalidPhone("no phone number")

Numbers without a leading + are read as numbers of `region` (Argentina by
default), so both production forms ("5491123456701" and local ones) work; the
Argentine trunk 0 and mobile 15 are read as the `phonenumbers` library reads
them. A number is accepted only when the library calls it valid for its
country ("15 4010-0004" has no area code: refused, not sent to 541540100004).

Normalisation never invents a digit: letters are refused (the library would
read `abcd` as keypad digits 2223), so are extensions (`x`, `ext.`, `#`)
and any character other than digits, spaces, + - . ( ) /. What comes out is
checked against what came in (`keeps_digits`); a number that would change is
refused rather than sent to someone else.
"""

from __future__ import annotations

import re

import phonenumbers

DEFAULT_REGION = "AR"
_WA_SUFFIX = re.compile(r"@(c\.us|s\.whatsapp\.net)$", re.IGNORECASE)
_LONG_DIGITS = re.compile(r"\d{6,}")
_EXTENSION = re.compile(
    r"(?:#|\bext\.?|\bextension|x|;ext=|anexo|int\.?|interno)\s*[0-9]*\s*$", re.IGNORECASE
)
_LETTER = re.compile(r"[^\W\d_]")  # a letter of any script
_NOT_ALLOWED = re.compile(r"[^0-9+\s().\-/]")
_ARGENTINA = 54
_AR_MOBILE = "9"  # the digit Argentine mobiles carry after the country code in international form


class InvalidPhone(ValueError):
    """The number cannot be sent to; str() is the reason (never the full number)."""


def normalise(raw: object, region: str = DEFAULT_REGION) -> str:
    """Digits only, country code first (E.164 without '+'), or InvalidPhone with a reason."""
    text = "" if raw is None else str(raw).strip()
    text = _WA_SUFFIX.sub("", text).strip()  # legacy rows may carry the WhatsApp JID suffix
    if not text:
        raise InvalidPhone("no phone number")
    if not re.search(r"\d", text):
        raise InvalidPhone(f"not a phone number ({mask(text)})")
    _check_characters(text)
    digits = re.sub(r"[^0-9]", "", text)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(f"not a phone number ({mask(text)}): {_parse_reason(exc)}") from None
    if number.extension:  # the characters check should have caught it; never drop one silently
        raise InvalidPhone(
            f"phone number with an extension ({mask(text)}): WhatsApp numbers have none"
        )
    if not phonenumbers.is_possible_number(number):
        why = phonenumbers.is_possible_number_with_reason(number)
        reason = {
            phonenumbers.ValidationResult.TOO_SHORT: "too short",
            phonenumbers.ValidationResult.TOO_LONG: "too long",
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
            phonenumbers.ValidationResult.INVALID_LENGTH: "impossible length",
        }.get(why, "impossible number")
        raise InvalidPhone(f"impossible phone number ({mask(text)}): {reason}")
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(
            f"invalid phone number ({mask(text)}): no such area code or number range"
            f" for +{number.country_code}"
        )
    result = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")
    if not keeps_digits(digits, result, number.country_code):
        raise InvalidPhone(f"phone number ({mask(text)}) would change its digits when normalised")
    return result


def _check_characters(text: str) -> None:
    """Refuse what the library would silently turn into digits or drop."""
    if _EXTENSION.search(text):
        raise InvalidPhone(
            f"phone number with an extension ({mask(text)}): WhatsApp numbers have none"
        )
    if _LETTER.search(text):
        raise InvalidPhone(
            f"phone number with letters ({mask(text)}): letters are not read as digits"
        )
    bad = _NOT_ALLOWED.search(text)
    if bad:
        shown = bad.group(0) if bad.group(0).isprintable() and not bad.group(0).isdigit() else "?"
        raise InvalidPhone(
            f"phone number with the character {shown!r} ({mask(text)}):"
            " only digits, spaces and + - . ( ) / are read"
        )
    if "+" in text[1:]:
        raise InvalidPhone(f"phone number with a '+' inside ({mask(text)})")


def keeps_digits(given: str, normalised: str, country_code: int) -> bool:
    """True when `normalised` invents no digit and drops none but prefixes.

    The property: after its country code (and, for Argentina, the mobile 9 the
    numbering plan adds), the output's digits appear in the input's digits in
    the same order (a subsequence); the input ends with the same last four
    digits; and at most the prefixes a number can be written with were left out
    (00 or the country code, the trunk 0, the mobile 15).
    """
    cc = str(country_code)
    if not normalised.startswith(cc):
        return False
    national = normalised[len(cc) :]
    candidates = [national]
    if country_code == _ARGENTINA and national.startswith(_AR_MOBILE):
        candidates.append(national[1:])
    max_dropped = len("00") + len(cc) + len("0") + len("15")
    return any(
        _is_subsequence(n, given)
        and given.endswith(normalised[-4:])
        and len(given) - len(n) <= max_dropped
        for n in candidates
    )


def _is_subsequence(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(ch in rest for ch in needle)


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


# In a WhatsApp id the number is the digit run right before '@' (or before '-' in an old
# group id, 'creator-timestamp@g.us'); the suffix after it is the unique part of the id.
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{6,}(?=[-@])")


def mask_message_id(message_id: object) -> str:
    """The number inside a WhatsApp id masked, the unique suffix kept whole:
    'true_5491140100001@c.us_3EB0123456789A' -> 'true_*********0001@c.us_3EB0123456789A'.
    An id of another shape is scrubbed like free text."""
    text = "" if message_id is None else str(message_id)
    if "@" not in text:
        return scrub(text)
    return _ID_NUMBER.sub(lambda m: mask(m.group(0)), text)


def scrub(text: str) -> str:
    """Mask every run of 6+ digits in free text (gateway error messages may echo the number)."""
    return _LONG_DIGITS.sub(lambda m: mask(m.group(0)), text or "")
