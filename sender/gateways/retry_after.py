"""`Retry-After` (RFC 9110 section 10.2.3): delay-seconds or an HTTP-date, never trusted blindly.

    parse("120")                            -> 120.0
    parse("Wed, 21 Oct 2026 07:28:00 GMT")  -> seconds from now to then (0 when past)
    parse("nan"), parse("inf"), parse("-5"), parse("soon") -> None   (the configured wait applies)
    clamp(SendResult(..., retry_after_s=99999999999), 3600)  -> retry_after_s=3600

A gateway's answer decides how long a row waits; "99999999999" would park it
until the year 5195 and "nan" crashed the date arithmetic. Only what RFC 9110
allows is read (1*DIGIT, or an IMF-fixdate / obsolete date), and what is read
is capped at `gateway.max_retry_after_s`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email.utils
import re

from envios.sender.gateways.base import SendResult

DEFAULT_MAX_S = 3600.0
_DELAY_SECONDS = re.compile(r"[0-9]{1,20}")  # 1*DIGIT; 20 digits is past any sane wait already
_CEILING_S = 10 * 365 * 86_400.0  # what parse() ever returns before clamp(): finite, storable


def _http_date(text: str) -> dt.datetime | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and asctime: UTC by definition
        when = when.replace(tzinfo=dt.timezone.utc)
    return when


def parse(
    value: str | None, now: dt.datetime | None = None, *, date_header: str | None = None
) -> float | None:
    """Seconds to wait (finite, >= 0), or None when the header is absent or not RFC 9110.

    A date is measured against the response's own `Date` header when it has one
    (the gateway's clock against itself: no skew), else against `now` (our clock).
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return min(float(int(text)), _CEILING_S)
    when = _http_date(text)
    if when is None:
        return None
    current = (
        (_http_date(date_header) if date_header else None)
        or now
        or dt.datetime.now(dt.timezone.utc)
    )
    seconds = (when - current).total_seconds()
    return min(max(seconds, 0.0), _CEILING_S)


def clamp(result: SendResult, max_s: float) -> SendResult:
    """The result with its retry_after_s at most `max_s` (gateway.max_retry_after_s)."""
    if result.retry_after_s is None or result.retry_after_s <= max_s:
        return result
    return dataclasses.replace(result, retry_after_s=float(max_s))
