"""Every row of the outcome table (DESIGN.md section 3), through the real loop and a real socket.

Two pending rows on one session; the gateway is scripted for the first POST and
answers "ok" afterwards. After one pass we check the first row's state and
history, whether the second row was still worked (per-message problem) or not
(session-level problem), and exactly what the gateway received and delivered.
Then a second pass proves rows of unknown outcome are never sent again.
"""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender.loop import Sender, run_once

from tests.sender.conftest import history, make_config, row, seed_session, sent_today

P, E, OK, ERR = "pendiente", "enviando", "enviado", "error"
CLAIM = (P, E, "envios-sender")

# behaviour of the first POST -> (row 1 state, row 1 history after the claim, POSTs received,
#                                  deliveries, is row 2 worked in the same pass?)
CASES = {
    "2xx with message id": ("ok", OK, [(E, OK, "envios-sender")], 2, 2, True),
    "2xx without message id": ("no_id", OK, [(E, OK, "envios-sender")], 2, 2, True),
    "400 invalid number": (
        (400, {"error": True, "code": "INVALID_NUMBER", "message": "bad 5491100470000"}),
        ERR,
        [(E, ERR, "envios-sender")],
        2,
        1,
        True,
    ),
    "422 validation": (
        (422, {"error": True, "code": "VALIDATION_ERROR", "message": "empty"}),
        ERR,
        [(E, ERR, "envios-sender")],
        2,
        1,
        True,
    ),
    "409 session not ready": (
        (409, {"error": True, "code": "SESSION_NOT_READY", "message": "DISCONNECTED"}),
        P,
        [(E, P, "envios-sender")],
        1,
        0,
        False,
    ),
    "429 rate limited": (
        (429, {"error": True, "code": "RATE_LIMITED"}),
        P,
        [(E, P, "envios-sender")],
        2,
        1,
        True,
    ),
    "connection refused": ("refuse", P, [(E, P, "envios-sender")], 0, 0, False),
    "401 key refused": (
        (401, {"error": True, "code": "UNAUTHORIZED"}),
        P,
        [(E, P, "envios-sender")],
        1,
        0,
        False,
    ),
    "500 gateway did not send": (
        (500, {"error": True, "code": "WHATSAPP_ERROR", "message": "not sent"}),
        P,
        [(E, P, "envios-sender")],
        2,
        1,
        True,
    ),
    "502 from a proxy": ((502, "<html>Bad Gateway</html>"), E, [], 1, 0, False),
    "500 without the did-not-send code": (
        (500, {"error": True, "code": "INTERNAL"}),
        E,
        [],
        1,
        0,
        False,
    ),
    "timeout after delivery": ("timeout", E, [], 1, 1, False),
    "reset after delivery": ("reset", E, [], 1, 1, False),
    "2xx unparseable": ("garbage", E, [], 1, 1, False),
    "2xx ok false": ((200, {"ok": False}), E, [], 1, 0, False),
}


