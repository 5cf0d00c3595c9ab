"""The watcher's reads use the indexes: no full scan of the outbox or the history table.

The bench (bench/bench_watcher.py) prints the MariaDB plans on 1,000,000 rows; this
checks the plans of every statement of a refresh on a small known database.
"""

from __future__ import annotations

import datetime as dt

from envios.monitor import queries as q

from envios.store import watching
from envios.store.sql import Statement
from tests.monitor.test_metrics import seed_known

BIG_TABLES = {"ll_envios_whatsapp", "ll_envios_whatsapp_historial", "e", "h"}


class Recorder:
    def __init__(self, conn):
        self.conn, self.dialect, self.statements = conn, conn.dialect, []

    def query(self, sql, params=()):
        text = sql.text(self.dialect) if isinstance(sql, Statement) else sql
        self.statements.append((text, params))
        return self.conn.query(sql, params)


def refresh_statements(conn, now):
    rec = Recorder(conn)
    camps = q.campaigns(rec)
    q.messages(rec, sorted(camps))
    q.stuck(rec, now - dt.timedelta(minutes=5))
    q.missing_message_ids(rec, camps)
    q.finished_in_window(rec, now - dt.timedelta(hours=1), now)
    q.schedules(rec)
    q.delivery(rec, sorted(camps))
    q.settled_unknowns(rec, sorted(camps))
    return rec.statements


def test_no_full_scan_of_the_big_tables(build, clock):
    seed_known(build)
    conn = build.conn
    conn.execute(
        "UPDATE ll_campanias_whatsapp SET resumed_at = %s WHERE id = 1",
        (clock.now() - dt.timedelta(hours=2),),
    )
    statements = refresh_statements(conn, clock.now())
    since_resume = watching.MISSING_SINCE_RESUME.sql.split(" IN ")[0]
    assert since_resume in "".join(sql for sql, _ in statements)
    for sql, params in statements:
        if conn.dialect == "sqlite":
            plan = [r["detail"] for r in conn.query("EXPLAIN QUERY PLAN " + sql, params)]
            for step in plan:
                words = step.split()
                if words[0] == "SCAN" and words[1] in BIG_TABLES:
                    assert "INDEX" in step, (sql, plan)
        else:
            plan = conn.query("EXPLAIN " + sql, params)
            for row in plan:
                if row["table"] in BIG_TABLES:
                    assert row["type"] not in ("ALL", "index") and row["key"], (sql, plan)
