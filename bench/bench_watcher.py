"""The watcher's refresh and scrape on 1,000,000 rows, beside the seed's hourly KPI queries.

    python bench/bench_watcher.py [--url mysql://root@127.0.0.1:3306/] [--rows 1000000]
                                  [--campaigns 200] [--active 40] [--runs 5] [--keep]

Creates its own MariaDB database (envios_bench_<random>) on the server named by
--url (ENVIOS_TEST_MYSQL_URL when set), upgrades it to the envios schema, fills
it with INSERT ... SELECT from MariaDB's sequence engine (seq_1_to_N), then
reports, on the same data:

- the watcher's refresh (every query it runs, autopause off so nothing changes
  between runs) and one scrape of /metrics over HTTP;
- the seed's three KPI queries (CHECKLIST section 7; the stuck one adapted to
  claimed_at, NOW() replaced by a parameter), side by side, with ratios;
- the same refresh with every campaign active (the worst case: nothing finalizado);
- the EXPLAIN of each statement.

The database is dropped at the end unless --keep. This is a benchmark, not a
test: the figures depend on the machine and on the server's buffer pool.

Data (deterministic, from CRC32 of the row number):
- 200 campaigns: the first --active are en_progreso (the last 10 of those
  pendiente), the rest finalizado; 2 schedules each;
- rows spread evenly over the campaigns; the campaigns above 60% of the id
  range are old ones sent by the legacy system (no claim, no message id);
- finalizado: 88% enviado, 9% error, 3% pendiente; active: 40% pendiente,
  52% enviado, 7% error, 0.5% enviando (claimed up to 15 minutes ago: two thirds stuck), 1% of the
  enviado without a message id; finished sends spread over 3 days (active)
  or 30 days (finalizado);
- history: one row per claim and one per finish of every non-legacy row.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import os
import statistics
import sys
import time
import urllib.request
import uuid
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from envios.monitor import queries as q  # noqa: E402
from envios.monitor.refresher import QUERY_NAMES  # noqa: E402
from envios.monitor.watcher import Watcher  # noqa: E402

from envios import config as config_module  # noqa: E402
from envios.clock import Clock  # noqa: E402
from envios.store import schema  # noqa: E402
from envios.store.connector import Database  # noqa: E402

TZ = "America/Argentina/Buenos_Aires"

SEED_KPIS = {
    "seed 1: stuck (claimed_at)": (
        "SELECT COUNT(*) AS colgados FROM ll_envios_whatsapp"
        " WHERE estado = 'enviando' AND claimed_at < %s"
    ),
    "seed 2: error rate per campaign": (
        "SELECT campania_id, COUNT(*) AS total,"
        " SUM(CASE WHEN estado = 'error' THEN 1 ELSE 0 END) AS errores,"
        " ROUND(SUM(CASE WHEN estado = 'error' THEN 1 ELSE 0 END) * 100.0 / COUNT(*), 2)"
        " AS tasa_error_pct"
        " FROM ll_envios_whatsapp GROUP BY campania_id HAVING tasa_error_pct > 5"
    ),
    "seed 3: sent without message_id": (
        "SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = 'enviado' AND message_id IS NULL"
    ),
}
# which watcher query answers the same question as each seed query
COUNTERPART = {
    "seed 1: stuck (claimed_at)": "stuck",
    "seed 2: error rate per campaign": "error_ratio",
    "seed 3: sent without message_id": "missing_message_id",
}


def log(message: str) -> None:
    print(message, flush=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


def fill(conn, rows: int, campaigns: int, active: int, now: dt.datetime) -> None:
    pendiente_from = active - min(10, active // 4)  # the last active ones have not started
    legacy_from = int(campaigns * 0.6)  # older campaigns: sent by the legacy system
    conn.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado, fecha_creacion)"
        " SELECT seq, CONCAT('Campaña ', seq), 'Hola {nombre}',"
        " CASE WHEN seq <= %s THEN 'en_progreso' WHEN seq <= %s THEN 'pendiente'"
        " ELSE 'finalizado' END,"
        " %s FROM seq_1_to_" + str(campaigns),
        (pendiente_from, active, now - dt.timedelta(days=60)),
    )
    conn.execute(
        "INSERT INTO ll_programaciones (campania_id, cliente_id, dias_semana, hora_inicio,"
        " hora_fin, cupo_diario, fecha_inicio, estado)"
        " SELECT c.seq, 50 + MOD(c.seq * 2 + s.seq, 40), 'mon,tue,wed,thu,fri',"
        " '08:00:00', '20:00:00', 500,"
        " %s, CASE WHEN c.seq <= %s THEN 'aprobada' ELSE 'pausada' END"
        " FROM seq_1_to_" + str(campaigns) + " c, seq_1_to_2 s",
        (now.date() - dt.timedelta(days=60), active),
    )
    # r: a uniform number in [0, 10000) per row; a second one (r2) for times
    log(f"  inserting {rows:,} outbox rows ...")
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp, nombre_destino,"
        f""" mensaje_final,
              estado, fecha_envio, message_id, claimed_at, claimed_by, attempts)
        SELECT t.cid, CONCAT('549', LPAD(t.seq, 10, '0')), 'Ana', 'Hola Ana',
          t.estado,
          CASE WHEN t.estado = 'enviado' THEN t.finished END,
          CASE WHEN t.estado = 'enviado' AND NOT t.legacy AND NOT t.no_id
               THEN CONCAT('true_549', LPAD(t.seq, 10, '0'), '@c.us_', HEX(t.seq)) END,
          CASE WHEN t.legacy OR t.estado = 'pendiente' THEN NULL
               WHEN t.estado = 'enviando' THEN t.claim_live
               ELSE t.finished - INTERVAL 2 SECOND END,
          CASE WHEN t.legacy OR t.estado = 'pendiente' THEN NULL ELSE 'bench-sender' END,
          CASE WHEN t.legacy OR t.estado = 'pendiente' THEN 0 ELSE 1 END
        FROM (
          SELECT s.seq, 1 + MOD(s.seq, {campaigns}) AS cid,
            1 + MOD(s.seq, {campaigns}) > {legacy_from} AS legacy,
            MOD(CRC32(CONCAT('r2', s.seq)), 10000) < 100 AS no_id,
            CASE
              WHEN 1 + MOD(s.seq, {campaigns}) > {active} THEN
                CASE WHEN MOD(CRC32(s.seq), 10000) < 8800 THEN 'enviado'
                     WHEN MOD(CRC32(s.seq), 10000) < 9700 THEN 'error' ELSE 'pendiente' END
              WHEN 1 + MOD(s.seq, {campaigns}) > {pendiente_from} THEN 'pendiente'
              ELSE
                CASE WHEN MOD(CRC32(s.seq), 10000) < 4000 THEN 'pendiente'
                     WHEN MOD(CRC32(s.seq), 10000) < 9200 THEN 'enviado'
                     WHEN MOD(CRC32(s.seq), 10000) < 9950 THEN 'error' ELSE 'enviando' END
            END AS estado,
            %s - INTERVAL MOD(CRC32(CONCAT('t', s.seq)),
              CASE WHEN 1 + MOD(s.seq, {campaigns}) > {active} THEN 30 * 86400 ELSE 3 * 86400 END)
              SECOND
              AS finished,
            %s - INTERVAL MOD(CRC32(CONCAT('c', s.seq)), 900) SECOND AS claim_live
          FROM seq_1_to_{rows} s
        ) t""",
        (now, now),
    )
    log(f"  ... {time.perf_counter() - started:.1f}s")
    log("  inserting the history rows ...")
    started = time.perf_counter()
    conn.execute(
        "INSERT INTO ll_envios_whatsapp_historial (envio_id, campania_id, estado_anterior,"
        " estado_nuevo, origen, detalle, created_at)"
        " SELECT id, campania_id, 'pendiente', 'enviando', 'envios-sender', NULL, claimed_at"
        " FROM ll_envios_whatsapp WHERE claimed_at IS NOT NULL"
    )
    conn.execute(
        "INSERT INTO ll_envios_whatsapp_historial (envio_id, campania_id, estado_anterior,"
        " estado_nuevo, origen, detalle, created_at)"
        " SELECT id, campania_id, 'enviando', estado, 'envios-sender', NULL,"
        " claimed_at + INTERVAL 2 SECOND"
        " FROM ll_envios_whatsapp WHERE claimed_at IS NOT NULL AND estado IN ('enviado', 'error')"
    )
    log(f"  ... {time.perf_counter() - started:.1f}s")
    for table in (
        "ll_envios_whatsapp",
        "ll_envios_whatsapp_historial",
        "ll_campanias_whatsapp",
        "ll_programaciones",
    ):
        conn.query(f"ANALYZE TABLE {table}")


def timed(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


class Recorder:
    """A connection stand-in that records the statements the watcher's reads send."""

    def __init__(self, conn):
        self.conn = conn
        self.dialect = conn.dialect
        self.statements: list[tuple[str, tuple]] = []

    def query(self, sql, params=()):
        self.statements.append((sql, tuple(params)))
        return self.conn.query(sql, params)

    def scalar(self, sql, params=()):
        self.statements.append((sql, tuple(params)))
        return self.conn.scalar(sql, params)


