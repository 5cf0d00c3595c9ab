"""Phone normalisation never invents a digit (issue 12); fuzzed with Hypothesis.

The property tested on every input (`assert_no_invented_digit`): normalise() either raises
InvalidPhone with a one-line reason that never holds more than the last four digits, or
returns E.164 digits whose national part (after the country code and, for Argentina, the
mobile 9 the numbering plan adds) is a subsequence of the input's digits, ending with the
input's last four digits, with at most the written prefixes (00 / country code, trunk 0,
mobile 15) left out.
"""

from __future__ import annotations

import re

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envios.phones import InvalidPhone, keeps_digits, normalise


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("011 15 4010-0001", "5491140100001"),  # trunk 0 + mobile 15, as phonenumbers reads them
        ("+54 9 11 4010-0001", "5491140100001"),
        ("5491140100001", "5491140100001"),
        ("(0351) 15 555-1234", "5493515551234"),
        ("0054 9 11 4010 0001", "5491140100001"),
        ("11 4010 0001", "541140100001"),
    ],
)
def test_argentine_forms_follow_the_library(raw, expected):
    assert normalise(raw, "AR") == expected


@pytest.mark.parametrize(
    "raw,reason",
    [
        ("+54 9 11 4010-abcd", "letters"),  # was read as keypad digits 2223
        ("11 abcd 0001", "letters"),
        ("1-800-FLOWERS", "letters"),
        ("5491140100001x", "extension"),  # a trailing x was dropped
        ("549114010000x", "extension"),
        ("+54 11 4010-0001 ext. 12", "extension"),  # the extension vanished
        ("+54 11 4010-0001 #12", "extension"),
        ("15 4010-0004", "no such area code"),  # 15 without an area code was sent to 541540100004
        ("54 9 11 4010+0001", "'+' inside"),
        ("+54 9 11 4010*0001", "character '*'"),
    ],
)
def test_what_would_change_the_digits_is_refused_with_the_reason(raw, reason):
    with pytest.raises(InvalidPhone, match=re.escape(reason)):
        normalise(raw, "AR")


def test_reasons_never_show_more_than_the_last_four_digits():
    with pytest.raises(InvalidPhone) as info:
        normalise("+54 9 11 4010-0001 ext 12")
    assert "4010" not in str(info.value)


def test_keeps_digits_is_the_property_itself():
    assert keeps_digits("01115 40100001", "5491140100001", 54)  # trunk 0 + 15 dropped, 9 added
    # same digits (refused for validity instead)
    assert keeps_digits("1540100004", "541540100004", 54)
    assert not keeps_digits("2223", "5411402223", 54)  # digits the input never had
    assert not keeps_digits("54911401000012", "5491140100001", 54)  # a trailing digit dropped


# -- fuzzing
# ----------------------------------------------------------------------------------------


def assert_no_invented_digit(raw: str, region: str = "AR") -> None:
    try:
        out = normalise(raw, region)
    except InvalidPhone as exc:
        text = str(exc)
        assert text and "\n" not in text
        assert not re.search(r"\d{5,}", text), text  # never more than the last four digits
        return
    assert re.fullmatch(r"[0-9]{3,15}", out), out  # E.164: at most 15 digits
    number = phonenumbers.parse("+" + out)
    assert phonenumbers.is_valid_number(number)
    given_digits = re.sub(r"[^0-9]", "", raw)
    cc = str(number.country_code)
    national = out[len(cc) :]
    tails = [national] + ([national[1:]] if cc == "54" and national.startswith("9") else [])
    assert any(_subsequence(t, given_digits) for t in tails), (raw, out)
    assert given_digits.endswith(out[-4:]), (raw, out)
    assert len(given_digits) - min(len(t) for t in tails) <= 2 + len(cc) + 1 + 2, (raw, out)


def _subsequence(needle: str, haystack: str) -> bool:
    rest = iter(haystack)
    return all(ch in rest for ch in needle)


SEPARATORS = st.sampled_from(["", " ", "-", ".", "(", ")", "/", "  "])
NOISE = st.sampled_from(
    [
        "x",
        "X",
        "ext",
        "ext.",
        "#",
        "*",
        "a",
        "abcd",
        "ñ",
        "+",
        ",",
        ";",
        "٣",
        "１",
        "\t",
        "\n",
        "@c.us",
        "0",
        "15",
        "9",
        "00",
        "54",
    ]
)
AREAS = st.sampled_from(["11", "221", "223", "261", "341", "351", "381", "2944", "3543"])


@st.composite
def argentine_looking(draw) -> str:
    """Numbers written the ways people write them, then perturbed."""
    parts = []
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["+54", "54", "0054", "+54 9", "549", "+549"])))
    elif draw(st.booleans()):
        parts.append("0")
    area = draw(AREAS)
    parts.append(area)
    if draw(st.booleans()):
        parts.append("15")
    size = draw(st.one_of(st.just(10 - len(area)), st.integers(4, 9)))  # mostly the right length
    parts.append(
        draw(st.text("23456789", min_size=1, max_size=1))
        + draw(st.text("0123456789", min_size=size - 1, max_size=size - 1))
    )
    text = draw(SEPARATORS).join(parts)
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.one_of(NOISE, SEPARATORS)) + text[at:]
    return text


@settings(max_examples=1500, deadline=None)
@given(
    raw=st.one_of(
        argentine_looking(), st.text(max_size=30), st.text("0123456789 +-()x#.", max_size=25)
    )
)
def test_fuzzed_phones_never_get_an_invented_digit(raw):
    assert_no_invented_digit(raw)


@settings(max_examples=300, deadline=None)
@given(
    raw=st.from_regex(r"\+?[0-9 ()\-]{6,20}", fullmatch=True),
    region=st.sampled_from(["AR", "US", "BR", "ES", "MX", "UY"]),
)
def test_fuzzed_phones_of_other_regions(raw, region):
    assert_no_invented_digit(raw, region)
