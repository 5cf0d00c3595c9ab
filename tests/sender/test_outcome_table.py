"""The outcome table, pinned: DESIGN.md sections 3 and 9 written out by hand, judged on real
sockets.

Never derived from `sender.session_worker.ACTIONS` or the adapter's OUTCOME_TABLE:
if either drifts from the contract, a row below fails. Each row scripts the first
POST /send of client 51 on a fake of one of the three session-manager builds
(tests/sender/gateway.py), runs one pass of the real sender, and checks the row's
end state and what the engine did next, by what the fake saw:

    NEXT            client 51's second row is sent in the same pass
    PACED           ... and its POST starts at least the pacing delay after the first was answered
    SLOW(s)         ... and its POST starts at least `s` seconds after the first was answered
    STOP_SESSION    client 51's second row is not even claimed; other sessions carry on
                    (on the venom build there is one session: every client stops)
    STOP_GATEWAY    nothing more is sent through the gateway, by any session, for
                    sender.retry_after_s (checked across ticks of a long-running sender)
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from envios.sender.loop import Sender, run_once

from tests.sender.conftest import add_campaign, add_rows, add_schedule, history, make_config, row
from tests.sender.gateway import ScriptedGateway

SENDER = "envios-sender"  # the history's origen for the sender (DESIGN.md section 10), written out

P, E, OK, ERR = "pendiente", "enviando", "enviado", "error"
PACING_S = 0.15  # sender.delay_min_s = delay_max_s
RETRY_S = 1.0  # sender.retry_after_s (whole seconds: MariaDB DATETIME keeps no fraction)
HEADER_S = 2.0  # the Retry-After a 429 below carries

NEXT, PACED, STOP_SESSION, STOP_GATEWAY = (
    "next row",
    "next row after the pacing delay",
    "stop session",
    "stop gateway",
)


def SLOW(seconds):  # noqa: N802 - reads like the table's other verbs
    return ("slow down", seconds)


MULTI_400 = (400, {"error": True, "code": "INVALID_NUMBER", "message": "bad number 5491100470000"})
VENOM_400 = (400, {"success": False, "code": "INVALID_TO", "message": "to must be a string"})
HTML_502 = (502, "<html>Bad Gateway</html>")

# case: (build, first answer, row ends in, attempts, retry after (s), then)
# attempts: the row's attempt count afterwards (0: the gateway never tried, the attempt is given
# back)
OUTCOMES = {
    "2xx with a message id": ("multi", "ok", OK, 1, None, PACED),
    "2xx without a message id": ("multi", "no_id", OK, 1, None, PACED),
    "2xx venom placeholder sent-via-ui": ("venom", "ok", OK, 1, None, PACED),
    "400 bad number": ("multi", MULTI_400, ERR, 1, None, NEXT),
    "400 venom INVALID_TO": ("venom", VENOM_400, ERR, 1, None, NEXT),
    "422 validation": (
        "multi",
        (422, {"error": True, "code": "VALIDATION_ERROR"}),
        ERR,
        1,
        None,
        NEXT,
    ),
    "409 session not ready": ("multi", "drop", P, 0, None, STOP_SESSION),
    "503 venom session not ready": ("venom", "drop", P, 0, None, STOP_SESSION),
    "404 whatsapp-web.js has no /send": ("wwebjs", "ok", P, 0, None, STOP_GATEWAY),
    "429 with Retry-After": ("multi", (429, {"error": True}), P, 0, HEADER_S, SLOW(HEADER_S)),
    "429 without Retry-After": ("multi", (429, {"error": True}), P, 0, RETRY_S, SLOW(RETRY_S)),
    "401 key refused": ("multi", (401, {"error": True}), P, 0, None, STOP_SESSION),
    "403 key refused": ("multi", (403, {"error": True}), P, 0, None, STOP_SESSION),
    "connection refused": ("multi", "refuse", P, 0, None, STOP_SESSION),
    "500 WHATSAPP_ERROR did not send": (
        "multi",
        (500, {"error": True, "code": "WHATSAPP_ERROR"}),
        P,
        1,
        RETRY_S,
        PACED,
    ),
    "500 venom SEND_FAILED": ("venom", "send_failed", P, 1, RETRY_S, PACED),
    "502 from a proxy": ("multi", HTML_502, E, 1, None, STOP_SESSION),
    "500 without a did-not-send code": (
        "multi",
        (500, {"error": True, "code": "INTERNAL"}),
        E,
        1,
        None,
        STOP_SESSION,
    ),
    "timeout": ("multi", "timeout", E, 1, None, STOP_SESSION),
    "connection reset": ("multi", "reset", E, 1, None, STOP_SESSION),
    "2xx unparseable": ("multi", "garbage", E, 1, None, STOP_SESSION),
    "2xx venom success false": ("venom", (200, {"success": False}), E, 1, None, STOP_SESSION),
}


def seed_two_clients(conn) -> dict[int, list[int]]:
    """Clients 51 and 52, each one campaign, one approved schedule and two pending rows."""
    rows = {}
    for cliente_id, campania_id in ((51, 47), (52, 48)):
        add_campaign(conn, campania_id)
        add_schedule(conn, campania_id, campania_id, cliente_id)
        rows[cliente_id] = add_rows(conn, campania_id, 2)
    return rows


def table_config(db_url, fake, **overrides):
    base = {
        # auto: the venom fake names its admin session, the others name none
        "gateway.sessions": "per_cliente" if fake.build == "multi" else "auto",
        "gateway.send_timeout_s": 0.5,
        "sender.delay_min_s": PACING_S,
        "sender.delay_max_s": PACING_S,
        "sender.retry_after_s": RETRY_S,
    }
    base.update(overrides)
    return make_config(db_url, fake.base_url, **base)


@pytest.mark.parametrize("case", list(OUTCOMES), ids=lambda c: c.replace(" ", "-"))
def test_outcome_row(case, db_url, upgraded, clock):
    build, answer, ends_in, attempts, retry_s, then = OUTCOMES[case]
    fake = ScriptedGateway(build=build)
    if answer == (429, {"error": True}) and retry_s == HEADER_S:
        fake.retry_after = int(HEADER_S)
    elif answer == (429, {"error": True}):
        fake.retry_after = None
    try:
        rows = seed_two_clients(upgraded)
        first, second = rows[51]
        fake.plan(51, answer)
        report = run_once(table_config(db_url, fake), clock=clock, sender_id="table:1:0001")
    finally:
        fake.stop()

    r1, r2 = row(upgraded, first), row(upgraded, second)
    if then == STOP_GATEWAY:  # every session stops: whichever of them met the 404 first
        assert report.gateway_stopped and "no POST /send route" in report.gateway_stopped
        every = rows[51] + rows[52]
        assert [(row(upgraded, i)["estado"], row(upgraded, i)["attempts"]) for i in every] == [
            (P, 0)
        ] * 4
        histories = [history(upgraded, i) for i in every]
        assert all(h in ([], [(P, E, SENDER), (E, P, SENDER)]) for h in histories)
        # one request per session at most
        assert len(fake.posts) >= 1 and len(fake.posts) == sum(1 for h in histories if h) <= 2
        return
    # the row (stored times follow the database's clock, DESIGN.md section 10)
    db_now = clock.to_db(upgraded, clock.now())
    assert r1["estado"] == ends_in, case
    assert r1["attempts"] == attempts
    assert r1["message_id"] is None or (ends_in == OK and build == "multi")
    if retry_s is None:
        assert r1["next_attempt_at"] is None
    else:
        assert r1["next_attempt_at"] == db_now + dt.timedelta(seconds=retry_s)
    if ends_in == OK:
        assert r1["fecha_envio"] == db_now
    if ends_in == E:
        assert r1["last_error"].startswith("unknown outcome") and r1["claimed_by"] == "table:1:0001"
    # a number echoed by the gateway is masked
    assert "5491100470000" not in (r1["last_error"] or "")
    tail = [] if ends_in == E else [(E, ends_in, SENDER)]
    assert history(upgraded, first) == [(P, E, SENDER), *tail]

    # what the engine did next
    if then in (NEXT, PACED) or isinstance(then, tuple):
        assert r2["estado"] == OK, f"{case}: the next row of the session was not sent"
        if then == PACED or isinstance(then, tuple):
            wait = PACING_S if then == PACED else then[1]
            session = [p for p in fake.posts if build == "venom" or p["cliente_id"] == 51]
            # the scripted answer came first on its session
            assert session[0]["behaviour"] == answer
            gap = session[1]["t0"] - session[0]["t1"]
            assert gap >= wait, (
                f"{case}: the session sent again {gap:.3f}s after, expected >= {wait}s"
            )
    elif then == STOP_SESSION:
        assert (r2["estado"], history(upgraded, second)) == (P, []), f"{case}: the session went on"
        others = [row(upgraded, i)["estado"] for i in rows[52]]
        delivered_unknown = 1 if answer in ("timeout", "reset", "garbage") else 0
        if build == "venom":  # one session for every client: they all stop
            assert (others, len(fake.ledger)) == ([P, P], delivered_unknown)
        elif answer != "refuse":  # (a refused gateway is gone for every session)
            assert (others, len(fake.ledger)) == ([OK, OK], 2 + delivered_unknown), (
                "other sessions carry on"
            )
    else:
        raise AssertionError(then)


def test_a_placeholder_is_never_stored_and_the_history_says_the_gateway_gives_no_id(
    db_url, upgraded, clock
):
    fake = ScriptedGateway(build="venom")
    fake.venom_placeholder = "sent"
    try:
        rows = seed_two_clients(upgraded)
        run_once(
            table_config(db_url, fake, **{"sender.delay_min_s": 0, "sender.delay_max_s": 0}),
            clock=clock,
        )
    finally:
        fake.stop()
    for envio_id in rows[51] + rows[52]:
        r = row(upgraded, envio_id)
        assert (r["estado"], r["message_id"]) == (OK, None)
        assert r["last_error"] == "the gateway gives no message id"  # the watcher's marker
        detail = upgraded.scalar(
            "SELECT detalle FROM ll_envios_whatsapp_historial WHERE envio_id = %s"
            " AND estado_nuevo = 'enviado'",
            (envio_id,),
        )
        assert "gives no message id" in detail and "'sent'" in detail
    assert len(fake.ledger) == 4


def test_gateway_error_on_the_last_attempt_makes_the_row_error_on_venom(db_url, upgraded, clock):
    fake = ScriptedGateway(build="venom")
    try:
        rows = seed_two_clients(upgraded)
        upgraded.execute("UPDATE ll_envios_whatsapp SET attempts = 4 WHERE id = %s", (rows[51][0],))
        fake.plan(51, "send_failed")
        run_once(table_config(db_url, fake, **{"sender.max_attempts": 5}), clock=clock)
    finally:
        fake.stop()
    r = row(upgraded, rows[51][0])
    assert (r["estado"], r["attempts"], r["next_attempt_at"]) == (ERR, 5, None)
    assert "SEND_FAILED" in r["last_error"]


def test_no_route_stops_the_gateway_across_ticks_of_a_long_running_sender(db_url, upgraded, clock):
    """STOP_GATEWAY, not just STOP_SESSION: later ticks start no session either, for
    retry_after_s."""
    fake = ScriptedGateway(build="wwebjs")
    rows = seed_two_clients(upgraded)
    sender = Sender(
        table_config(db_url, fake, **{"sender.tick_s": 0.1, "sender.retry_after_s": 300}),
        clock=clock,
    )
    try:
        sender.start()
        deadline = time.monotonic() + 10
        while not sender.ctx.gateway_stopped() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sender.ctx.gateway_stopped()
        time.sleep(1.0)  # ten ticks: a session-level stop would have restarted both sessions by now
        posts = len(fake.posts)
    finally:
        sender.stop(timeout=10)
        sender.close()
        fake.stop()
    assert posts >= 1 and posts <= 2
    assert all(
        (row(upgraded, i)["estado"], row(upgraded, i)["attempts"]) == (P, 0)
        for i in rows[51] + rows[52]
    )
