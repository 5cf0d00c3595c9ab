"""Every exported value of a known database, exactly, with its label set (SQLite and MariaDB)."""

from __future__ import annotations

import datetime as dt

import pytest
from envios.monitor import refresher as refresher_module
from envios.monitor.refresher import ERROR_LABELS, QUERY_NAMES

from tests.monitor.conftest import FakeMonotonic, labels, parse, series

STUCK_AFTER_S = 300
WINDOW_S = 3600


def seed_known(b):
    """Campaign 1 busy, 2 empty, 3 finalizado (with plenty of trouble that must not show)."""
    b.campaign(1, "en_progreso")
    b.campaign(2, "pendiente")
    b.campaign(3, "finalizado")
    b.schedule(10, 1, "aprobada")
    b.schedule(
        11,
        1,
        "pausada",
        paused_reason="operator",
        paused_by="operator",
        paused_at=b.ago(minutes=30),
    )
    b.schedule(12, 1, "rechazada")
    b.schedule(20, 2, "pausada")  # paused in the legacy UI: no reason recorded
    b.schedule(
        30, 3, "pausada", paused_reason="error_ratio", paused_by="watcher", paused_at=b.ago(days=1)
    )

    b.send(1, "pendiente", count=3)
    b.send(1, "enviando", claimed_at=b.ago(minutes=10), count=2)  # stuck
    b.send(1, "enviando", claimed_at=b.ago(minutes=12))  # stuck, the oldest
    b.send(1, "enviando", claimed_at=b.ago(minutes=1))  # in flight, not stuck
    b.send(
        1,
        "enviado",
        claimed_at=b.ago(minutes=31),
        finished_at=b.ago(minutes=30),
        message_id="auto",
        count=5,
    )
    # no id
    b.send(1, "enviado", claimed_at=b.ago(minutes=21), finished_at=b.ago(minutes=20), count=2)
    b.send(1, "enviado", finished_at=b.ago(days=2), legacy=True, count=4)
    b.send(1, "error", claimed_at=b.ago(minutes=16), finished_at=b.ago(minutes=15), count=3)
    b.send(1, "error", claimed_at=b.ago(hours=2), finished_at=b.ago(hours=2))  # outside the window
    b.send(1, "enviado", claimed_at=b.ago(hours=3), finished_at=b.ago(hours=3), message_id="auto")

    b.send(3, "enviando", claimed_at=b.ago(hours=1), count=7)
    b.send(3, "error", claimed_at=b.ago(minutes=5), finished_at=b.ago(minutes=4), count=9)
    b.send(3, "enviado", claimed_at=b.ago(minutes=5), finished_at=b.ago(minutes=4), count=9)
    b.send(3, "enviado", finished_at=b.ago(days=9), legacy=True, count=2)


@pytest.fixture
def known(build):
    seed_known(build)
    return build


def test_every_value_of_a_known_database(known, config, clock, watchers):
    tick = FakeMonotonic()
    read_stuck = refresher_module._default_queries()["stuck"]

    def stuck_taking_1_5_s(conn, context):  # the monotonic clock moves only here
        tick.now += 1.5
        return read_stuck(conn, context)

    watcher = watchers(config, clock=clock, monotonic=tick, queries={"stuck": stuck_taking_1_5_s})
    assert watcher.refresh() is True
    got = parse(watcher.exposition())
    c1, c2 = labels(campania_id=1), labels(campania_id=2)

    assert series(got, "envios_stuck_sending") == {c1: 3, c2: 0}
    assert series(got, "envios_oldest_stuck_claim_timestamp_seconds") == {
        # rows on the database's clock, epochs real
        c1: clock.to_epoch(clock.now() - dt.timedelta(minutes=12))
    }
    assert series(got, "envios_finished_in_window") == {c1: 10, c2: 0}  # 5 + 2 sent, 3 errors
    assert series(got, "envios_error_ratio") == {c1: pytest.approx(0.3), c2: 0}
    assert series(got, "envios_sent_missing_message_id") == {c1: 2, c2: 0}
    assert series(got, "envios_legacy_sent_without_message_id") == {c1: 4, c2: 0}
    # tests/monitor/test_unverifiable.py
    assert series(got, "envios_sent_unverifiable") == {c1: 0, c2: 0}
    assert series(got, "envios_messages") == {
        labels(campania_id=1, estado="pendiente"): 3,
        labels(campania_id=1, estado="enviando"): 4,
        labels(campania_id=1, estado="enviado"): 12,
        labels(campania_id=1, estado="error"): 4,
        labels(campania_id=2, estado="pendiente"): 0,
        labels(campania_id=2, estado="enviando"): 0,
        labels(campania_id=2, estado="enviado"): 0,
        labels(campania_id=2, estado="error"): 0,
    }
    assert series(got, "envios_schedule_paused") == {
        labels(programacion_id=11, campania_id=1, reason="operator"): 1,
        labels(programacion_id=20, campania_id=2, reason="unknown"): 1,
    }
    # below every threshold (3 stuck <= 5, 2 missing <= 5, 10 finished < 20): nothing paused
    assert series(got, "envios_autopause_total") == {
        labels(reason="error_ratio"): 0,
        labels(reason="stuck"): 0,
        labels(reason="missing_message_id"): 0,
    }
    assert series(got, "envios_watcher_up") == {frozenset(): 1}
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {
        frozenset(): clock.to_epoch(clock.now())
    }
    assert series(got, "envios_watcher_refresh_duration_seconds") == {frozenset(): 1.5}
    assert series(got, "envios_watcher_query_errors_total") == {
        labels(query=name): 0 for name in ERROR_LABELS
    }
    assert series(got, "envios_watcher_query_last_success_timestamp_seconds") == {
        labels(query=name): clock.to_epoch(clock.now()) for name in QUERY_NAMES
    }
    assert series(got, "envios_watcher_query_duration_seconds") == {
        labels(query=name): 1.5 if name == "stuck" else 0.0 for name in QUERY_NAMES
    }

    names = {name for name, _ in got}
    assert names == {
        "envios_stuck_sending",
        "envios_oldest_stuck_claim_timestamp_seconds",
        "envios_error_ratio",
        "envios_finished_in_window",
        "envios_sent_missing_message_id",
        "envios_legacy_sent_without_message_id",
        "envios_sent_unverifiable",
        "envios_messages",
        "envios_schedule_paused",
        "envios_autopause_total",
        "envios_watcher_up",
        "envios_watcher_last_refresh_timestamp_seconds",
        "envios_watcher_refresh_duration_seconds",
        "envios_watcher_query_errors_total",
        "envios_watcher_query_last_success_timestamp_seconds",
        "envios_watcher_query_duration_seconds",
        "envios_delivery_ratio",
        "envios_delivery_acknowledged",
        "envios_unknowns_settled",
    }
    # nothing about the finalizado campaign 3 or its schedule 30
    assert not any(dict(lbls).get("campania_id") == "3" for _, lbls in got)
    assert not any(dict(lbls).get("programacion_id") == "30" for _, lbls in got)
    # the watcher changed nothing
    assert known.conn.scalar("SELECT COUNT(*) FROM envios_audit") == 0
    assert known.conn.scalar("SELECT estado FROM ll_programaciones WHERE id = 10") == "aprobada"


