"""Retry-After per RFC 9110: delay-seconds or an HTTP date, clamped; a 429 with a date slows the row down."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest
import responses

from sender.gateways.retry_after import MAX_RETRY_AFTER_S, retry_after_seconds
from sender.loop import run_once
from tests.sender.conftest import make_config, row, seed_session

NOW = dt.datetime(2026, 2, 7, 12, 0, 0, tzinfo=dt.timezone.utc)

CASES = [
    # (Retry-After value, Date header, expected seconds)
    ("120", None, 120.0),
    ("0", None, 0.0),
    (" 30 ", None, 30.0),
    ("Sat, 07 Feb 2026 12:02:00 GMT", None, 120.0),  # IMF-fixdate, against our clock
    ("Saturday, 07-Feb-26 12:02:00 GMT", None, 120.0),  # obsolete RFC 850 form
    ("Sat Feb  7 12:02:00 2026", None, 120.0),  # obsolete asctime form (GMT by definition)
    ("Sat, 07 Feb 2026 12:02:00 GMT", "Sat, 07 Feb 2026 12:01:30 GMT", 30.0),  # against the gateway's Date
    ("Sat, 07 Feb 2026 11:00:00 GMT", None, 0.0),  # in the past: now
    ("99999999999", None, MAX_RETRY_AFTER_S),  # clamped
    ("Mon, 07 Feb 2028 12:00:00 GMT", None, MAX_RETRY_AFTER_S),  # clamped
    ("Sat, 07 Feb 2026 14:02:00 +0200", None, 120.0),  # not an HTTP-date, but its offset is honoured
    ("-5", None, None),  # not delay-seconds
    ("1.5", None, None),  # not delay-seconds either (1*DIGIT)
    ("nan", None, None),
    ("inf", None, None),
    ("soon", None, None),
    ("", None, None),
    (None, None, None),
]


@pytest.mark.parametrize("value,date_header,expected", CASES, ids=[repr(c[0]) + (" +Date" if c[1] else "")
                                                                    for c in CASES])
def test_retry_after_values(value, date_header, expected):
    assert retry_after_seconds(value, date_header=date_header, now=NOW) == expected


def test_an_http_date_without_a_date_header_is_read_against_our_clock():
    in_two_minutes = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    assert 115 <= retry_after_seconds(in_two_minutes) <= 120


def test_a_429_with_an_http_date_waits_until_that_date(db_url, upgraded, clock, gateway):
    """Loopback gateway: 429 with `Retry-After: <HTTP date 2 minutes after its own Date header>`."""
    ids = seed_session(upgraded, rows=1)
    gateway.retry_after = format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True)
    gateway.plan(51, (429, {"error": True, "code": "RATE_LIMITED"}))
    report = run_once(make_config(db_url, gateway.base_url, **{"sender.retry_after_s": 5}), clock=clock)
    assert report.sent == 0
    got = row(upgraded, ids[0])
    assert got["estado"] == "pendiente"
    wait = (got["next_attempt_at"] - clock.now()).total_seconds()
    # the header has whole seconds and the gateway's Date is written when it answers
    assert 115 <= wait <= 120, wait  # not the configured 5 s


def test_a_429_with_an_unreadable_retry_after_waits_the_configured_time(db_url, upgraded, clock, gateway):
    ids = seed_session(upgraded, rows=1)
    gateway.retry_after = "soon"
    gateway.plan(51, (429, {"error": True, "code": "RATE_LIMITED"}))
    run_once(make_config(db_url, gateway.base_url, **{"sender.retry_after_s": 5}), clock=clock)
    got = row(upgraded, ids[0])
    assert (got["estado"], got["next_attempt_at"]) == ("pendiente", clock.now() + dt.timedelta(seconds=5))


@responses.activate
def test_the_adapter_reads_an_http_date_against_the_gateways_own_date_header():
    """Unit level: a gateway whose clock is days behind ours still gets its 30 s."""
    from sender.gateways.session_manager import SessionManagerGateway

    responses.add(responses.POST, "http://gw.test:3002/send", status=429, json={"error": True},
                  headers={"Retry-After": "Sat, 07 Feb 2026 12:02:00 GMT", "Date": "Sat, 07 Feb 2026 12:01:30 GMT"})
    gateway = SessionManagerGateway("http://gw.test:3002", send_timeout_s=2, status_timeout_s=1)
    assert gateway.send(1, "5491123456821", "x").retry_after_s == 30.0
