"""The watcher's reads one by one, on both backends, with literal expectations.

The end-to-end metric tests (test_metrics.py) see these through the exposition;
here each function's own contract is pinned: which campaigns and schedules it
includes, how counts default, long id lists, what "upgraded" means.
"""

from __future__ import annotations

import datetime as dt

from envios.monitor import autopause
from envios.monitor import queries as q
from envios.monitor.refresher import CampaignStats, Snapshot

from envios.store import schema
from tests.monitor.conftest import make_config


def test_campaigns_active_or_all(build):
    build.campaign(1, "en_progreso")
    build.campaign(2, "finalizado")
    build.conn.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado) VALUES (3, 'c', 'm', NULL)"
    )
    assert {cid: c.estado for cid, c in q.campaigns(build.conn).items()} == {
        1: "en_progreso",
        3: "pendiente",
    }
    everything = q.campaigns(build.conn, include_finished=True)
    assert {cid: (c.id, c.estado, c.resumed_at) for cid, c in everything.items()} == {
        1: (1, "en_progreso", None),
        2: (2, "finalizado", None),
        3: (3, "pendiente", None),
    }


def test_campaign_names_for_the_terminal(build):
    build.campaign(1, "en_progreso", nombre="Reactivación")
    build.conn.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado) VALUES (2, '', 'm', NULL)"
    )
    assert q.campaign_names(build.conn) == {
        1: ("Reactivación", "en_progreso"),
        2: ("", "pendiente"),
    }


def test_schedules_approved_and_paused_or_all(build):
    build.campaign(1, "en_progreso")
    build.campaign(2, "finalizado")
    build.schedule(10, 1, "aprobada", cliente_id=51)
    build.schedule(
        11,
        1,
        "pausada",
        cliente_id=52,
        paused_reason="stuck",
        paused_by="watcher",
        paused_at=build.ago(minutes=5),
    )
    build.schedule(12, 1, "rechazada")
    build.schedule(20, 2, "aprobada")
    assert q.schedules(build.conn) == [
        q.ScheduleRow(10, 1, 51, "aprobada", None, None, None),
        q.ScheduleRow(11, 1, 52, "pausada", "stuck", build.ago(minutes=5), "watcher"),
    ]
    assert [s.id for s in q.schedules(build.conn, include_all=True)] == [10, 11, 12, 20]


def test_messages_of_more_campaigns_than_one_in_list(build, monkeypatch):
    """Campaign ids go in IN lists of at most IN_CHUNK: every chunk is read."""
    monkeypatch.setattr(q, "IN_CHUNK", 2)
    for cid in range(1, 6):
        build.campaign(cid)
        build.send(cid, "pendiente", count=cid)
    got = q.messages(build.conn, [5, 4, 3, 2, 1])
    assert {cid: got[cid]["pendiente"] for cid in got} == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    assert got[1] == {"pendiente": 1, "enviando": 0, "enviado": 0, "error": 0}


def test_finished_in_window_counts_each_kind_alone(build):
    build.campaign(1)
    build.campaign(2)
    build.send(
        1, "enviado", claimed_at=build.ago(minutes=3), finished_at=build.ago(minutes=2), count=2
    )
    build.send(
        2, "error", claimed_at=build.ago(minutes=3), finished_at=build.ago(minutes=2), count=3
    )
    got = q.finished_in_window(build.conn, build.ago(hours=1), build.now)
    assert got == {1: q.Finished(2, 0), 2: q.Finished(3, 3)}
    assert (got[1].ratio, got[2].ratio, q.Finished(0, 0).ratio) == (0.0, 1.0, 0.0)


def test_missing_message_ids_split_legacy_and_since_resume(build, clock):
    build.campaign(1)
    build.campaign(2)
    build.campaign(3)
    # before resume
    build.send(1, "enviado", claimed_at=build.ago(hours=2), finished_at=build.ago(hours=2), count=2)
    # after
    build.send(
        1, "enviado", claimed_at=build.ago(minutes=2), finished_at=build.ago(minutes=1), count=1
    )
    build.send(1, "enviado", finished_at=build.ago(days=3), legacy=True, count=4)
    # only legacy, resumed
    build.send(2, "enviado", finished_at=build.ago(days=3), legacy=True, count=3)
    build.send(3, "enviado", claimed_at=build.ago(hours=2), finished_at=build.ago(hours=2), count=1)
    build.conn.execute(
        "UPDATE ll_campanias_whatsapp SET resumed_at = %s WHERE id IN (1, 2)", (build.ago(hours=1),)
    )
    got = q.missing_message_ids(build.conn, q.campaigns(build.conn))
    assert got == {
        1: q.Missing(missing=3, since_resume=1, legacy=4),
        2: q.Missing(missing=0, since_resume=0, legacy=3),
        3: q.Missing(missing=1, since_resume=1, legacy=0),
    }


