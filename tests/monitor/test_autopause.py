"""Auto-pause: each threshold crossed and not crossed, idempotence, two watchers, resume."""

from __future__ import annotations

import logging
import threading

import pytest
from envios.monitor import campaigns
from envios.monitor import refresher as refresher_module

from tests.monitor.conftest import labels, make_config, parse, series


def setup_campaign(b, cid=1):
    b.campaign(cid, "en_progreso")
    b.schedule(cid * 10, cid, "aprobada", cliente_id=51)
    b.schedule(cid * 10 + 1, cid, "aprobada", cliente_id=52)
    b.schedule(
        cid * 10 + 2,
        cid,
        "pausada",
        paused_reason="operator",
        paused_by="operator",
        paused_at=b.ago(days=1),
    )


def finished(b, cid, sent, errors, minutes_ago=10, missing_id=False):
    if sent:
        b.send(
            cid,
            "enviado",
            claimed_at=b.ago(minutes=minutes_ago + 1),
            finished_at=b.ago(minutes=minutes_ago),
            message_id=None if missing_id else "auto",
            count=sent,
        )
    if errors:
        b.send(
            cid,
            "error",
            claimed_at=b.ago(minutes=minutes_ago + 1),
            finished_at=b.ago(minutes=minutes_ago),
            count=errors,
        )


def schedule_states(conn, cid=1):
    return {
        r["id"]: (r["estado"], r["paused_reason"], r["paused_by"])
        for r in conn.query(
            "SELECT id, estado, paused_reason, paused_by FROM ll_programaciones"
            " WHERE campania_id = %s ORDER BY id",
            (cid,),
        )
    }


def audit_rows(conn):
    return conn.query(
        "SELECT accion, campania_id, programacion_id, motivo, detalle, origen, creado_en"
        " FROM envios_audit ORDER BY id"
    )


def autopauses(watcher):
    return {
        dict(lbls)["reason"]: v
        for lbls, v in series(parse(watcher.exposition()), "envios_autopause_total").items()
    }


CROSSING = {
    # reason -> (builder of a database just over the threshold, detail fragments)
    "error_ratio": (
        lambda b: finished(b, 1, sent=18, errors=3),
        ["error_ratio 0.143 > max_error_ratio 0.1", "3 errors / 21 finished"],
    ),
    "stuck": (
        lambda b: b.send(1, "enviando", claimed_at=b.ago(minutes=6), count=6),
        ["stuck 6 > max_stuck 5"],
    ),
    "missing_message_id": (
        lambda b: finished(b, 1, sent=6, errors=0, missing_id=True),
        ["missing_message_id 6 > max_missing_message_id 5"],
    ),
}

BELOW = {
    # 0.10 is not above
    "error ratio at the threshold": lambda b: finished(b, 1, sent=18, errors=2),
    "error ratio below": lambda b: finished(b, 1, sent=19, errors=2),
    # 19 < min_finished
    "high ratio, too few finished": lambda b: finished(b, 1, sent=15, errors=4),
    "errors outside the window": lambda b: finished(b, 1, sent=10, errors=15, minutes_ago=61),
    "stuck at the threshold": lambda b: b.send(1, "enviando", claimed_at=b.ago(minutes=6), count=5),
    "in flight, not stuck yet": lambda b: b.send(
        1, "enviando", claimed_at=b.ago(minutes=4), count=9
    ),
    "missing ids at the threshold": lambda b: finished(b, 1, sent=5, errors=0, missing_id=True),
    "legacy sends have no id": lambda b: b.send(
        1, "enviado", finished_at=b.ago(days=3), legacy=True, count=9
    ),
}


