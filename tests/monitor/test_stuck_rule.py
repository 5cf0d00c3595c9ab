"""The stuck rule, pinned at its boundaries on both backends, everywhere it is computed.

Contract (DESIGN.md section 5, `monitor.stuck_after_s`): a row is stuck when it is in
`enviando` and its claim is OLDER than the cutoff (now - stuck_after_s), or when it is
in `enviando` with no claim time at all (written by hand or by an older tool: nobody
knows when it left). A claim exactly at the cutoff is not stuck yet. The table below
is literal; each place that computes "stuck" must give the same answer for every row.
"""

from __future__ import annotations

import datetime as dt

import pytest
from envios.monitor import campaigns
from envios.monitor import queries as q
from envios.sender import outbox

from tests.monitor.conftest import labels, make_config, parse, series

STUCK_AFTER_S = 300
SECOND = dt.timedelta(seconds=1)

# (label, estado, claim age in seconds or None for no claim time, stuck?)
ROWS = [
    ("claimed one second past the cutoff", "enviando", STUCK_AFTER_S + 1, True),
    ("claimed exactly at the cutoff", "enviando", STUCK_AFTER_S, False),
    ("claimed one second before the cutoff", "enviando", STUCK_AFTER_S - 1, False),
    ("claimed just now", "enviando", 0, False),
    ("enviando with no claim time", "enviando", None, True),
    ("pendiente with an old claim (retried)", "pendiente", STUCK_AFTER_S * 10, False),
    ("enviado with an old claim", "enviado", STUCK_AFTER_S * 10, False),
    ("error with no claim time", "error", None, False),
]


def seed(conn, now: dt.datetime) -> dict[str, int]:
    """One campaign per row of ROWS (campaign id = position + 1), so each verdict is separate."""
    ids = {}
    for n, (label, estado, age_s, _stuck) in enumerate(ROWS, start=1):
        conn.execute(
            "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
            " VALUES (%s, %s, 'm', 'en_progreso')",
            (n, f"c{n}"),
        )
        claimed_at = None if age_s is None else now - dt.timedelta(seconds=age_s)
        conn.execute(
            "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
            " mensaje_final, estado, claimed_at) VALUES (%s, %s, 'Ana', 'hola', %s, %s)",
            (n, f"54911000000{n:02d}", estado, claimed_at),
        )
        ids[label] = n
    return ids


EXPECTED_STUCK_CAMPAIGNS = {n for n, row in enumerate(ROWS, start=1) if row[3]}


@pytest.fixture
def seeded(upgraded, clock):
    # claim times follow the database's clock (DESIGN.md section 10)
    seed(upgraded, clock.db_now(upgraded))
    return upgraded


def cutoff(clock, conn) -> dt.datetime:
    return clock.db_now(conn) - dt.timedelta(seconds=STUCK_AFTER_S)


def test_watcher_query_stuck_at_its_boundaries(seeded, clock):
    """envios.monitor.queries.stuck: `claimed_at < cutoff OR claimed_at IS NULL`, exactly."""
    got = q.stuck(seeded, cutoff(clock, seeded))
    assert set(got) == EXPECTED_STUCK_CAMPAIGNS
    assert got[1] == q.Stuck(1, clock.db_now(seeded) - dt.timedelta(seconds=STUCK_AFTER_S + 1))
    assert got[5] == q.Stuck(1, None)  # only a row without a claim time: no oldest claim


def test_campaign_command_stuck_count_at_its_boundaries(seeded, clock):
    """monitor.campaigns.stuck_count (the warning of `envios campaign resume`)."""
    got = {
        n: campaigns.stuck_count(seeded, n, cutoff(clock, seeded)) for n in range(1, len(ROWS) + 1)
    }
    assert got == {n: int(n in EXPECTED_STUCK_CAMPAIGNS) for n in got}


def test_reconcile_list_stuck_rows_at_their_boundaries(seeded, clock):
    """sender.outbox.stuck_rows (`envios reconcile list`)."""
    assert {
        int(r["campania_id"]) for r in outbox.stuck_rows(seeded, cutoff(clock, seeded))
    } == EXPECTED_STUCK_CAMPAIGNS


def test_exported_gauge_at_the_boundaries(seeded, db_url, clock, watchers):
    """envios_stuck_sending from a refresh with monitor.stuck_after_s = 300.

    This checks the wiring of the cutoff.
    """
    watcher = watchers(
        make_config(
            db_url, **{"monitor.stuck_after_s": STUCK_AFTER_S, "monitor.autopause.enabled": False}
        ),
        clock=clock,
    )
    assert watcher.refresh() is True
    got = series(parse(watcher.exposition()), "envios_stuck_sending")
    assert got == {
        labels(campania_id=n): int(n in EXPECTED_STUCK_CAMPAIGNS) for n in range(1, len(ROWS) + 1)
    }
    # one second later the row claimed exactly at the cutoff has become stuck
    clock.advance(1)
    watcher.refresh()
    got = series(parse(watcher.exposition()), "envios_stuck_sending")
    assert got[labels(campania_id=2)] == 1
    assert got[labels(campania_id=3)] == 0
