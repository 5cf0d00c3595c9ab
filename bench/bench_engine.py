"""The send engine and the watcher, measured side by side in one run: one table.

    python bench/bench_engine.py [--url mysql://root@127.0.0.1:3306/] [--tiny]

Against one MariaDB server (ENVIOS_TEST_MYSQL_URL when set; a fresh database per
measurement, dropped afterwards) and one gateway simulator (in this process, no
faults, no latency):

1. throughput, claim -> send -> `enviado` with its history row and daily count:
   20,000 rows at 1, 10 and 100 sessions, zero delay, `envios send` in throughput
   mode (a child process; sender.rate_per_s high, sender.max_in_flight 16), beside
   the legacy sequential loop (one row at a time: select, POST, mark enviado with
   its history row and count; also a child process) on the same data;
2. pacing fairness: 400 sessions at 1 s +- 0.5 s for 60 s (from the first send):
   sends achieved vs ideal, per-session min/median/max, peak database connections;
3. memory: the sender's peak RSS with 1,000 sessions paced at 1 s;
4. the watcher's refresh and scrape at 1,000,000 rows, 40 and 200 active campaigns,
   beside the seed's KPI queries (bench/bench_watcher.py's data and measurements).

--tiny runs every part at a toy size (CI checks that it still works); the figures
are only meaningful at full size, on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import collections
import copy
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import bench_watcher  # noqa: E402
from envios.simulator.server import SimulatorServer  # noqa: E402

from envios import config as config_module  # noqa: E402
from envios.clock import Clock  # noqa: E402
from envios.store import schema  # noqa: E402
from envios.store.connector import Database  # noqa: E402

TZ = "America/Argentina/Buenos_Aires"
GOALS = {
    "throughput": 1000.0,
    "pacing": 0.95,
    "connections": 10,
    "rss_mb": 150.0,
    "refresh_ms": 100.0,
    "scrape_ms": 10.0,
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


class Scratch:
    """A fresh MariaDB database, upgraded, dropped on exit."""

    def __init__(self, server_url: str):
        self.name = f"envios_bench_{uuid.uuid4().hex[:8]}"
        self.admin = with_database(server_url, "mysql")
        self.url = with_database(server_url, self.name)

    def __enter__(self) -> Scratch:
        with Database(self.admin).connect() as admin:
            admin.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")
        with Database(self.url).connect() as conn:
            schema.upgrade(conn, Clock(TZ).now())
        return self

    def __exit__(self, *exc) -> None:
        with Database(self.admin).connect() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.name}")


def seed_sessions(url: str, sessions: int, rows_each: int) -> None:
    """`sessions` campaigns, one schedule (own cliente_id) each, `rows_each` pending rows each."""
    with Database(url).connect() as conn:
        conn.execute(
            "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
            f" SELECT seq, 'bench', 'Hola', 'en_progreso' FROM seq_1_to_{sessions}"
        )
        conn.execute(
            "INSERT INTO ll_programaciones (id, campania_id, cliente_id, dias_semana, hora_inicio,"
            " hora_fin, cupo_diario, fecha_inicio, estado) SELECT seq, seq, seq,"
            " 'mon,tue,wed,thu,fri,sat,sun', '00:00:00', '23:59:59', 1000000, '2020-01-01',"
            " 'aprobada'"
            f" FROM seq_1_to_{sessions}"
        )
        conn.execute(
            "INSERT INTO ll_envios_whatsapp"
            " (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
            " SELECT c.seq, CONCAT('54911', LPAD(c.seq, 3, '0'), LPAD(r.seq, 5, '0')), 'Ana',"
            f" 'Hola {{nombre}}' FROM seq_1_to_{sessions} c, seq_1_to_{rows_each} r"
        )


def sent_count(url: str) -> int:
    with Database(url).connect() as conn:
        return int(
            conn.scalar("SELECT COUNT(*) FROM ll_envios_whatsapp WHERE estado = %s", ("enviado",))
        )


def sender_env(url: str, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env.update(
        {
            "PYTHONPATH": ROOT,
            "ENVIOS_DATABASE_URL": url,
            "ENVIOS_GATEWAY_BASE_URL": base_url,
            "ENVIOS_GATEWAY_SESSIONS": "per_cliente",
            "ENVIOS_SENDER_METRICS_PORT": "0",
            "ENVIOS_SENDER_TICK_S": "1",
            "ENVIOS_TIMEZONE": TZ,
            **extra,
        }
    )
    return env


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until_sent(url: str, total: int, proc: subprocess.Popen, limit_s: float) -> float:
    started = time.monotonic()
    while sent_count(url) < total:
        if proc.poll() is not None or time.monotonic() - started > limit_s:
            raise RuntimeError(f"only {sent_count(url)} of {total} sent (exit {proc.poll()})")
        time.sleep(0.05)
    return time.monotonic() - started


# -- 1. throughput ------------------------------------------------------------------------------

LEGACY_NEXT = (
    "SELECT id, campania_id, telefono_wapp, mensaje_final FROM ll_envios_whatsapp"
    " WHERE estado = %s AND id > %s ORDER BY id LIMIT 1"
)
LEGACY_HISTORY = (
    "INSERT INTO ll_envios_whatsapp_historial (envio_id, estado_anterior, estado_nuevo, origen,"
    " detalle, created_at) VALUES (%s, %s, %s, 'scheduler', NULL, %s)"
)
LEGACY_MARK = (
    "UPDATE ll_envios_whatsapp SET estado = %s, message_id = %s, fecha_envio = %s WHERE id = %s"
)
LEGACY_COUNT = (
    "INSERT INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados)"
    " VALUES (%s, %s, 1)"
    " ON DUPLICATE KEY UPDATE enviados = enviados + 1, actualizado_en = %s"
)


def legacy_loop(url: str, base_url: str) -> None:
    """The application's scheduler as it sends: one row at a time, each write autocommitted."""
    import requests

    clock = Clock(TZ)
    last = 0
    with Database(url).connect() as conn, requests.Session() as http:
        while True:
            row = conn.query_one(LEGACY_NEXT, ("pendiente", last))
            if row is None:
                return
            last, campania_id = int(row["id"]), int(row["campania_id"])
            body = {
                "cliente_id": campania_id,
                "to": row["telefono_wapp"],
                "message": row["mensaje_final"],
            }
            answer = http.post(
                f"{base_url}/send",
                json=body,
                headers={"X-Cliente-Id": str(campania_id)},
                timeout=10,
            ).json()
            now = clock.now()
            conn.execute(LEGACY_HISTORY, (row["id"], "pendiente", "enviado", now))
            conn.execute(
                LEGACY_MARK,
                ("enviado", answer.get("messageId") or answer.get("id"), now, row["id"]),
            )
            conn.execute(LEGACY_COUNT, (campania_id, now.date(), now))