@pytest.mark.parametrize("reason", list(CROSSING))
def test_crossing_a_threshold_pauses_the_campaign(reason, build, config, clock, watchers, caplog):
    setup_campaign(build)
    setup_campaign(build, cid=2)  # a healthy campaign beside it
    make, fragments = CROSSING[reason]
    make(build)
    watcher = watchers(config, clock=clock)
    with caplog.at_level(logging.WARNING, logger="envios.watch"):
        watcher.refresh()

    conn = build.conn
    assert schedule_states(conn) == {
        10: ("pausada", reason, "watcher"),
        11: ("pausada", reason, "watcher"),
        12: ("pausada", "operator", "operator"),  # already paused by an operator: untouched
    }
    assert conn.scalar("SELECT paused_at FROM ll_programaciones WHERE id = 10") == clock.db_now(
        conn
    )
    assert {s: e for s, (e, _, _) in schedule_states(conn, 2).items()} == {
        20: "aprobada",
        21: "aprobada",
        22: "pausada",
    }
    rows = audit_rows(conn)
    assert [(r["accion"], r["campania_id"], r["programacion_id"], r["motivo"]) for r in rows] == [
        ("autopause", 1, 10, reason),
        ("autopause", 1, 11, reason),
    ]
    for r in rows:
        assert r["creado_en"] == clock.db_now(conn)
        assert r["origen"].startswith("watcher@")
        for fragment in fragments:
            assert fragment in r["detalle"]
    assert autopauses(watcher) == {"error_ratio": 0, "stuck": 0, "missing_message_id": 0, reason: 1}
    assert series(parse(watcher.exposition()), "envios_schedule_paused") == {
        labels(programacion_id=10, campania_id=1, reason=reason): 1,
        labels(programacion_id=11, campania_id=1, reason=reason): 1,
        labels(programacion_id=12, campania_id=1, reason="operator"): 1,
        labels(programacion_id=22, campania_id=2, reason="operator"): 1,
    }
    assert any(
        "auto-paused campaign 1 (schedules 10, 11)" in m and fragments[0] in m
        for m in caplog.messages
    )

    # idempotent: the next refresh finds nothing approved and changes nothing
    clock.advance(15)
    watcher.refresh()
    assert len(audit_rows(conn)) == 2
    assert autopauses(watcher)[reason] == 1


@pytest.mark.parametrize("case", list(BELOW))
def test_below_the_thresholds_the_campaign_is_left_alone(case, build, config, clock, watchers):
    setup_campaign(build)
    BELOW[case](build)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    assert {s: e for s, (e, _, _) in schedule_states(build.conn).items()} == {
        10: "aprobada",
        11: "aprobada",
        12: "pausada",
    }
    assert audit_rows(build.conn) == []
    assert set(autopauses(watcher).values()) == {0}


def test_several_thresholds_crossed_the_worst_is_the_reason(build, config, clock, watchers):
    setup_campaign(build)
    finished(build, 1, sent=10, errors=15)
    build.send(1, "enviando", claimed_at=build.ago(minutes=30), count=8)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    (row, _) = audit_rows(build.conn)
    assert row["motivo"] == "stuck"
    assert "stuck 8 > max_stuck 5" in row["detalle"] and "error_ratio 0.600" in row["detalle"]
    assert autopauses(watcher) == {"error_ratio": 0, "stuck": 1, "missing_message_id": 0}


def test_disabled_autopause_only_watches(build, db_url, clock, watchers):
    setup_campaign(build)
    build.send(1, "enviando", claimed_at=build.ago(minutes=30), count=8)
    watcher = watchers(make_config(db_url, **{"monitor.autopause.enabled": False}), clock=clock)
    watcher.refresh()
    assert schedule_states(build.conn)[10][0] == "aprobada"
    assert series(parse(watcher.exposition()), "envios_stuck_sending")[labels(campania_id=1)] == 8


def test_two_watchers_at_once_pause_once_and_count_once(build, config, clock, watchers):
    setup_campaign(build)
    for cid in (2, 3):
        setup_campaign(build, cid)
        build.send(cid, "enviando", claimed_at=build.ago(minutes=30), count=6)
    finished(build, 1, sent=10, errors=10)
    a, b = watchers(config, clock=clock), watchers(config, clock=clock)
    for _ in range(3):  # a few rounds: the later ones find everything paused already
        barrier = threading.Barrier(2)
        errors = []

        def run(w, barrier=barrier, errors=errors):
            try:
                barrier.wait(10)
                w.refresh()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(w,)) for w in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        clock.advance(15)
    total = {reason: autopauses(a)[reason] + autopauses(b)[reason] for reason in autopauses(a)}
    assert total == {"error_ratio": 1, "stuck": 2, "missing_message_id": 0}
    rows = audit_rows(build.conn)
    assert sorted((r["campania_id"], r["programacion_id"]) for r in rows) == [
        (1, 10),
        (1, 11),
        (2, 20),
        (2, 21),
        (3, 30),
        (3, 31),
    ]
    for cid in (1, 2, 3):
        assert [e for e, _, _ in schedule_states(build.conn, cid).values()] == ["pausada"] * 3
    for w in (a, b):
        assert (
            series(parse(w.exposition()), "envios_watcher_query_errors_total")[
                labels(query="autopause")
            ]
            == 0
        )