def test_types_and_help_lines(known, config, clock, watchers):
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    text = watcher.exposition().decode()
    assert "# TYPE envios_autopause_total counter" in text
    assert "# TYPE envios_watcher_query_errors_total counter" in text
    for gauge in (
        "envios_stuck_sending",
        "envios_error_ratio",
        "envios_messages",
        "envios_watcher_up",
        "envios_schedule_paused",
        "envios_sent_missing_message_id",
    ):
        assert f"# TYPE {gauge} gauge" in text
    assert "_created" not in text
    for line in text.splitlines():  # label values are ids and enums only
        if not line.startswith("#"):
            assert "Ana" not in line and "54911" not in line and "Campaña" not in line


def test_finalizado_campaign_series_are_dropped(known, config, clock, watchers):
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    assert labels(campania_id=1) in series(parse(watcher.exposition()), "envios_stuck_sending")
    known.conn.execute("UPDATE ll_campanias_whatsapp SET estado = 'finalizado' WHERE id = 1")
    watcher.refresh()
    got = parse(watcher.exposition())
    assert not any(dict(lbls).get("campania_id") == "1" for _, lbls in got)
    assert series(got, "envios_stuck_sending") == {labels(campania_id=2): 0}
    assert series(got, "envios_schedule_paused") == {
        labels(programacion_id=20, campania_id=2, reason="unknown"): 1
    }


def test_a_query_over_its_time_limit_is_counted_and_last_values_kept(
    known, config, clock, watchers
):
    def slow(conn, _context):
        if conn.dialect == "mysql":
            return conn.scalar(
                "SELECT SUM(a.seq * b.seq) FROM seq_1_to_100000 a, seq_1_to_100000 b"
            )
        return conn.scalar(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
            " WHERE x < 1000000000) SELECT COUNT(*) FROM c"
        )

    watcher = watchers(config, clock=clock, query_timeout_s=0.3)
    watcher.refresh()
    first_refresh = clock.to_epoch(clock.now())
    watcher.refresher.queries["stuck"] = slow
    clock.advance(60)
    known.send(1, "enviando", claimed_at=known.ago(hours=1))  # would make it 4
    assert watcher.refresh() is True
    got = parse(watcher.exposition())
    assert series(got, "envios_stuck_sending")[labels(campania_id=1)] == 3  # the last good value
    assert series(got, "envios_watcher_query_errors_total")[labels(query="stuck")] == 1
    assert series(got, "envios_watcher_query_errors_total")[labels(query="messages")] == 0
    last_ok = series(got, "envios_watcher_query_last_success_timestamp_seconds")
    assert last_ok[labels(query="stuck")] == first_refresh
    assert last_ok[labels(query="messages")] == first_refresh + 60
    # the refresh was not complete: its timestamp stays at the last complete one
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {
        frozenset(): first_refresh
    }
    assert series(got, "envios_watcher_up") == {frozenset(): 1}
    assert series(got, "envios_messages")[labels(campania_id=1, estado="enviando")] == 5
