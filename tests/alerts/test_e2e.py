"""End to end: a real Prometheus scrapes a real watcher and sender (separate processes)
running against the simulated gateway, evaluates alerts/envios.rules.yml unchanged, and
sees the 2026-02-07 incident and a lost-answer send turn into firing alerts.

Incident driven here, on one SQLite database:
- session 51 drops to DISCONNECTED while its campaign has pending work
  -> EnviosSessionNotReadyWithWork{cliente_id="51"} goes pending, then firing;
- session 52 first sends normally, then the gateway starts answering after the
  sender's timeout although it delivered -> rows stay `enviando` ->
  EnviosStuckSending{campania_id="2"} pending, then firing; past max_stuck the
  watcher auto-pauses the campaign -> EnviosCampaignAutoPaused fires.
Every expression of the Grafana dashboard is then evaluated and must return data.
Intervals are shortened through config (refresh, scrape, stuck_after), never by
faking Prometheus; the rules' `for:` are the shipped ones.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from envios.clock import Clock
from envios.store import schema
from envios.store.connector import Database
from tests.alerts import prom

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
TZ = "America/Argentina/Buenos_Aires"


def seed(db_url: str) -> None:
    clock = Clock(TZ)
    with Database(db_url).connect() as conn:
        schema.upgrade(conn, clock.now())
        with conn.transaction():
            for campania_id, cliente_id, rows in ((1, 51, 15), (2, 52, 40)):
                conn.execute(
                    "INSERT INTO ll_campanias_whatsapp (id, nombre, mensaje, estado, cliente_id)"
                    " VALUES (%s, %s, 'Hola {nombre}', 'en_progreso', %s)",
                    (campania_id, f"e2e {campania_id}", cliente_id),
                )
                conn.execute(
                    "INSERT INTO ll_programaciones (campania_id, cliente_id, dias_semana,"
                    " hora_inicio, hora_fin, cupo_diario, fecha_inicio, estado)"
                    " VALUES (%s, %s, 'mon,tue,wed,thu,fri,sat,sun', %s, %s, 1000, %s, 'aprobada')",
                    (
                        campania_id,
                        cliente_id,
                        dt.time(0, 0),
                        dt.time(23, 59, 59),
                        clock.today() - dt.timedelta(days=1),
                    ),
                )
                for i in range(rows):
                    # one unsendable row
                    phone = "123" if i == 0 else f"5491140{campania_id}{i:05d}"
                    conn.execute(
                        "INSERT INTO ll_envios_whatsapp (campania_id, telefono_wapp,"
                        " nombre_destino, mensaje_final)"
                        " VALUES (%s, %s, 'Ana', 'Hola {nombre}')",
                        (campania_id, phone),
                    )


# Panels allowed to return nothing during this incident, each with the reason. None today:
# every panel has data while the incident runs (add an entry only with a reason).
NO_DATA_EXPECTED: dict[str, str] = {}

# Panels whose value must be above zero while the incident runs (the point of the dashboard).
NON_ZERO_DURING_INCIDENT = ("Stuck in enviando", "Paused schedules", "Envios alerts firing")

FALLBACK = " or vector(0)"


def check_dashboard_has_data(p) -> None:
    """Every dashboard expression, evaluated against the Prometheus that scraped the incident,
    returns samples. An `expr or vector(0)` always would, so its left side must return them too."""
    empty, zero = [], []
    for title, ref, expr in prom.dashboard_targets():
        if title in NO_DATA_EXPECTED:
            continue
        exprs = [expr] + ([expr[: -len(FALLBACK)]] if expr.endswith(FALLBACK) else [])
        for one in exprs:
            result = p.query(prom.grafana_expr(one))
            if not result:
                empty.append(f"{title}/{ref}: {one}")
            elif title in NON_ZERO_DURING_INCIDENT and not any(
                float(r["value"][1]) > 0 for r in result
            ):
                zero.append(f"{title}/{ref}: {one} = {result}")
    assert not empty, "dashboard queries with no data during the incident:\n" + "\n".join(empty)
    assert not zero, "dashboard panels showing 0 during the incident:\n" + "\n".join(zero)
    titles = {title for title, _, _ in prom.dashboard_targets()}
    assert set(NON_ZERO_DURING_INCIDENT) <= titles and set(NO_DATA_EXPECTED) <= titles


def spawn(args, env, log_path):
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def test_incident_fires_alerts_and_dashboard_has_data(tmp_path):
    prom.need_binary("prometheus")
    db_url = f"sqlite:///{tmp_path / 'e2e.db'}"
    seed(db_url)
    sim_port, sender_port, watcher_port = prom.free_port(), prom.free_port(), prom.free_port()
    hooks_port = prom.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVIOS_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "ENVIOS_DATABASE_URL": db_url,
            "ENVIOS_TIMEZONE": TZ,
            "ENVIOS_GATEWAY_KIND": "simulator",
            "ENVIOS_GATEWAY_BASE_URL": f"http://127.0.0.1:{sim_port}",
            "ENVIOS_GATEWAY_SEND_TIMEOUT_S": "0.5",
            "ENVIOS_GATEWAY_STATUS_TIMEOUT_S": "1",
            "ENVIOS_SENDER_TICK_S": "0.5",
            "ENVIOS_SENDER_DELAY_MIN_S": "0.2",
            "ENVIOS_SENDER_DELAY_MAX_S": "0.3",
            "ENVIOS_SENDER_RETRY_AFTER_S": "1",
            "ENVIOS_SENDER_METRICS_PORT": str(sender_port),
            "ENVIOS_MONITOR_PORT": str(watcher_port),
            "ENVIOS_MONITOR_REFRESH_S": "1",
            "ENVIOS_MONITOR_STUCK_AFTER_S": "2",
            "ENVIOS_MONITOR_AUTOPAUSE_MAX_STUCK": "3",
            "ENVIOS_WEBHOOKS_PORT": str(hooks_port),
            "ENVIOS_WEBHOOKS_SECRET": "e2e-secret",
        }
    )
    sim_url = f"http://127.0.0.1:{sim_port}"
    procs = [
        spawn(
            [
                "-m",
                "simulator",
                "--port",
                str(sim_port),
                "--seed",
                "5",
                "--sessions",
                "51=DISCONNECTED",
            ],
            env,
            tmp_path / "sim.log",
        )
    ]
    try:
        wait_http(f"{sim_url}/_sim/stats")
        procs.append(spawn(["-m", "envios", "watch"], env, tmp_path / "watch.log"))
        procs.append(spawn(["-m", "envios", "send"], env, tmp_path / "send.log"))
        procs.append(spawn(["-m", "envios", "webhooks"], env, tmp_path / "webhooks.log"))
        wait_http(f"http://127.0.0.1:{watcher_port}/metrics")
        wait_http(f"http://127.0.0.1:{hooks_port}/metrics")
        wait_http(f"http://127.0.0.1:{sender_port}/metrics")
        cfg = prom.make_config(
            {
                prom.WATCHER_JOB: [f"127.0.0.1:{watcher_port}"],
                prom.SENDER_JOB: [f"127.0.0.1:{sender_port}"],
                prom.WEBHOOKS_JOB: [f"127.0.0.1:{hooks_port}"],
            },
            scrape_interval="1s",
            evaluation_interval="1s",
        )
        with prom.PrometheusServer(
            cfg, rule_files=[prom.RULES_FILE], workdir=tmp_path / "prom"
        ) as p:
            p.wait_for_targets([prom.WATCHER_JOB, prom.SENDER_JOB, prom.WEBHOOKS_JOB], timeout=30)
            # Session 52 sends normally for a moment: the success series exist...
            p.wait_for_series('envios_sender_sends_total{outcome="sent"} > 0', timeout=30)
            # ...then every answer arrives after the sender's timeout, although delivered.
            requests.post(
                f"{sim_url}/_sim/faults", json={"slow_rate": 1.0, "slow_s": 1.5}, timeout=5
            )

            session_pending = p.wait_for_alert(
                "EnviosSessionNotReadyWithWork", "pending", labels={"cliente_id": "51"}, timeout=30
            )
            stuck_pending = p.wait_for_alert(
                "EnviosStuckSending", "pending", labels={"campania_id": "2"}, timeout=40
            )
            assert session_pending["state"] == "pending" and stuck_pending["state"] == "pending"

            session_firing = p.wait_for_alert(
                "EnviosSessionNotReadyWithWork", "firing", labels={"cliente_id": "51"}, timeout=100
            )
            stuck_firing = p.wait_for_alert(
                "EnviosStuckSending", "firing", labels={"campania_id": "2"}, timeout=100
            )
            paused = p.wait_for_alert(
                "EnviosCampaignAutoPaused", "firing", labels={"campania_id": "2"}, timeout=60
            )
            assert session_firing["labels"]["severity"] == "critical"
            assert stuck_firing["labels"]["severity"] == "critical"
            assert paused["labels"]["reason"] == "stuck"
            assert "runbook_url" in stuck_firing["annotations"]
            assert not p.find_alerts("EnviosStuckSending", labels={"campania_id": "1"}), (
                "a campaign whose session is down has nothing stuck"
            )

            check_dashboard_has_data(p)

        # The database agrees: nothing sent for session 51, nothing of campaign 2 retried.
        ledger = requests.get(f"{sim_url}/_sim/ledger", timeout=5).json()
        entries = ledger["entries"]
        assert not [e for e in entries if e["cliente_id"] == 51]
        tos = [e["to"] for e in entries]
        assert len(tos) == len(set(tos)), "a recipient was delivered twice"
        with Database(db_url).connect() as conn:
            assert (
                conn.scalar(
                    "SELECT COUNT(*) FROM ll_envios_whatsapp"
                    " WHERE campania_id = 1 AND estado = 'enviado'"
                )
                == 0
            )
            assert (
                conn.scalar(
                    "SELECT COUNT(*) FROM ll_envios_whatsapp"
                    " WHERE campania_id = 2 AND estado = 'enviando'"
                )
                >= 3
            )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
