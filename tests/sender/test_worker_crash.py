"""The worker's crash handler: a bug inside a session worker ends in a defined state, logged
and reported.

The bug is a real exception raised from inside the worker's own code path (not a
mocked worker): before the claim commits, and after the gateway delivered.
"""

from __future__ import annotations

import logging

from envios.sender import session_worker
from envios.sender.loop import run_once
from envios.sender.metrics import SenderMetrics

from tests.sender.conftest import estados, history, make_config, seed_session


class Bug(Exception):
    """Stands for a programming error inside the worker."""


def leases(conn) -> int:
    return int(conn.scalar("SELECT COUNT(*) FROM envios_session_leases"))


def test_a_bug_inside_the_claim_rolls_back_releases_the_lease_and_is_reported(
    db_url, upgraded, clock, gateway, monkeypatch, caplog
):
    ids = seed_session(upgraded, rows=2)

    def broken_vet(row):
        raise Bug("boom")

    monkeypatch.setattr(session_worker, "vet", broken_vet)
    with caplog.at_level(logging.INFO, logger="envios.sender"):
        report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    result = report.sessions_worked[51]
    assert result.stop_reason == "crashed: Bug"
    assert estados(upgraded) == {"pendiente": 2}  # the claim's transaction was rolled back
    assert [history(upgraded, i) for i in ids] == [[], []]
    assert gateway.sends_received == 0
    assert leases(upgraded) == 0  # released: the session is not blocked for lease_ttl_s
    assert any(
        "session 51 worker crashed" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )
    assert any("event=session_stop" in m and "crashed: Bug" in m for m in caplog.messages)


def test_a_bug_after_a_delivery_leaves_the_row_enviando_and_it_is_never_sent_again(
    db_url, upgraded, clock, gateway, monkeypatch, caplog
):
    """Delivered, then the worker crashed before recording: an unknown outcome (stuck), never a
    re-send."""
    ids = seed_session(upgraded, rows=2)

    def broken_outcome(self, outcome, latency_s):
        raise Bug("after the send")

    monkeypatch.setattr(SenderMetrics, "outcome", broken_outcome)
    with caplog.at_level(logging.INFO, logger="envios.sender"):
        report = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert report.sessions_worked[51].stop_reason == "crashed: Bug"
    assert gateway.sends_received == 1 and len(gateway.ledger) == 1
    assert estados(upgraded) == {"enviando": 1, "pendiente": 1}
    assert history(upgraded, ids[0]) == [("pendiente", "enviando", "envios-sender")]
    assert leases(upgraded) == 0

    monkeypatch.undo()
    again = run_once(make_config(db_url, gateway.base_url), clock=clock)
    assert again.sent == 1  # only the other row
    assert gateway.sends_received == 2
    assert gateway.delivered_to().most_common(1)[0][1] == 1, "a recipient was delivered twice"
    assert estados(upgraded) == {"enviando": 1, "enviado": 1}
