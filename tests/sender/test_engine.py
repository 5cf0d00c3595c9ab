"""The engine's cost follows the work: 400 sessions on a pool of 4 database connections.

Correctness only (every row sent once, every session worked, the pool never
exceeded); speed is measured by bench/bench_engine.py, never here.
"""

from __future__ import annotations

import threading
import time

import pytest
from envios.sender import outbox, session_worker
from envios.sender.loop import Sender

from tests.sender.conftest import add_campaign, add_schedule, estados, make_config

SESSIONS = 400
POOL = 4


def _seed(conn, sessions: int, rows_each: int) -> None:
    with conn.transaction():
        for k in range(1, sessions + 1):
            add_campaign(conn, k)
            add_schedule(conn, k, k, k)
            for i in range(rows_each):
                conn.execute(
                    "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
                    " mensaje_final) VALUES (%s, %s, 'Ana', 'Hola {nombre}')",
                    (k, f"54911{k:04d}{i:04d}"),
                )


def _connections(conn, database_name: str) -> int:
    return int(
        conn.scalar(
            "SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (database_name,)
        )
    )


@pytest.mark.mysql_only
def test_400_sessions_share_a_pool_of_4_connections(db_url, database, upgraded, clock, gateway):
    _seed(upgraded, SESSIONS, 2)
    name = database.url.database
    watcher = database.connect()
    baseline = _connections(watcher, name)  # the test's own connections
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _connections(watcher, name) - baseline)
            time.sleep(0.01)

    config = make_config(
        db_url, gateway.base_url, **{"sender.db_pool_size": POOL, "sender.gateway_pool_size": 16}
    )
    sender = Sender(config, clock=clock)
    poller = threading.Thread(target=watch)
    poller.start()
    try:
        report = sender.run_once()
    finally:
        done.set()
        poller.join()
        sender.close()
        watcher.close()
    assert report.sent == 2 * SESSIONS and len(report.sessions_worked) == SESSIONS
    assert estados(upgraded) == {"enviado": 2 * SESSIONS}
    assert max(gateway.delivered_to().values()) == 1
    assert peak[0] > 0, "the poller saw no connection of the sender: it measured nothing"
    assert peak[0] <= POOL, f"{peak[0]} connections open at once for a pool of {POOL}"
    assert sender.pool.peak <= POOL
    assert outbox.leases(upgraded) == []


def test_throughput_mode_sends_several_at_once_per_session_each_row_once(
    db_url, upgraded, clock, gateway
):
    """rate_per_s > 0: a token bucket and max_in_flight sends at once, each recorded once."""
    _seed(upgraded, 2, 30)
    gateway.send_delay_s = 0.02
    config = make_config(
        db_url, gateway.base_url, **{"sender.rate_per_s": 1000.0, "sender.max_in_flight": 4}
    )
    sender = Sender(config, clock=clock)
    try:
        report = sender.run_once()
    finally:
        sender.close()
    assert report.sent == 60
    assert estados(upgraded) == {"enviado": 60}
    assert max(gateway.delivered_to().values()) == 1
    spans = sorted(gateway.send_spans())
    overlapping = sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    assert overlapping > 0, "no two sends were ever in flight at once"
    assert sender.ctx.claims.batches < sender.ctx.claims.items  # claims were batched


def test_pacing_mode_keeps_one_send_at_a_time_per_session(db_url, upgraded, clock, gateway):
    _seed(upgraded, 1, 5)
    gateway.send_delay_s = 0.02
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        assert sender.run_once().sent == 5
    finally:
        sender.close()
    spans = sorted(gateway.send_spans())
    assert all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False)), (
        "two sends of one session overlapped"
    )


def _run_with_last_row_locked(database, upgraded, db_url, clock, gateway, held_s: float):
    """One pass while another transaction holds the last row locked (as another sender's
    claim reading ahead does) for `held_s` seconds."""
    last = upgraded.scalar("SELECT MAX(id) FROM ll_envios_whatsapp")
    holder, locked, release = database.connect(), threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with holder.transaction():
                holder.query("SELECT id FROM ll_envios_whatsapp WHERE id = %s FOR UPDATE", (last,))
                locked.set()
                release.wait(held_s)
        finally:
            holder.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(30)
    sender = Sender(make_config(db_url, gateway.base_url), clock=clock)
    try:
        return sender.run_once()
    finally:
        sender.close()
        release.set()
        thread.join(30)


@pytest.mark.mysql_only
def test_a_row_locked_by_another_transaction_is_waited_for_not_called_sent_out(
    database, db_url, upgraded, clock, gateway
):
    """SKIP LOCKED passes over rows another transaction holds: the lane must not take that
    for an empty queue and stop with the row pendiente (the CI failure of stop 16)."""
    _seed(upgraded, 1, 3)
    report = _run_with_last_row_locked(database, upgraded, db_url, clock, gateway, 1.0)
    assert estados(upgraded) == {"enviado": 3}, report.sessions_worked
    assert report.sent == 3


@pytest.mark.mysql_only
def test_a_lane_waits_for_a_locked_row_a_bounded_time_then_says_why_it_stopped(
    database, db_url, upgraded, clock, gateway, monkeypatch
):
    monkeypatch.setattr(session_worker, "LOCKED_RETRIES", 3)
    _seed(upgraded, 1, 2)
    report = _run_with_last_row_locked(database, upgraded, db_url, clock, gateway, 30.0)
    assert estados(upgraded) == {"enviado": 1, "pendiente": 1}
    (result,) = report.sessions_worked.values()
    assert result.stop_reason == f"nothing claimable: schedule 1: {session_worker.ROWS_LOCKED}"