def test_resumed_campaign_is_not_paused_again_for_old_errors(build, config, clock, watchers):
    setup_campaign(build)
    finished(build, 1, sent=10, errors=12, minutes_ago=20)
    finished(build, 1, sent=6, errors=0, minutes_ago=20, missing_id=True)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    assert schedule_states(build.conn)[10] == ("pausada", "missing_message_id", "watcher")

    clock.advance(300)
    resumed = campaigns.resume(build.conn, 1, now=clock.db_now(build.conn), detail="gateway fixed")
    assert resumed == [10, 11, 12]
    assert build.conn.scalar(
        "SELECT resumed_at FROM ll_campanias_whatsapp WHERE id = 1"
    ) == clock.db_now(build.conn)
    assert schedule_states(build.conn) == {
        10: ("aprobada", None, None),
        11: ("aprobada", None, None),
        12: ("aprobada", None, None),
    }
    clock.advance(15)
    watcher.refresh()
    assert [e for e, _, _ in schedule_states(build.conn).values()] == ["aprobada"] * 3
    got = parse(watcher.exposition())
    assert series(got, "envios_finished_in_window") == {labels(campania_id=1): 0}
    assert series(got, "envios_error_ratio") == {labels(campania_id=1): 0}
    # still there
    assert series(got, "envios_sent_missing_message_id") == {labels(campania_id=1): 6}
    assert autopauses(watcher) == {"error_ratio": 0, "stuck": 0, "missing_message_id": 1}

    # new errors after the resume do count
    build.now = clock.db_now(build.conn)
    finished(build, 1, sent=17, errors=4, minutes_ago=0)
    clock.advance(15)
    watcher.refresh()
    assert schedule_states(build.conn)[10] == ("pausada", "error_ratio", "watcher")
    assert autopauses(watcher) == {"error_ratio": 1, "stuck": 0, "missing_message_id": 1}
    assert [r["accion"] for r in audit_rows(build.conn)] == [
        "autopause",
        "autopause",
        "resume",
        "resume",
        "resume",
        "autopause",
        "autopause",
        "autopause",
    ]


def test_new_missing_ids_after_a_resume_count(build, config, clock, watchers):
    setup_campaign(build)
    finished(build, 1, sent=6, errors=0, minutes_ago=20, missing_id=True)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    clock.advance(60)
    campaigns.resume(build.conn, 1, now=clock.db_now(build.conn))
    clock.advance(60)
    build.now = clock.db_now(build.conn)
    finished(build, 1, sent=5, errors=0, minutes_ago=0, missing_id=True)
    watcher.refresh()
    assert schedule_states(build.conn)[10][0] == "aprobada"  # 5 new ones: not above 5
    build.send(1, "enviado", claimed_at=build.ago(seconds=5), finished_at=clock.db_now(build.conn))
    clock.advance(15)
    watcher.refresh()
    assert schedule_states(build.conn)[10] == ("pausada", "missing_message_id", "watcher")
    assert autopauses(watcher)["missing_message_id"] == 2


def test_rows_still_stuck_after_a_resume_pause_again(build, config, clock, watchers):
    """Decision: a stuck row needs `envios reconcile`; resuming does not make it count less."""
    setup_campaign(build)
    build.send(1, "enviando", claimed_at=build.ago(minutes=30), count=6)
    watcher = watchers(config, clock=clock)
    watcher.refresh()
    clock.advance(60)
    campaigns.resume(build.conn, 1, now=clock.db_now(build.conn))
    watcher.refresh()
    assert schedule_states(build.conn)[10] == ("pausada", "stuck", "watcher")
    assert autopauses(watcher)["stuck"] == 2


@pytest.mark.parametrize("read", ["schedules", "missing_message_id"])
def test_a_resume_during_a_refresh_is_not_undone_by_that_refresh(
    read, build, config, clock, watchers
):
    """An operator resumes while a refresh is reading: after its campaigns read (so it saw
    no resume) and before its `read`. Its verdict rests on sends finished before the
    resume, so it must not pause the campaign again; the next refresh judges afresh."""
    setup_campaign(build)
    finished(build, 1, sent=10, errors=12, minutes_ago=20)
    finished(build, 1, sent=6, errors=0, minutes_ago=20, missing_id=True)
    watchers(config, clock=clock).refresh()
    assert schedule_states(build.conn)[10] == ("pausada", "missing_message_id", "watcher")
    clock.advance(300)

    resumed = []

    def resume_then_read(conn, r):
        if not resumed:  # the operator, on another connection, between two reads of this refresh
            resumed.append(
                campaigns.resume(
                    build.conn, 1, now=clock.db_now(build.conn), detail="gateway fixed"
                )
            )
        return refresher_module._default_queries()[read](conn, r)

    racing = watchers(config, clock=clock, queries={read: resume_then_read})
    racing.refresh()
    assert resumed == [[10, 11, 12]]
    assert [e for e, _, _ in schedule_states(build.conn).values()] == ["aprobada"] * 3
    assert autopauses(racing) == {"error_ratio": 0, "stuck": 0, "missing_message_id": 0}
    clock.advance(15)
    racing.refresh()  # reads everything after the resume: nothing new finished, nothing to pause
    assert [e for e, _, _ in schedule_states(build.conn).values()] == ["aprobada"] * 3
