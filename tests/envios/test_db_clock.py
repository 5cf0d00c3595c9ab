"""Times stored in the application's columns follow the database's clock; windows follow `timezone`.

The application writes `NOW()` (history `created_at`, its manual sends); envios
writes `Clock.db_now()`: the same instant from Python, on the server's wall
clock. SQLite has no server clock and no other writer: there the database's
clock is the configured zone (sender/clock.py).
"""

from __future__ import annotations

import datetime as dt

import pytest
from envios.sender.loop import run_once

from envios.clock import Clock, FixedClock
from envios.commands import status
from tests.conftest import TZ
from tests.sender.conftest import ALL_DAYS, add_campaign, add_rows, add_schedule, make_config, row

FAR_ZONE = "Pacific/Kiritimati"  # UTC+14: far from any server's zone


@pytest.mark.mysql_only
def test_fecha_envio_follows_the_servers_now_whatever_the_configured_zone(db_url, upgraded, sim):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51, dias=ALL_DAYS, hora_inicio="00:00:00", hora_fin="23:59:59")
    (envio_id,) = add_rows(upgraded, 47, 1)
    config = make_config(db_url, sim.base_url, timezone=FAR_ZONE)
    report = run_once(config, clock=Clock(FAR_ZONE))
    assert report.sent == 1
    server_now = upgraded.scalar("SELECT NOW()")
    r = row(upgraded, envio_id)
    assert abs((r["fecha_envio"] - server_now).total_seconds()) <= 5
    assert abs((r["claimed_at"] - server_now).total_seconds()) <= 5
    history = upgraded.query(
        "SELECT created_at FROM ll_envios_whatsapp_historial WHERE envio_id = %s", (envio_id,)
    )
    assert history and all(
        abs((h["created_at"] - server_now).total_seconds()) <= 5 for h in history
    )
    # and the configured zone's wall clock is hours away from it: the test would see a mix-up
    assert abs((Clock(FAR_ZONE).now() - server_now).total_seconds()) > 3600


@pytest.mark.mysql_only
def test_the_servers_offset_is_learnt_per_instant(database, clock):
    """The session's time zone (here -03:00, then +05:30) is what FROM_UNIXTIME answers with."""
    with database.connect() as conn:
        conn.execute("SET time_zone = '-03:00'")
        assert clock.db_now(conn) == clock.now()  # Buenos Aires is UTC-3 too
        assert conn.utc_offset(clock.to_epoch(clock.now())) == dt.timedelta(hours=-3)
    with database.connect() as conn:
        conn.execute("SET time_zone = '+05:30'")
        later = FixedClock(TZ, clock.now() + dt.timedelta(days=200))  # another instant: asked again
        assert later.db_now(conn) == later.now() + dt.timedelta(hours=8, minutes=30)


def test_sqlite_keeps_the_configured_zone_as_its_clock(tmp_path):
    from envios.store.connector import Database

    with Database(f"sqlite:///{tmp_path / 'x.db'}").connect() as conn:
        clock = FixedClock(FAR_ZONE, dt.datetime(2026, 2, 9, 10, 0))
        assert conn.utc_offset(clock.to_epoch(clock.now())) is None
        assert clock.db_now(conn) == clock.now()


@pytest.mark.mysql_only
def test_status_shows_both_clocks_when_they_differ(db_url, upgraded):
    config = make_config(db_url, "http://127.0.0.1:9", timezone=FAR_ZONE)
    clock = Clock(FAR_ZONE)
    text = status.render(upgraded, clock.db_now(upgraded), config, local=clock.now())
    first = text.splitlines()[0]
    assert f"({FAR_ZONE}; database clock " in first
    assert (
        f"{clock.db_now(upgraded):%Y-%m-%d %H}" in first and f"{clock.now():%Y-%m-%d %H}" in first
    )
