"""The `Retry-After` header of a 429, read per RFC 9110 section 10.2.3.

    Retry-After = HTTP-date / delay-seconds

delay-seconds is a non-negative integer; HTTP-date is IMF-fixdate
(`Sun, 06 Nov 1994 08:49:37 GMT`) or, obsolete but to be accepted, RFC 850 and
asctime forms. A date is turned into seconds against the response's own `Date`
header when there is one (the gateway's clock against itself: no skew), else
against our clock. A date in the past means "now" (0). Anything unreadable gives
None (the configured `sender.retry_after_s` applies), and no answer can make the
sender wait longer than MAX_RETRY_AFTER_S.
"""

from __future__ import annotations

import datetime as dt
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 3600.0  # a gateway cannot park a session for more than an hour


def _http_date(text: str) -> dt.datetime | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)  # HTTP dates are GMT


def retry_after_seconds(value: str | None, *, date_header: str | None = None,
                        now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value, clamped to [0, MAX_RETRY_AFTER_S]; None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return min(float(int(text)), MAX_RETRY_AFTER_S)
    when = _http_date(text)
    if when is None:
        return None
    reference = _http_date(date_header) if date_header else None
    if reference is None:
        reference = now or dt.datetime.now(dt.timezone.utc)
    seconds = (when - reference).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
