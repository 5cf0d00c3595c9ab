"""A 429's Retry-After is read per RFC 9110 and capped; odd values never crash or park a row
for years.

A date is read against the gateway's own `Date` header when it sends one (its
clock against itself), else against ours. Stored times follow the database's clock.
"""

from __future__ import annotations

import datetime as dt
import math
from email.utils import format_datetime

import pytest
import responses
from envios.sender.gateways import retry_after
from envios.sender.gateways.base import Outcome, SendResult
from envios.sender.loop import run_once
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sender.conftest import make_config, row, seed_session

NOW = dt.datetime(2026, 10, 21, 7, 27, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "value,seconds",
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 60.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-26 07:28:00 GMT", 60.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:00 2026", 60.0),  # obsolete asctime form
        ("Tue, 20 Oct 2026 07:28:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("nan", None),
        ("inf", None),
        ("-5", None),
        ("1.5", None),
        ("1e3", None),
        ("soon", None),
        ("", None),
        ("Wed, 99 Oct 2026 07:28:00 GMT", None),
    ],
)
def test_parse_follows_rfc_9110(value, seconds):
    assert retry_after.parse(value, NOW) == seconds


def test_clamp_caps_only_what_is_above_the_maximum():
    far = SendResult(Outcome.RATE_LIMITED, retry_after_s=retry_after.parse("99999999999", NOW))
    assert retry_after.clamp(far, 3600).retry_after_s == 3600
    near = SendResult(Outcome.RATE_LIMITED, retry_after_s=30.0)
    assert retry_after.clamp(near, 3600) is near


@settings(max_examples=500, deadline=None)
@given(
    value=st.one_of(
        st.text(max_size=40),
        st.from_regex(r"[0-9]{1,40}", fullmatch=True),
        st.datetimes(timezones=st.just(dt.timezone.utc)).map(
            lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")
        ),
    )
)
def test_fuzzed_headers_give_none_or_a_finite_wait(value):
    seconds = retry_after.parse(value, NOW)
    assert seconds is None or (math.isfinite(seconds) and 0 <= seconds <= 10 * 365 * 86_400)


@pytest.mark.parametrize(
    "header", ["nan", "inf", "99999999999", "-5", "garbage", "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_a_429_with_an_odd_retry_after_waits_at_most_the_maximum(
    header, db_url, upgraded, clock, gateway
):
    # no second row to pace for
    (first,) = seed_session(upgraded, cliente_id=51, campania_id=47, rows=1)
    gateway.retry_after = header
    gateway.plan(51, (429, {"error": True, "code": "RATE_LIMITED"}))
    config = make_config(
        db_url, gateway.base_url, **{"sender.retry_after_s": 300, "gateway.max_retry_after_s": 1800}
    )
    run_once(config, clock=clock, sender_id="ra:1")

    r = row(upgraded, first)
    assert r["estado"] == "pendiente"
    wait = (r["next_attempt_at"] - clock.db_now(upgraded)).total_seconds()
    # capped, or the configured wait when unreadable
    assert wait == (1800 if header[0] in "9F" else 300)


@pytest.mark.parametrize(
    "value,date_header,seconds",
    [
        # against the gateway's Date
        ("Wed, 21 Oct 2026 07:28:00 GMT", "Wed, 21 Oct 2026 07:27:30 GMT", 30.0),
        (
            "Wed, 21 Oct 2026 07:28:00 GMT",
            "not a date",
            60.0,
        ),  # an unreadable Date: against our clock
        (
            "Wed, 21 Oct 2026 09:28:00 +0200",
            None,
            60.0,
        ),  # not an HTTP-date, but its offset is honoured
    ],
)
def test_a_date_is_read_against_the_gateways_own_date_header(value, date_header, seconds):
    assert retry_after.parse(value, NOW, date_header=date_header) == seconds


def test_a_429_with_an_http_date_waits_until_that_date(db_url, upgraded, clock, gateway):
    """Loopback gateway: 429 with `Retry-After: <HTTP date 2 minutes after its own Date header>`."""
    ids = seed_session(upgraded, rows=1)
    gateway.retry_after = format_datetime(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True
    )
    gateway.plan(51, (429, {"error": True, "code": "RATE_LIMITED"}))
    report = run_once(
        make_config(db_url, gateway.base_url, **{"sender.retry_after_s": 5}), clock=clock
    )
    assert report.sent == 0
    got = row(upgraded, ids[0])
    assert got["estado"] == "pendiente"
    wait = (got["next_attempt_at"] - clock.db_now(upgraded)).total_seconds()
    # the header has whole seconds and the gateway's Date is written when it answers
    assert 115 <= wait <= 120, wait  # not the configured 5 s


@responses.activate
def test_the_adapter_reads_an_http_date_against_the_gateways_own_date_header():
    """Unit level: a gateway whose clock is days behind ours still gets its 30 s."""
    from envios.sender.gateways.session_manager import SessionManagerGateway

    responses.add(
        responses.POST,
        "http://gw.test:3002/send",
        status=429,
        json={"error": True},
        headers={
            "Retry-After": "Sat, 07 Feb 2026 12:02:00 GMT",
            "Date": "Sat, 07 Feb 2026 12:01:30 GMT",
        },
    )
    gateway = SessionManagerGateway("http://gw.test:3002", send_timeout_s=2, status_timeout_s=1)
    assert gateway.send(1, "5491123456821", "x").retry_after_s == 30.0
