"""Fixtures for the sender's loop tests: a loopback gateway, the simulator, seeded schedules."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from envios import config as config_module
from tests.sender.gateway import ScriptedGateway

ALL_DAYS = "mon,tue,wed,thu,fri,sat,sun"


def make_config(db_url: str, base_url: str, **overrides):
    """The built-in defaults, zero pacing, metrics off, plus dotted-key overrides."""
    raw = config_module.validate(copy.deepcopy(config_module.DEFAULTS))
    base = {
        "database.url": db_url,
        "gateway.base_url": base_url,
        "gateway.send_timeout_s": 5.0,
        "gateway.status_timeout_s": 2.0,
        "sender.delay_min_s": 0.0,
        "sender.delay_max_s": 0.0,
        "sender.metrics_port": 0,
        "sender.tick_s": 0.2,
        "sender.lease_ttl_s": 30.0,
        # the scripted gateway's "refuse" acts on the first GET /status: no auto probe before it
        "gateway.sessions": "per_cliente",
    }
    base.update(overrides)
    return config_module.Config(raw).with_overrides(base)


def add_campaign(
    conn, campania_id: int, *, estado: str = "en_progreso", mensaje: str = "Hola {nombre}"
) -> None:
    conn.execute(
        "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado, cliente_id)"
        " VALUES (%s, %s, %s, %s, NULL)",
        (campania_id, f"campaign {campania_id}", mensaje, estado),
    )


def add_schedule(
    conn,
    programacion_id: int,
    campania_id: int,
    cliente_id: int,
    *,
    cupo: int = 1000,
    estado: str = "aprobada",
    dias: str = ALL_DAYS,
    hora_inicio: str = "00:00:00",
    hora_fin: str = "23:59:59",
    fecha_inicio: str = "2020-01-01",
    fecha_fin: str | None = None,
    delay_min_s: int | None = None,
    delay_max_s: int | None = None,
) -> None:
    conn.execute(
        "INSERT INTO ll_programaciones (id, campania_id, cliente_id, dias_semana, hora_inicio,"
        " hora_fin, cupo_diario, fecha_inicio, fecha_fin, estado, delay_min_s, delay_max_s)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            programacion_id,
            campania_id,
            cliente_id,
            dias,
            hora_inicio,
            hora_fin,
            cupo,
            fecha_inicio,
            fecha_fin,
            estado,
            delay_min_s,
            delay_max_s,
        ),
    )


def add_rows(
    conn,
    campania_id: int,
    n: int,
    *,
    first: int = 0,
    phone=None,
    nombre="Ana",
    mensaje: str = "Hola {nombre}, ¿seguimos en contacto?",
) -> list[int]:
    """n pending rows inserted the way the legacy application does (legacy columns only)."""
    ids = []
    for i in range(first, first + n):
        number = (
            phone(i)
            if callable(phone)
            else (phone if phone is not None else f"+54 9 11 {campania_id % 10000:04d}-{i:04d}")
        )
        ids.append(
            conn.insert(
                "INSERT INTO ll_envios_whatsapp"
                " (campania_id, telefono_wapp, nombre_destino, mensaje_final)"
                " VALUES (%s, %s, %s, %s)",
                (campania_id, number, nombre, mensaje),
            )
        )
    return ids


def seed_session(
    conn,
    *,
    cliente_id: int = 51,
    campania_id: int = 47,
    programacion_id: int | None = None,
    rows: int = 3,
    cupo: int = 1000,
    **schedule,
) -> list[int]:
    add_campaign(conn, campania_id)
    add_schedule(
        conn, programacion_id or campania_id, campania_id, cliente_id, cupo=cupo, **schedule
    )
    return add_rows(conn, campania_id, rows)


def row(conn, envio_id: int) -> dict:
    return conn.query_one("SELECT * FROM ll_envios_whatsapp WHERE id = %s", (envio_id,))


def estados(conn, campania_id: int | None = None) -> dict[str, int]:
    sql = "SELECT estado, COUNT(*) AS n FROM ll_envios_whatsapp"
    params = ()
    if campania_id is not None:
        sql += " WHERE campania_id = %s"
        params = (campania_id,)
    return {r["estado"]: int(r["n"]) for r in conn.query(sql + " GROUP BY estado", params)}


def history(conn, envio_id: int) -> list[tuple[str, str, str]]:
    return [
        (r["estado_anterior"], r["estado_nuevo"], r["origen"])
        for r in conn.query(
            "SELECT estado_anterior, estado_nuevo, origen FROM ll_envios_whatsapp_historial"
            " WHERE envio_id = %s ORDER BY id",
            (envio_id,),
        )
    ]


def sent_today(conn, programacion_id: int, day: dt.date) -> int:
    return int(
        conn.scalar(
            "SELECT enviados FROM ll_programacion_envios_diarios"
            " WHERE programacion_id = %s AND fecha = %s",
            (programacion_id, day),
        )
        or 0
    )


@pytest.fixture
def gateway():
    gw = ScriptedGateway()
    yield gw
    gw.stop()


# -- sender processes -------------------------------------------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def sender_env(db_url: str, base_url: str, **env: str) -> dict[str, str]:
    """A process environment configuring envios only through ENVIOS_* variables."""
    import os

    full = {
        k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_") and k != "DIAG_SENDER"
    }
    full.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENVIOS_DATABASE_URL": db_url,
            "ENVIOS_GATEWAY_BASE_URL": base_url,
            "ENVIOS_SENDER_DELAY_MIN_S": "0",
            "ENVIOS_SENDER_DELAY_MAX_S": "0",
            "ENVIOS_SENDER_METRICS_PORT": "0",
            "ENVIOS_GATEWAY_SEND_TIMEOUT_S": "10",
            "ENVIOS_GATEWAY_STATUS_TIMEOUT_S": "5",
        }
    )
    full.update(env)
    return full


def envios(*args: str, env: dict[str, str], cwd, timeout: float = 120):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "envios", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn_sender(*args: str, env: dict[str, str], cwd, log_path):
    """`envios send ...` in the background; its stderr goes to log_path."""
    import subprocess
    import sys

    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller via proc.log.close()
    proc = subprocess.Popen(
        [sys.executable, "-m", "envios", "send", *args],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log = log
    return proc
