"""The chaos soak's moving parts: a seeded outbox, the simulator with faults, the fault schedule,
the tally.

The tally reconciles the database with the simulator's ledger (every delivery it made):

    phantom        rows enviado that were never delivered
    duplicate      recipients delivered more than once
    lost           delivered, but the row is pendiente or error
    unknown        rows left enviando (the outcome nobody knows)
    over_quota     deliveries of one session beyond its schedule's daily quota
    no_history     rows whose current state has no history row
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import threading
import time

import pymysql

from envios.clock import Clock
from envios.store import schema
from envios.store.connector import Database

TZ = "America/Argentina/Buenos_Aires"
SESSIONS = (51, 52, 53)
ALL_DAYS = "mon,tue,wed,thu,fri,sat,sun"
FAULTS = {
    "error_5xx_rate": 0.04,
    "rate_limit_rate": 0.04,
    "slow_rate": 0.03,
    "slow_s": 1.6,
    "drop_connection_rate": 0.03,
    "stall_rate": 0.03,
    "session_drop_rate": 0.01,
    "session_drop_s": 1.0,
}
NO_FAULTS = {
    "error_5xx_rate": 0.0,
    "rate_limit_rate": 0.0,
    "slow_rate": 0.0,
    "drop_connection_rate": 0.0,
    "stall_rate": 0.0,
    "session_drop_rate": 0.0,
}
COLUMNS = ("phantom", "duplicate", "lost", "unknown", "over_quota", "no_history")


def seed(db_url: str, rows_per_session: int, quota: int) -> None:
    """One campaign per session, rows with distinct recipients, quota `quota` a day each."""
    clock = Clock(TZ)
    with Database(db_url).connect() as conn:
        schema.upgrade(conn, clock.now())
        with conn.transaction():
            for n, cid in enumerate(SESSIONS, start=1):
                conn.execute(
                    "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado)"
                    " VALUES (%s, %s, %s, 'en_progreso')",
                    (n, f"chaos {n}", "Hola {nombre}"),
                )
                conn.execute(
                    "INSERT INTO ll_programaciones (id, campania_id, cliente_id, dias_semana,"
                    " hora_inicio, hora_fin, cupo_diario, fecha_inicio, estado)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'aprobada')",
                    (
                        n,
                        n,
                        cid,
                        ALL_DAYS,
                        dt.time(0, 0),
                        dt.time(23, 59, 59),
                        quota,
                        clock.today() - dt.timedelta(days=1),
                    ),
                )
                for i in range(rows_per_session):
                    conn.execute(
                        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp,"
                        " nombre_destino, mensaje_final)"
                        " VALUES (%s, %s, 'Ana', 'Hola {nombre}')",
                        (n, f"54911{40000000 + n * 100000 + i:08d}"),
                    )


def kill_a_connection(server_url_parts, database: str, rng: random.Random) -> bool:
    """KILL CONNECTION, from the server side, on one connection to `database`."""
    conn = pymysql.connect(
        host=server_url_parts.hostname,
        port=server_url_parts.port or 3306,
        user=server_url_parts.username or "root",
        password=server_url_parts.password or "",
        autocommit=True,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT ID FROM information_schema.PROCESSLIST"
                " WHERE DB = %s AND ID <> CONNECTION_ID()",
                (database,),
            )
            ids = [r[0] for r in cur.fetchall()]
            if not ids:
                return False
            try:
                cur.execute(f"KILL CONNECTION {int(rng.choice(ids))}")
            except pymysql.err.OperationalError:
                return False  # it ended by itself meanwhile
            return True
    finally:
        conn.close()


def tally(db_url: str, ledger: list[dict], quota: int) -> dict[str, int]:
    delivered = collections.Counter(e["to"] for e in ledger)
    per_session = collections.Counter(e["cliente_id"] for e in ledger)
    with Database(db_url).connect() as conn:
        rows = conn.query("SELECT id, telefono_wapp, estado FROM ll_envios_whatsapp")
        with_history = {
            (int(r["envio_id"]), r["estado_nuevo"])
            for r in conn.query("SELECT envio_id, estado_nuevo FROM ll_envios_whatsapp_historial")
        }
    return {
        "phantom": sum(
            1 for r in rows if r["estado"] == "enviado" and not delivered[r["telefono_wapp"]]
        ),
        "duplicate": sum(1 for n in delivered.values() if n > 1),
        "lost": sum(
            1
            for r in rows
            if r["estado"] in ("pendiente", "error") and delivered[r["telefono_wapp"]]
        ),
        "unknown": sum(1 for r in rows if r["estado"] == "enviando"),
        "over_quota": sum(max(0, n - quota) for n in per_session.values()),
        "no_history": sum(
            1
            for r in rows
            if r["estado"] != "pendiente" and (int(r["id"]), r["estado"]) not in with_history
        ),
    }


def render(tables: dict[str, dict[str, int]], faults: dict[str, int]) -> str:
    head = f"{'run':<10}" + "".join(f"{c:>12}" for c in COLUMNS)
    lines = [head] + [
        f"{name:<10}" + "".join(f"{t[c]:>12}" for c in COLUMNS) for name, t in tables.items()
    ]
    lines.append("faults injected: " + ", ".join(f"{k}={v}" for k, v in sorted(faults.items())))
    return "\n".join(lines)


class Schedule:
    """Runs fault actions at random moments until stopped; counts what it did."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.done: collections.Counter = collections.Counter()
        self._stop = threading.Event()

    def every(self, low: float, high: float, action, name: str) -> threading.Thread:
        def loop():
            while not self._stop.wait(self.rng.uniform(low, high)):
                try:
                    if action() is not False:
                        self.done[name] += 1
                except Exception:  # noqa: BLE001 - a fault that could not be injected is not a result
                    pass

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()


def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
