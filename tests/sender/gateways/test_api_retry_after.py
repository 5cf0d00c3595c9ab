"""Every API adapter reads a 429's Retry-After like the session manager's: RFC 9110, capped.

Before, the API adapters read it with float(): "nan" and "inf" passed, and
"99999999999" parked the row for three thousand years (issue 12's failure, again).
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime

import pytest
from envios.sender.gateways import build_gateway
from envios.sender.gateways.base import Outcome

from envios.config import load

TOO_MANY = {
    "waha": (429, {"statusCode": 429, "message": "Too Many Requests"}),
    "evolution": (429, {"status": 429, "error": "Too Many Requests"}),
    "cloud_api": (429, {"error": {"message": "Too many calls"}}),
}


def adapter(fake, kind: str):
    config = load(
        None,
        environ={
            "ENVIOS_GATEWAY_KIND": kind,
            "ENVIOS_GATEWAY_BASE_URL": fake.base_url,
            "ENVIOS_GATEWAY_API_KEY": "k3y",
            "ENVIOS_GATEWAY_PHONE_NUMBER_ID": fake.phone_number_id,
            "ENVIOS_GATEWAY_MAX_RETRY_AFTER_S": "600",
            "ENVIOS_GATEWAY_SEND_TIMEOUT_S": "3",
        },
    )
    return build_gateway(config)


@pytest.mark.parametrize("kind", list(TOO_MANY))
@pytest.mark.parametrize(
    "header,wait",
    [
        ("7", 7.0),
        # unreadable: the configured wait applies
        ("nan", None),
        ("inf", None),
        ("-5", None),
        ("soon", None),
        ("99999999999", 600.0),  # capped at gateway.max_retry_after_s
    ],
)
def test_retry_after_is_read_per_rfc_9110_and_capped(fake_api, kind, header, wait):
    fake = fake_api(kind)
    fake.retry_after = header
    fake.plan(TOO_MANY[kind])
    result = adapter(fake, kind).send(51, "5491100000001", "Hola")
    assert (result.outcome, result.retry_after_s) == (Outcome.RATE_LIMITED, wait)


@pytest.mark.parametrize("kind", list(TOO_MANY))
def test_an_http_date_is_read_too(fake_api, kind):
    fake = fake_api(kind)
    fake.retry_after = format_datetime(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=120), usegmt=True
    )
    fake.plan(TOO_MANY[kind])
    result = adapter(fake, kind).send(51, "5491100000001", "Hola")
    assert result.outcome is Outcome.RATE_LIMITED and 115 <= result.retry_after_s <= 120
