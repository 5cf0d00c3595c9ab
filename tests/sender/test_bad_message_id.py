"""Issue 12: a "sent" whose message id the column cannot hold is a gateway fault with its own
outcome.

The row stays `enviando` (flagged with the reason, resolved by `envios reconcile`), the
session stops, and the row is never sent again.
"""

from __future__ import annotations

import pytest
from envios.sender.gateways.base import MESSAGE_ID_MAX, Outcome, SendResult
from envios.sender.loop import run_once

from tests.sender.conftest import history, make_config, row, seed_session


@pytest.mark.parametrize(
    "message_id,outcome",
    [
        ("A" * MESSAGE_ID_MAX, Outcome.SENT),
        ("A" * (MESSAGE_ID_MAX + 1), Outcome.BAD_MESSAGE_ID),
        ("true_549@c.us_3EB0😀", Outcome.BAD_MESSAGE_ID),
        ("id\nwith a line break", Outcome.BAD_MESSAGE_ID),
        (None, Outcome.SENT_WITHOUT_ID),
    ],
)
def test_message_ids_that_cannot_be_stored_are_their_own_outcome(message_id, outcome):
    result = SendResult.sent(message_id, http_status=200)
    assert result.outcome is outcome
    assert result.outcome.delivered is (None if outcome is Outcome.BAD_MESSAGE_ID else True)
    if outcome is Outcome.BAD_MESSAGE_ID:
        assert result.message_id is None and "message id" in result.reason


def test_a_message_id_longer_than_the_column_leaves_the_row_flagged_and_never_retried(
    db_url, upgraded, clock, gateway
):
    first, second = seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)
    gateway.plan(51, (200, {"ok": True, "message_id": "3EB0" + "F" * 296}))
    config = make_config(db_url, gateway.base_url)
    report = run_once(config, clock=clock, sender_id="bad-id:1")

    r1 = row(upgraded, first)
    assert r1["estado"] == "enviando" and r1["message_id"] is None
    assert "message id of 300 characters" in r1["last_error"]
    assert history(upgraded, first) == [("pendiente", "enviando", "envios-sender")]
    assert row(upgraded, second)["estado"] == "pendiente"  # the session stopped: a gateway fault
    assert report.outcomes[Outcome.BAD_MESSAGE_ID] == 1

    run_once(config, clock=clock, sender_id="bad-id:2")
    assert gateway.sends_received == 2  # the first row was not sent again; the second was
    assert row(upgraded, first)["estado"] == "enviando"
