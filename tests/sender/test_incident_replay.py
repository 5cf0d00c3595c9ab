"""The 2026-02-07 incident, replayed against the simulator on the production schema.

Then: the session was DISCONNECTED while the scheduler ticked once a minute and
marked one row `enviado` per tick, 250 of them, none delivered. Now: 251 ticks
with the session down send nothing and change nothing; when the session comes
back every row is sent exactly once.
"""

from __future__ import annotations

import datetime as dt

from envios.sender.loop import Sender

from envios.clock import FixedClock
from envios.store import schema
from tests.conftest import TZ, load_legacy
from tests.sender.conftest import estados, make_config

TICKS = 251
ROWS = 250


def test_incident_replay_session_down_for_251_ticks_then_back(db_url, conn, sim):
    load_legacy(conn)  # campaign 47, schedule 12 on session 51
    start = dt.datetime(2026, 2, 7, 8, 0, 49)  # Saturday, the first phantom send
    schema.upgrade(conn, start)
    # The legacy scheduler is stopped (README, step 1). Its last lock of that day (12:11:49)
    # falls inside this replay, where it would rightly keep envios off schedule 12.
    conn.execute("UPDATE ll_programaciones SET locked_at = NULL, locked_by = NULL WHERE id = 12")
    conn.execute("DELETE FROM ll_envios_whatsapp WHERE estado = 'pendiente'")
    for i in range(ROWS):  # inserted the way the legacy application does: legacy columns only
        conn.execute(
            "INSERT INTO ll_envios_whatsapp"
            " (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
            " VALUES (47, %s, %s, 'Hola {nombre}, ¿seguimos en contacto?')",
            (f"+54 9 11 5550-{i:04d}", f"Cliente {i}"),
        )
    ids = [
        r["id"]
        for r in conn.query(
            "SELECT id FROM ll_envios_whatsapp WHERE estado = 'pendiente' ORDER BY id"
        )
    ]
    assert len(ids) == ROWS
    history_before = conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp_historial")

    clock = FixedClock(TZ, start)
    sim.state.set_session(51, "DISCONNECTED")
    sender = Sender(make_config(db_url, sim.base_url), clock=clock)
    try:
        for _tick in range(TICKS):
            report = sender.run_once()
            assert report.sent == 0
            clock.advance(60)
        assert sim.state.sends_received == 0 and sim.state.ledger == []
        assert estados(conn, 47)["pendiente"] == ROWS
        assert "enviando" not in estados(conn, 47)
        assert conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp_historial") == history_before
        assert not conn.scalar(
            "SELECT enviados FROM ll_programacion_envios_diarios WHERE programacion_id = 12"
            " AND fecha = %s",
            (start.date(),),
        )
        assert (
            sender.metrics.value(
                "envios_sender_session_state", {"cliente_id": "51", "state": "DISCONNECTED"}
            )
            == 1
        )

        sim.state.set_session(51, "READY")  # the session is back
        report = sender.run_once()
        assert report.sent == ROWS
        assert sender.run_once().sent == 0  # and nothing more, ever
    finally:
        sender.close()

    ledger = sim.state.ledger
    assert len(ledger) == ROWS == sim.state.sends_received
    assert sorted(e["to"] for e in ledger) == sorted(f"549115550{i:04d}" for i in range(ROWS))
    rows = [
        r
        for r in conn.query("SELECT id, estado, message_id FROM ll_envios_whatsapp")
        if r["id"] in set(ids)
    ]
    assert {r["estado"] for r in rows} == {"enviado"}
    assert sorted(r["message_id"] for r in rows) == sorted(e["message_id"] for e in ledger)
    assert (
        conn.scalar(
            "SELECT enviados FROM ll_programacion_envios_diarios WHERE programacion_id = 12"
            " AND fecha = %s",
            (clock.today(),),
        )
        == ROWS
    )
    assert ledger[0]["text"] == "Hola Cliente 0, ¿seguimos en contacto?"
