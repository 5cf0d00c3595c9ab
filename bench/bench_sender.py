"""How fast the sender drains an outbox with zero pacing (speed lives here, not in the tests).

    python bench/bench_sender.py [--sessions 20] [--rows 100] [--procs 1] [--db-url URL]

Creates a fresh database (SQLite in a temp dir by default, or the MySQL URL
given, whose database must be empty or disposable), `--sessions` schedules with
`--rows` pending rows each, starts the gateway simulator in this process and
runs `--procs` `envios send` processes (long-running, stopped with SIGTERM once
every row is sent). Prints rows/s and the check that nothing was sent twice.

Baseline, measured in the same run against the same simulator: the bare HTTP
work the sender does per message (GET /status then POST /send, one keep-alive
connection per session, one thread per session) with no database at all. The
ratio sender/baseline is the price of claiming, recording and counting each
send durably.
Pacing is zero, so the figure is the sender's own overhead per message: the
production pacing (30-90 s per session) is thousands of times slower.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envios.sender import schema  # noqa: E402
from envios.simulator.server import SimulatorServer  # noqa: E402

from envios.clock import Clock  # noqa: E402
from envios.store.connector import Database  # noqa: E402


def seed(url: str, sessions: int, rows: int) -> None:
    with Database(url).connect() as conn:
        schema.upgrade(conn, Clock("America/Argentina/Buenos_Aires").now())
        for k in range(sessions):
            cid = k + 1
            conn.execute(
                "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
                " VALUES (%s, 'b', 'm', 'en_progreso')",
                (cid,),
            )
            conn.execute(
                "INSERT INTO ll_programaciones (id, campania_id, cliente_id, dias_semana,"
                " hora_inicio, hora_fin, cupo_diario, fecha_inicio, estado)"
                " VALUES (%s, %s, %s, 'mon,tue,wed,thu,fri,sat,sun',"
                " '00:00:00', '23:59:59', %s, '2020-01-01', 'aprobada')",
                (cid, cid, cid, rows),
            )
            with conn.transaction():
                for i in range(rows):
                    conn.execute(
                        "INSERT INTO ll_envios_whatsapp"
                        " (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
                        " VALUES (%s, %s, 'Ana', 'Hola {nombre}')",
                        (cid, f"54911{k:04d}{i:04d}"),
                    )


def bare_http_baseline(base_url: str, sessions: int, rows: int) -> float:
    """Seconds for the same number of status+send pairs with no database work."""
    import threading

    import requests

    def worker(cid: int) -> None:
        with requests.Session() as http:
            headers = {"X-Cliente-Id": str(cid)}
            for i in range(rows):
                http.get(f"{base_url}/status", headers=headers, timeout=10).raise_for_status()
                body = {"cliente_id": cid, "to": f"54922{cid:04d}{i:04d}", "message": "Hola Ana"}
                http.post(
                    f"{base_url}/send", json=body, headers=headers, timeout=10
                ).raise_for_status()

    threads = [threading.Thread(target=worker, args=(cid,)) for cid in range(1, sessions + 1)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rows", type=int, default=100)
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--db-url", default=None)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-sender-")
    url = args.db_url or f"sqlite:///{tmp}/bench.db"
    seed(url, args.sessions, args.rows)
    total = args.sessions * args.rows
    sim = SimulatorServer(seed=1).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENVIOS_DATABASE_URL": url,
            "ENVIOS_GATEWAY_BASE_URL": sim.base_url,
            "ENVIOS_SENDER_DELAY_MIN_S": "0",
            "ENVIOS_SENDER_DELAY_MAX_S": "0",
            "ENVIOS_SENDER_METRICS_PORT": "0",
            "ENVIOS_SENDER_TICK_S": "0.2",
        }
    )
    started = time.monotonic()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "envios", "send", "--log-level", "WARNING"], cwd=tmp, env=env
        )
        for _ in range(args.procs)
    ]
    try:
        while len(sim.state.ledger) < total and time.monotonic() - started < 600:
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
        sim.stop()
    ledger = sim.state.ledger
    dupes = [to for to, n in collections.Counter(e["to"] for e in ledger).items() if n > 1]
    baseline_sim = SimulatorServer(seed=1).start()
    try:
        baseline = bare_http_baseline(baseline_sim.base_url, args.sessions, args.rows)
    finally:
        baseline_sim.stop()
    print(
        f"{total} rows, {args.sessions} sessions, {args.procs} sender process(es), "
        f"{url.split(':')[0]}: "
        f"{elapsed:.1f}s (includes process start-up) = {total / elapsed:.0f} rows/s; "
        f"delivered {len(ledger)}, duplicates {len(dupes)}"
    )
    print(
        f"baseline, bare status+send with no database: {baseline:.1f}s = "
        f"{total / baseline:.0f} msgs/s; "
        f"sender time / baseline time = {elapsed / baseline:.2f}"
    )
    return 0 if not dupes and len(ledger) == total else 1


if __name__ == "__main__":
    sys.exit(main())
