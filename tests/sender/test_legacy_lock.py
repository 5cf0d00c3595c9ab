"""A fresh lock by the original scheduler means it is still running: envios leaves that
schedule alone.

The legacy scheduler sets `ll_programaciones.locked_at` (its server's NOW())
and `locked_by` while it works a schedule and never expires the lock. A lock
younger than `sender.lease_ttl_s` (on the database's clock) is live; an older one
is dead and ignored (DESIGN.md section 10).
"""

from __future__ import annotations

import datetime as dt
import logging

from envios.sender.loop import run_once

from envios.clock import FixedClock
from envios.commands import status
from envios.store import schema
from tests.conftest import TZ, load_legacy
from tests.sender.conftest import make_config

SATURDAY_IN_WINDOW = dt.datetime(2026, 2, 7, 12, 12, 49)  # schedule 12: mon..sat 08-20
LEGACY_OWNER = "vps-1_4242_1770465600000"
TTL_S = 30.0


def _lock(conn, at: dt.datetime) -> None:
    conn.execute(
        "UPDATE ll_programaciones SET locked_at = %s, locked_by = %s WHERE id = 12",
        (at, LEGACY_OWNER),
    )


def test_a_fresh_legacy_lock_keeps_envios_off_the_schedule_and_an_old_one_does_not(
    db_url, conn, sim, caplog
):
    load_legacy(conn)
    clock = FixedClock(TZ, SATURDAY_IN_WINDOW)
    schema.upgrade(conn, clock.now())
    config = make_config(db_url, sim.base_url, **{"sender.lease_ttl_s": TTL_S})
    pending = conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = 'pendiente'")

    _lock(conn, clock.db_now(conn) - dt.timedelta(seconds=10))  # the old scheduler is mid-tick
    with caplog.at_level(logging.WARNING, logger="envios.sender"):
        report = run_once(config, clock=clock)
    assert report.sent == 0 and sim.state.sends_received == 0
    assert (
        conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = 'pendiente'") == pending
    )
    assert (
        f"event=schedule_locked_by_legacy programacion_id=12 locked_by={LEGACY_OWNER}"
        in caplog.text
    )
    shown = status.render(conn, clock.db_now(conn), config, local=clock.now())
    assert (
        f"schedule 12 (campaign 47): locked by the original scheduler ({LEGACY_OWNER}) 10s ago"
        in shown
    )

    # older than the lease ttl: dead
    _lock(conn, clock.db_now(conn) - dt.timedelta(seconds=TTL_S + 1))
    report = run_once(config, clock=clock)
    assert report.sent >= 1 and sim.state.sends_received == report.sent
    assert "locked by the original scheduler" not in status.render(conn, clock.db_now(conn), config)


def test_a_lock_taken_by_envios_itself_is_not_the_legacy_schedulers(db_url, conn, sim):
    load_legacy(conn)
    clock = FixedClock(TZ, SATURDAY_IN_WINDOW)
    schema.upgrade(conn, clock.now())
    conn.execute(
        "UPDATE ll_programaciones SET locked_at = %s, locked_by = 'envios-sender' WHERE id = 12",
        (clock.db_now(conn),),
    )
    assert run_once(make_config(db_url, sim.base_url), clock=clock).sent >= 1