SENDER_ID = "outcomes:1:0001"


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: c.replace(" ", "-"))
def test_outcome_table(case, db_url, upgraded, clock, gateway):
    behaviour, state1, tail, posts, deliveries, second_worked = CASES[case]
    first, second = seed_session(upgraded, cliente_id=51, campania_id=47, rows=2)
    gateway.plan(51, behaviour)
    config = make_config(
        db_url, gateway.base_url, **{"gateway.send_timeout_s": 0.5, "sender.retry_after_s": 300}
    )
    report = run_once(config, clock=clock, sender_id=SENDER_ID)

    r1, r2 = row(upgraded, first), row(upgraded, second)
    assert r1["estado"] == state1
    assert history(upgraded, first) == [CLAIM, *tail]
    assert gateway.sends_received == posts
    assert len(gateway.ledger) == deliveries
    assert r2["estado"] == (OK if second_worked else P)
    if not second_worked:
        assert history(upgraded, second) == []
    assert sum(report.outcomes.values()) == (1 if behaviour == "refuse" else posts)  # attempts made
    # the daily count is exactly the rows in enviado
    assert sent_today(upgraded, 47, clock.today()) == sum(1 for r in (r1, r2) if r["estado"] == OK)

    if state1 == OK:
        assert r1["fecha_envio"] == clock.db_now(upgraded)
        assert r1["message_id"] == (gateway.ledger[0]["message_id"] if behaviour == "ok" else None)
        assert r1["attempts"] == 1 and r1["claimed_by"] == SENDER_ID
    elif state1 == ERR:
        assert (
            "HTTP 4" in r1["last_error"] and r1["message_id"] is None and r1["fecha_envio"] is None
        )
        assert "5491100470000" not in r1["last_error"]  # numbers echoed by the gateway are masked
    elif state1 == P:
        assert r1["message_id"] is None and r1["fecha_envio"] is None and r1["last_error"]
        if case.startswith("500"):
            assert r1["attempts"] == 1  # a real attempt: counts toward max_attempts
            assert r1["next_attempt_at"] == clock.db_now(upgraded) + dt.timedelta(seconds=300)
        else:
            assert r1["attempts"] == 0  # the gateway never tried: the attempt is given back
            expected_wait = dt.timedelta(seconds=1) if case.startswith("429") else None
            assert (
                r1["next_attempt_at"] and r1["next_attempt_at"] - clock.db_now(upgraded)
            ) == expected_wait
    else:  # unknown: stays enviando, with the reason, claimed by us
        assert r1["claimed_by"] == SENDER_ID and r1["claimed_at"] == clock.db_now(upgraded)
        assert r1["last_error"].startswith("unknown outcome")
        assert r1["message_id"] is None

    # A second pass, gateway healthy again: unknown rows are never sent again,
    # definitely-not-sent rows are (unless waiting for their retry time).
    gateway.listen_again()
    before = gateway.delivered_to()
    run_once(config, clock=clock)
    r1_after = row(upgraded, first)
    to1 = gateway.posts[0]["to"] if gateway.posts else None
    if state1 == E:
        assert r1_after["estado"] == E
        assert gateway.delivered_to()[to1] == before[to1]  # not one more delivery
        assert [p["to"] for p in gateway.posts].count(to1) == 1  # not even one more attempt
    if state1 == P and r1["next_attempt_at"] is None:
        assert r1_after["estado"] == OK
    assert row(upgraded, second)["estado"] == OK
    assert max(gateway.delivered_to().values()) == 1  # nobody got a message twice


def test_gateway_error_on_the_last_attempt_makes_the_row_error(db_url, upgraded, clock, gateway):
    (first,) = seed_session(upgraded, rows=1)
    upgraded.execute("UPDATE ll_envios_whatsapp SET attempts = 4 WHERE id = %s", (first,))
    gateway.plan(51, (500, {"error": True, "code": "WHATSAPP_ERROR", "message": "not sent"}))
    sender = Sender(
        make_config(db_url, gateway.base_url, **{"sender.max_attempts": 5}), clock=clock
    )
    try:
        sender.run_once()
    finally:
        sender.close()
    r = row(upgraded, first)
    assert (r["estado"], r["attempts"]) == (ERR, 5)
    assert history(upgraded, first) == [CLAIM, (E, ERR, "envios-sender")]
    assert "WHATSAPP_ERROR" in r["last_error"]


@pytest.mark.parametrize("state", ["DISCONNECTED", "AWAITING_QR", "CONNECTING", "ERROR"])
def test_session_not_ready_at_status_means_no_claim_and_no_send(
    state, db_url, upgraded, clock, gateway
):
    ids = seed_session(upgraded, rows=3)
    gateway.set_session(51, state)
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        report = sender.run_once()
    finally:
        sender.close()
    assert gateway.sends_received == 0 and gateway.status_requests >= 1
    assert all(row(upgraded, i)["estado"] == P and history(upgraded, i) == [] for i in ids)
    assert report.sessions_worked[51].session_state == state


def test_older_gateway_builds_answer_status_instead_of_state(db_url, upgraded, clock, gateway):
    ids = seed_session(upgraded, rows=2)
    gateway.status_key = "status"
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        sender.run_once()
    finally:
        sender.close()
    assert [row(upgraded, i)["estado"] for i in ids] == [OK, OK]
