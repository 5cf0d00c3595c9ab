"""The auto-pause write failing for real, and a database whose schema was never upgraded.

The write is refused by the database itself (a trigger that makes ll_programaciones
read-only, as a locked-down production grant would), or its connection is killed
by the server between the reads and the write (MariaDB). Either way the watcher
survives, says so in one log line, counts it, and the next refresh pauses.
"""

from __future__ import annotations

import logging

import pytest
from envios.monitor import refresher as refresher_module

from tests.monitor.conftest import labels, parse, series
from tests.monitor.test_autopause import audit_rows, autopauses, schedule_states, setup_campaign

READ_ONLY_TRIGGER = {
    "sqlite": (
        "CREATE TRIGGER envios_t_read_only BEFORE UPDATE ON ll_programaciones"
        " BEGIN SELECT RAISE(ABORT, 'll_programaciones is read-only'); END"
    ),
    "mysql": (
        "CREATE TRIGGER envios_t_read_only BEFORE UPDATE ON ll_programaciones FOR EACH ROW"
        " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'll_programaciones is read-only'"
    ),
}


def crossing_stuck(b):
    setup_campaign(b)
    b.send(1, "enviando", claimed_at=b.ago(minutes=30), count=6)  # 6 > max_stuck 5


def test_a_refused_autopause_write_is_logged_counted_and_retried(
    build, config, clock, watchers, caplog
):
    crossing_stuck(build)
    conn = build.conn
    conn.execute(READ_ONLY_TRIGGER[conn.dialect])
    watcher = watchers(config, clock=clock)
    with caplog.at_level(logging.WARNING, logger="envios.watch"):
        assert watcher.refresh() is True  # the reads worked: the watcher is up
    got = parse(watcher.exposition())
    assert series(got, "envios_watcher_query_errors_total")[labels(query="autopause")] == 1
    assert series(got, "envios_watcher_up") == {frozenset(): 1}
    assert series(got, "envios_stuck_sending")[labels(campania_id=1)] == 6
    assert autopauses(watcher) == {"error_ratio": 0, "stuck": 0, "missing_message_id": 0}
    # nothing half-done
    assert schedule_states(conn)[10][0] == "aprobada" and audit_rows(conn) == []
    failures = [m for m in caplog.messages if m.startswith("query autopause failed")]
    assert len(failures) == 1 and "read-only" in failures[0], caplog.messages
    assert "\n" not in failures[0]

    clock.advance(15)
    with caplog.at_level(logging.WARNING, logger="envios.watch"):
        watcher.refresh()  # still refused: counted again, not logged again
    assert (
        series(parse(watcher.exposition()), "envios_watcher_query_errors_total")[
            labels(query="autopause")
        ]
        == 2
    )
    assert len([m for m in caplog.messages if m.startswith("query autopause failed")]) == 1

    conn.execute("DROP TRIGGER envios_t_read_only")  # the grant is fixed
    clock.advance(15)
    assert watcher.refresh() is True
    assert schedule_states(conn)[10] == ("pausada", "stuck", "watcher")
    assert autopauses(watcher)["stuck"] == 1
    assert [r["motivo"] for r in audit_rows(conn)] == ["stuck", "stuck"]


@pytest.mark.mysql_only
def test_a_connection_killed_before_the_autopause_write_is_an_outage_then_retried(
    build, config, clock, watchers
):
    crossing_stuck(build)
    killed = []

    def schedules_then_kill(conn, context):  # the last read of the refresh; the write comes next
        result = refresher_module._default_queries()["schedules"](conn, context)
        if not killed:
            build.conn.execute(f"KILL {int(conn.thread_id)}")
            killed.append(conn.thread_id)
        return result

    watcher = watchers(config, clock=clock, queries={"schedules": schedules_then_kill})
    assert watcher.refresh() is False  # the write met a dead connection: reported as down
    assert series(parse(watcher.exposition()), "envios_watcher_up") == {frozenset(): 0}
    assert schedule_states(build.conn)[10][0] == "aprobada"
    clock.advance(15)
    assert watcher.refresh() is True  # reconnected; the pause is made now
    assert schedule_states(build.conn)[10] == ("pausada", "stuck", "watcher")
    assert autopauses(watcher)["stuck"] == 1


def test_a_database_never_upgraded_is_named_once_and_picked_up_after_the_upgrade(
    db_url, conn, clock, watchers, caplog
):
    """The watcher's "schema not upgraded" path: one clear line (not one per refresh), reads counted
    as failed, nothing paused, and once `envios db upgrade` ran the next refresh is complete."""
    from envios.store import schema
    from tests.monitor.conftest import make_config

    conn.execute("CREATE TABLE unrelated (id INTEGER PRIMARY KEY)")  # a database, just not ours yet
    watcher = watchers(make_config(db_url), clock=clock)
    with caplog.at_level(logging.INFO, logger="envios.watch"):
        for _ in range(3):
            assert watcher.refresh() is True  # reachable, so up: the reads are what fail
            clock.advance(15)
    lines = [m for m in caplog.messages if "is not upgraded: run `envios db upgrade`" in m]
    assert len(lines) == 1, caplog.messages
    got = parse(watcher.exposition())
    assert series(got, "envios_watcher_query_errors_total")[labels(query="campaigns")] == 3
    # never complete
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {frozenset(): 0}
    assert watcher.health()[0] is False

    schema.upgrade(conn, clock.now())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="envios.watch"):
        assert watcher.refresh() is True
    assert not [m for m in caplog.messages if "not upgraded" in m]
    got = parse(watcher.exposition())
    # no new failure
    assert series(got, "envios_watcher_query_errors_total")[labels(query="campaigns")] == 3
    assert series(got, "envios_watcher_last_refresh_timestamp_seconds") == {
        frozenset(): clock.to_epoch(clock.now())
    }