def explain(conn, sql: str, params=()) -> list[str]:
    out = []
    for row in conn.query("EXPLAIN " + sql, params):
        out.append(
            f"    {row['table']:<10} type={row['type']:<7} key={row['key']!s:<28}"
            f" rows={row['rows']!s:<9} {row['Extra'] or ''}"
        )
    return out


def watcher_statements(conn, cfg, now) -> list[tuple[str, str, tuple]]:
    rec = Recorder(conn)
    camps = q.campaigns(rec)
    ids = sorted(camps)
    named = []
    steps = [
        ("campaigns", lambda: None),
        ("messages", lambda: q.messages(rec, ids)),
        ("stuck", lambda: q.stuck(rec, now - dt.timedelta(seconds=cfg.monitor.stuck_after_s))),
        ("missing_message_id", lambda: q.missing_message_ids(rec, camps)),
        (
            "error_ratio",
            lambda: q.finished_in_window(
                rec, now - dt.timedelta(seconds=cfg.monitor.window_s), now
            ),
        ),
        ("schedules", lambda: q.schedules(rec)),
    ]
    for name, step in steps:
        before = len(rec.statements)
        step()
        for sql, params in rec.statements[before:] or rec.statements[:1]:
            named.append((name, sql, params))
    return named


def measure_watcher(cfg, clock, runs: int) -> dict:
    watcher = Watcher(cfg, clock=clock, port=0, query_timeout_s=120)
    try:
        started = time.perf_counter()
        watcher.refresh()  # warm-up (connection, buffer pool; the first read of every row's facts)
        first_refresh = time.perf_counter() - started
        assert watcher.state.up, "refresh failed"
        per_query = {name: [] for name in QUERY_NAMES}

        def one():
            watcher.refresh()
            for name in QUERY_NAMES:
                per_query[name].append(watcher.state.query_duration_s[name])

        refresh, _ = timed(one, runs)
        failed = [n for n in QUERY_NAMES if n not in watcher.state.snapshot.fresh]
        watcher.start(refresh=False)
        url = watcher.url + "/metrics"

        def scrape():
            with urllib.request.urlopen(url, timeout=30) as resp:
                scrape.body = resp.read()

        scrape_s, _ = timed(scrape, max(runs * 4, 20))
        return {
            "refresh": refresh,
            "first_refresh": first_refresh,
            "per_query": {n: statistics.median(v) for n, v in per_query.items()},
            "scrape": scrape_s,
            "exposition_bytes": len(scrape.body),
            "series": sum(
                1 for line in scrape.body.decode().splitlines() if line and line[0] != "#"
            ),
            "failed": failed,
            "campaigns": len(watcher.state.snapshot.campaigns),
        }
    finally:
        watcher.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("ENVIOS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/"),
        help="MariaDB server (the database part is ignored)",
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--campaigns", type=int, default=200)
    parser.add_argument(
        "--active", type=int, default=40, help="campaigns not finalizado (default 40)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    name = f"envios_bench_{uuid.uuid4().hex[:8]}"
    parts = urlsplit(args.url)
    admin_url = with_database(args.url, "mysql")
    url = with_database(args.url, name)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark creates and drops a database: point it at a local server")
    with Database(admin_url).connect() as admin:
        admin.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    clock = Clock(TZ)
    total_started = time.perf_counter()
    try:
        with Database(url).connect() as conn:
            log(f"database {name}: schema upgrade")
            schema.upgrade(conn, clock.now())
            now = clock.now()
            started = time.perf_counter()
            log(
                f"filling: {args.rows:,} rows, {args.campaigns} campaigns"
                f" ({args.active} not finalizado)"
            )
            fill(conn, args.rows, args.campaigns, args.active, now)
            load_s = time.perf_counter() - started
            outbox = conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp")
            history = conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp_historial")
            mix = conn.query(
                "SELECT estado, COUNT(*) AS n FROM ll_envios_whatsapp"
                " GROUP BY estado ORDER BY estado"
            )
            legacy = conn.scalar(
                "SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = 'enviado'"
                " AND claimed_at IS NULL"
            )
            states = ", ".join(f"{r['estado']} {r['n']:,}" for r in mix)
            log(
                f"loaded in {load_s:.1f}s: {outbox:,} outbox rows"
                f" ({states}; legacy sends {legacy:,}),"
                f" {history:,} history rows"
            )

            base = config_module.Config(
                config_module.validate(copy.deepcopy(config_module.DEFAULTS))
            )
            cfg = base.with_overrides(
                {
                    "database.url": url,
                    "timezone": TZ,
                    "monitor.port": 0,
                    "monitor.autopause.enabled": False,
                }
            )

            log("\nEXPLAIN of the watcher's statements (MariaDB):")
            for qname, sql, params in watcher_statements(conn, cfg, now):
                log(f"  [{qname}]")
                for line in explain(conn, sql, params):
                    log(line)
            log("EXPLAIN of the seed's KPI queries:")
            for kpi, sql in SEED_KPIS.items():
                log(f"  [{kpi}]")
                for line in explain(
                    conn, sql, (now - dt.timedelta(minutes=5),) if "%s" in sql else ()
                ):
                    log(line)

            log(f"\nwatcher: {args.runs} refreshes + scrapes ...")
            realistic = measure_watcher(cfg, clock, args.runs)

            seed = {}
            for kpi, sql in SEED_KPIS.items():
                params = (now - dt.timedelta(minutes=5),) if "%s" in sql else ()
                conn.query(sql, params)  # warm-up
                seed[kpi], _ = timed(
                    lambda sql=sql, params=params: conn.query(sql, params), args.runs
                )

            log("worst case: every campaign not finalizado ...")
            conn.execute(
                "UPDATE ll_campanias_whatsapp SET estado = 'en_progreso'"
                " WHERE estado = 'finalizado'"
            )
            worst = measure_watcher(cfg, clock, args.runs)

        ms = lambda s: f"{s * 1000:9.1f} ms"  # noqa: E731
        log("\n=== results (median of runs) ===")
        log(
            f"rows {outbox:,} in ll_envios_whatsapp, {history:,} in the history,"
            f" {args.campaigns} campaigns"
        )
        log(f"{'':44}{'time':>12}")
        log(
            f"{'watcher refresh (' + str(realistic['campaigns']) + ' campaigns not finalizado)':44}"
            f"{ms(realistic['refresh'])}"
        )
        for qname, seconds in realistic["per_query"].items():
            log(f"{'  query ' + qname:44}{ms(seconds)}")
        log(
            f"{'one scrape of /metrics (HTTP)':44}{ms(realistic['scrape'])}"
            f"   ({realistic['series']} series, {realistic['exposition_bytes']:,} bytes)"
        )
        seed_total = sum(seed.values())
        for kpi, seconds in seed.items():
            mine = realistic["per_query"][COUNTERPART[kpi]]
            log(
                f"{kpi:44}{ms(seconds)}   vs the watcher's {COUNTERPART[kpi]} query"
                f" {ms(mine).strip()}:"
                f" seed/watcher = {seconds / mine if mine else float('inf'):.2f}"
            )
        log(f"{'seed KPI queries, all three':44}{ms(seed_total)}")
        log(f"{'ratio seed total / watcher refresh':44}{seed_total / realistic['refresh']:9.1f} x")
        log(f"{'ratio seed total / one scrape':44}{seed_total / realistic['scrape']:9.0f} x")
        log(
            f"{'worst case refresh (all ' + str(worst['campaigns']) + ' campaigns active)':44}"
            f"{ms(worst['refresh'])}"
        )
        for qname, seconds in worst["per_query"].items():
            log(f"{'  query ' + qname:44}{ms(seconds)}")
        log(f"{'worst case scrape':44}{ms(worst['scrape'])}   ({worst['series']} series)")
        if realistic["failed"] or worst["failed"]:
            log(f"WARNING: queries failed: {realistic['failed']} {worst['failed']}")
        log(f"total benchmark time {time.perf_counter() - total_started:.0f}s")
    finally:
        if not args.keep:
            with Database(admin_url).connect() as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name}")
        else:
            log(f"kept database {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
