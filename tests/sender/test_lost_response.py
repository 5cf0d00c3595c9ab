"""The gateway delivers but the answer is lost: the row stays enviando and no sender sends it
again."""

from __future__ import annotations

import pytest
from envios.sender.gateways.base import Outcome
from envios.sender.loop import run_once

from envios.clock import Clock
from tests.sender.conftest import (
    envios,
    estados,
    history,
    make_config,
    row,
    seed_session,
    sender_env,
)


@pytest.mark.parametrize(
    "fault",
    [
        {"slow_rate": 1.0, "slow_s": 2.0},  # answered after the send timeout
        {"drop_connection_rate": 1.0},  # connection closed without an answer
        {"garbage_rate": 1.0},  # 200 that is not JSON
    ],
    ids=["timeout", "dropped", "garbage"],
)
def test_a_delivered_message_whose_answer_is_lost_is_never_sent_again(
    fault, db_url, upgraded, sim, tmp_path
):
    ids = seed_session(upgraded, cliente_id=51, rows=3)
    sim.state.set_faults(**fault)
    clock = Clock("America/Argentina/Buenos_Aires")
    config = make_config(
        db_url, sim.base_url, **{"gateway.send_timeout_s": 0.5, "sender.lease_ttl_s": 1.0}
    )
    report = run_once(config, clock=clock)
    assert report.outcomes and set(report.outcomes) == {Outcome.UNKNOWN}
    stuck = row(upgraded, ids[0])
    assert stuck["estado"] == "enviando" and stuck["message_id"] is None
    assert history(upgraded, ids[0]) == [("pendiente", "enviando", "envios-sender")]
    assert len(sim.state.ledger) == 1 and sim.state.sends_received == 1  # it WAS delivered
    delivered_to = sim.state.ledger[0]["to"]

    # The gateway is healthy again. Another sender in this process, the same
    # sender again, and a separate `envios send --once` process all run.
    sim.state.set_faults(slow_rate=0.0, drop_connection_rate=0.0, garbage_rate=0.0)
    for _ in range(2):
        run_once(config, clock=clock)
    result = envios(
        "send", "--once", env=sender_env(db_url, sim.base_url), cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr

    assert row(upgraded, ids[0])["estado"] == "enviando"  # still: only a person resolves it
    assert history(upgraded, ids[0]) == [("pendiente", "enviando", "envios-sender")]
    assert [e["to"] for e in sim.state.ledger].count(delivered_to) == 1
    assert sim.state.sends_received == 3  # the stuck one once, then the two others once each
    assert estados(upgraded) == {"enviando": 1, "enviado": 2}