def test_schema_ready_only_after_the_upgrade(conn, clock):
    assert q.schema_ready(conn) is False  # empty database
    schema.upgrade(conn, clock.now())
    assert q.schema_ready(conn) is True
    for version in schema.REQUIRED_VERSIONS[schema.Process.WATCHER]:  # an older envios: not enough
        conn.execute("DELETE FROM envios_schema_version WHERE version = %s", (version,))
        assert q.schema_ready(conn) is False, version
        conn.execute(
            "INSERT INTO envios_schema_version (version, name, applied_at) VALUES (%s, 'x', %s)",
            (version, clock.now()),
        )
    assert q.schema_ready(conn) is True


def _stats(cid, **kw):
    base = dict(
        campania_id=cid,
        estado="en_progreso",
        messages=None,
        stuck=0,
        oldest_stuck_claim=None,
        finished=0,
        errors=0,
        window_start=dt.datetime(2026, 2, 9, 9, 0),
        missing=0,
        missing_since_resume=0,
        legacy_without_id=0,
    )
    return CampaignStats(**{**base, **kw})


def test_evaluate_judges_only_campaigns_with_an_approved_schedule_and_keeps_the_values():
    settings = make_config("sqlite:///unused.db").monitor.autopause  # the defaults
    now = dt.datetime(2026, 2, 9, 10, 0)
    paused_only = q.ScheduleRow(20, 2, 51, "pausada", "operator", now, "operator")
    approved = q.ScheduleRow(10, 1, 51, "aprobada", None, None, None)
    snapshot = Snapshot(
        now,
        {
            1: _stats(1, stuck=6, missing_since_resume=7, finished=20, errors=3),
            2: _stats(2, stuck=50),
        },
        [approved, paused_only],
        frozenset({"stuck", "missing_message_id", "error_ratio"}),
        frozenset(),
        300.0,
        3600.0,
    )
    (verdict,) = autopause.evaluate(snapshot, settings)
    assert verdict.campania_id == 1
    assert [(c.reason, c.value, c.threshold) for c in verdict.crossings] == [
        ("stuck", 6, 5),
        ("missing_message_id", 7, 5),
        ("error_ratio", 0.15, 0.1),
    ]


def test_apply_pauses_with_the_watchers_own_identity_and_says_so(build, clock, caplog):
    import logging

    build.campaign(1)
    build.schedule(10, 1, "aprobada")
    build.schedule(11, 1, "aprobada", cliente_id=52)
    verdict = autopause.Verdict(1, (autopause.Crossing("stuck", 6, 5, "stuck 6 > max_stuck 5"),))
    with caplog.at_level(logging.WARNING, logger="envios.watch"):
        done = autopause.apply(build.conn, [verdict], clock.now(), "watcher@test-host:1")
    assert done == [(verdict, [10, 11])]
    assert [
        r["origen"] for r in build.conn.query("SELECT origen FROM envios_audit ORDER BY id")
    ] == ["watcher@test-host:1"] * 2
    assert caplog.messages == ["auto-paused campaign 1 (schedules 10, 11): stuck 6 > max_stuck 5"]
    # nothing left
    assert autopause.apply(build.conn, [verdict], clock.now(), "watcher@test-host:1") == []


def test_sqlite_text_and_bytes_datetimes_are_read():
    want = dt.datetime(2026, 2, 9, 10, 0, 1)
    assert [
        q._as_datetime(v) for v in (b"2026-02-09 10:00:01", "2026-02-09 10:00:01", want, None)
    ] == [want, want, want, None]


def test_missing_message_ids_of_a_resumed_campaign_with_no_sends(build):
    build.campaign(1)
    build.conn.execute(
        "UPDATE ll_campanias_whatsapp SET resumed_at = %s WHERE id = 1", (build.ago(hours=1),)
    )
    assert q.missing_message_ids(build.conn, q.campaigns(build.conn)) == {1: q.Missing(0, 0, 0)}