def throughput(server_url: str, sim: SimulatorServer, total: int, sessions: int) -> dict:
    out = {}
    with Scratch(server_url) as db:
        seed_sessions(db.url, sessions, total // sessions)
        proc = spawn(
            [os.path.abspath(__file__), "--legacy-loop", db.url, sim.base_url],
            sender_env(db.url, ""),
        )
        try:
            out["legacy_s"] = wait_until_sent(db.url, total, proc, 1800)
        finally:
            stop(proc)
    with Scratch(server_url) as db:
        seed_sessions(db.url, sessions, total // sessions)
        env = sender_env(
            db.url,
            sim.base_url,
            ENVIOS_SENDER_RATE_PER_S="1000000",
            ENVIOS_SENDER_MAX_IN_FLIGHT="16",
            ENVIOS_SENDER_DELAY_MIN_S="0",
            ENVIOS_SENDER_DELAY_MAX_S="0",
            ENVIOS_SENDER_TICK_S="5",
        )
        proc = spawn(["-m", "envios", "send", "--log-level", "WARNING"], env)
        try:
            out["engine_s"] = wait_until_sent(db.url, total, proc, 1800)
        finally:
            stop(proc)
    out["legacy"] = total / out["legacy_s"]
    out["engine"] = total / out["engine_s"]
    return out


# -- 2. pacing, 3. memory -------------------------------------------------------------------------


def connections(admin, name: str) -> int:
    return int(
        admin.scalar("SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (name,))
    )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def paced(
    server_url: str, sim: SimulatorServer, sessions: int, window_s: float, rows_each: int
) -> dict:
    """`sessions` paced at 1 s +- 0.5 s: sends per session inside `window_s` from the first send."""
    with Scratch(server_url) as db:
        seed_sessions(db.url, sessions, rows_each)
        sim.state.reset()
        env = sender_env(
            db.url, sim.base_url, ENVIOS_SENDER_DELAY_MIN_S="0.5", ENVIOS_SENDER_DELAY_MAX_S="1.5"
        )
        proc = spawn(["-m", "envios", "send", "--log-level", "WARNING"], env)
        peak_conn, peak_rss = 0, 0.0
        try:
            with Database(db.admin).connect() as admin:
                started = time.monotonic()
                while sim.state.sends_received == 0:
                    if proc.poll() is not None or time.monotonic() - started > 120:
                        raise RuntimeError("the sender never sent")
                    time.sleep(0.01)
                first = time.monotonic()
                before = collections.Counter(e["cliente_id"] for e in sim.state.ledger)
                while time.monotonic() - first < window_s:
                    peak_conn = max(peak_conn, connections(admin, db.name))
                    peak_rss = max(peak_rss, rss_mb(proc.pid))
                    time.sleep(0.05)
                after = collections.Counter(e["cliente_id"] for e in sim.state.ledger)
        finally:
            stop(proc)
    per_session = [after[cid] - before[cid] for cid in range(1, sessions + 1)]
    return {
        "achieved": sum(per_session),
        "ideal": sessions * window_s / 1.0,
        "min": min(per_session),
        "median": statistics.median(per_session),
        "max": max(per_session),
        "peak_connections": peak_conn,
        "peak_rss_mb": peak_rss,
        "sessions_active": sum(1 for n in per_session if n),
    }


# -- 4. the watcher --------------------------------------------------------------------------------


def watcher(server_url: str, rows: int, campaigns: int, active: int, runs: int) -> dict:
    clock = Clock(TZ)
    with Scratch(server_url) as db, Database(db.url).connect() as conn:
        now = clock.now()
        bench_watcher.fill(conn, rows, campaigns, active, now)
        base = config_module.Config(config_module.validate(copy.deepcopy(config_module.DEFAULTS)))
        cfg = base.with_overrides(
            {
                "database.url": db.url,
                "timezone": TZ,
                "monitor.port": 0,
                "monitor.autopause.enabled": False,
            }
        )
        realistic = bench_watcher.measure_watcher(cfg, clock, runs)
        seed = {}
        for kpi, sql in bench_watcher.SEED_KPIS.items():
            params = (now - dt.timedelta(minutes=5),) if "%s" in sql else ()
            conn.query(sql, params)
            seed[kpi], _ = bench_watcher.timed(
                lambda sql=sql, params=params: conn.query(sql, params), runs
            )
        conn.execute(
            "UPDATE ll_campanias_whatsapp SET estado = 'en_progreso' WHERE estado = 'finalizado'"
        )
        worst = bench_watcher.measure_watcher(cfg, clock, runs)
    return {"realistic": realistic, "worst": worst, "seed_total": sum(seed.values())}


# -- the table ---------------------------------------------------------------------------------


# (throughput rows, session counts, paced sessions, pacing window s, memory sessions,
#  watcher rows, watcher runs)
SIZES = {
    "full": (20_000, (1, 10, 100), 400, 60.0, 1000, 1_000_000, 5),
    "tiny": (120, (1, 2, 4), 20, 3.0, 30, 3000, 1),  # CI: checks the benchmark runs
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url",
        default=os.environ.get("ENVIOS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/"),
        help="MariaDB server (the database part is ignored)",
    )
    parser.add_argument("--tiny", action="store_true", help="toy sizes: checks the benchmark runs")
    parser.add_argument(
        "--legacy-loop", nargs=2, metavar=("DB_URL", "BASE_URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.legacy_loop:
        legacy_loop(*args.legacy_loop)
        return 0
    if urlsplit(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the benchmark creates and drops databases: point it at a local server")
    total, session_counts, pacing_n, window, memory_n, rows, runs = SIZES[
        "tiny" if args.tiny else "full"
    ]
    started = time.monotonic()
    with Database(with_database(args.url, "mysql")).connect() as admin:
        version = admin.scalar("SELECT VERSION()")
    sim = SimulatorServer(seed=1).start()
    try:
        results = {}
        for sessions in session_counts:
            log(f"throughput: {total} rows, {sessions} sessions ...")
            results[sessions] = throughput(args.url, sim, total, sessions)
        log(f"pacing: {pacing_n} sessions for {window:g} s ...")
        pacing = paced(args.url, sim, pacing_n, window, int(window * 1.6) + 10)
        log(f"memory: {memory_n} sessions ...")
        memory = paced(args.url, sim, memory_n, max(3.0, window / 3), int(window / 3 * 1.6) + 10)
    finally:
        sim.stop()
    log(f"watcher: {rows} rows ...")
    campaigns, active = (20, 4) if args.tiny else (200, 40)
    watch = watcher(args.url, rows, campaigns, active, runs)

    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    lines = [
        f"machine: {os.cpu_count()} cores, MariaDB {version}, Python {sys.version.split()[0]};"
        f" simulator in the benchmark process, sender and legacy loop as child processes",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
    ]
    for sessions, r in results.items():
        lines.append(
            f"| throughput, {total:,} rows, {sessions} session(s) | {r['engine']:.0f} msg/s"
            f" (legacy loop {r['legacy']:.0f} msg/s: {r['engine'] / r['legacy']:.2f}x) |"
            + (
                f" >= {GOALS['throughput']:.0f} msg/s: {met(r['engine'] >= GOALS['throughput'])} |"
                if sessions == max(results)
                else " |"
            )
        )
    ratio = pacing["achieved"] / pacing["ideal"]
    lines.append(
        f"| pacing, {pacing_n} sessions at 1 s +- 0.5 s for {window:g} s |"
        f" {pacing['achieved']:,} of "
        f"{pacing['ideal']:,.0f} ideal sends = {ratio:.1%}; per session min/median/max "
        f"{pacing['min']}/{pacing['median']:g}/{pacing['max']} |"
        f" >= 95%: {met(ratio >= GOALS['pacing'])} |"
    )
    lines.append(
        f"| peak database connections (pacing run) | {pacing['peak_connections']} |"
        f" <= {GOALS['connections']}: {met(pacing['peak_connections'] <= GOALS['connections'])} |"
    )
    lines.append(
        f"| sender RSS, {memory_n} sessions paced"
        f" ({memory['sessions_active']} sent in the window) |"
        f" {memory['peak_rss_mb']:.0f} MB | < {GOALS['rss_mb']:.0f} MB:"
        f" {met(memory['peak_rss_mb'] < GOALS['rss_mb'])} |"
    )
    views = ((f"{active} active", watch["realistic"]), (f"all {campaigns} active", watch["worst"]))
    for label, w in views:
        lines.append(
            f"| watcher refresh, {rows:,} rows, {label} campaigns ({w['campaigns']} watched) |"
            f" {ms(w['refresh'])} (seed KPI queries {ms(watch['seed_total'])}) |"
            f" < {GOALS['refresh_ms']:.0f} ms: {met(w['refresh'] * 1000 < GOALS['refresh_ms'])} |"
        )
        lines.append(
            f"| watcher scrape, {label} | {ms(w['scrape'])} ({w['series']} series) |"
            f" < {GOALS['scrape_ms']:.0f} ms: {met(w['scrape'] * 1000 < GOALS['scrape_ms'])} |"
        )
    lines.append(
        f"| watcher first refresh, {active} active (reads every row's facts once) |"
        f" {ms(watch['realistic']['first_refresh'])} | |"
    )
    for label, w in views:
        lines.append(
            f"watcher reads, {label}: "
            + ", ".join(f"{name} {ms(seconds)}" for name, seconds in w["per_query"].items())
        )
    lines += ["", f"total benchmark time {time.monotonic() - started:.0f} s"]
    print("\n".join(lines))
    failed = watch["realistic"]["failed"] or watch["worst"]["failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
