"""A bounded chaos soak: several real `envios send` processes on MariaDB and the simulator,
mixed faults.

Faults, all real: 5xx, 429, session drops, timeouts that delivered and timeouts that did
not (stalled), connections dropped after delivery (simulator), refused connections (the simulator
stops listening), SIGKILL
of a sender and its restart at random moments, `KILL CONNECTION` from the server side,
and one database outage longer than the sender's 30 s retry window (the senders reach
MariaDB through a proxy that is cut). Then the faults stop, one `envios send --once`
drains what the journals hold, and the database is reconciled with the simulator's
ledger. The same run of the two baselines (tests/chaos/baselines.py) is printed beside.

CHAOS_SECONDS sets the soak length (default 50 s, at least the outage plus a third; longer runs find
more).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from envios.monitor.watcher import Watcher
from envios.simulator.server import SimulatorServer

from envios import config as config_module
from tests.chaos.harness import (
    FAULTS,
    NO_FAULTS,
    SESSIONS,
    Schedule,
    kill_a_connection,
    render,
    seed,
    tally,
    wait_until,
)
from tests.conftest import drop_mysql_database, make_mysql_database
from tests.monitor.test_outage import TcpProxy
from tests.sender.conftest import ROOT, envios, sender_env, spawn_sender

pytestmark = [pytest.mark.mysql, pytest.mark.slow]

SOAK_S = float(os.environ.get("CHAOS_SECONDS", "50"))
OUTAGE_S = 33.0  # longer than session_worker.RECORD_PATIENCE_S (30 s)
QUOTA = 120
ROWS = 150  # per session: more than the quota, so the quota binds
SENDERS = 3


@pytest.fixture
def databases(mysql_server_url):
    made = []

    def make() -> str:
        made.append(make_mysql_database(mysql_server_url))
        return made[-1]

    yield make
    for url in made:
        drop_mysql_database(url)


def proxied(db_url: str, proxy: TcpProxy) -> str:
    parts = urlsplit(db_url)
    password = ":" + parts.password if parts.password else ""
    netloc = f"{parts.username or 'root'}{password}@127.0.0.1:{proxy.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def run_envios(db_url: str, tmp_path) -> tuple[dict, dict, int]:
    seed(db_url, ROWS, QUOTA)
    parts = urlsplit(db_url)
    proxy = TcpProxy((parts.hostname, parts.port or 3306)).start()
    sim = SimulatorServer(port=0, seed=12).start()
    sim.state.set_faults(**FAULTS)
    env = sender_env(
        proxied(db_url, proxy),
        sim.base_url,
        ENVIOS_SENDER_JOURNAL_DIR=str(tmp_path / "journal"),
        ENVIOS_GATEWAY_SEND_TIMEOUT_S="1",
        ENVIOS_SENDER_DELAY_MIN_S="0.2",
        ENVIOS_SENDER_DELAY_MAX_S="0.5",
        ENVIOS_SENDER_LEASE_TTL_S="4",
        ENVIOS_SENDER_TICK_S="0.5",
        ENVIOS_SENDER_RETRY_AFTER_S="1",
        ENVIOS_GATEWAY_MAX_RETRY_AFTER_S="2",
    )
    logs = tmp_path / "logs"
    logs.mkdir(parents=True)
    procs: list = [
        spawn_sender(env=env, cwd=tmp_path, log_path=logs / f"s{i}.log") for i in range(SENDERS)
    ]
    chaos = Schedule(seed=7)
    restarts = {"n": 0}

    def kill_and_restart():
        i = chaos.rng.randrange(len(procs))
        procs[i].send_signal(signal.SIGKILL)
        procs[i].wait(10)
        procs[i].log.close()
        restarts["n"] += 1
        procs[i] = spawn_sender(env=env, cwd=tmp_path, log_path=logs / f"s{i}.{restarts['n']}.log")

    outage_over = threading.Event()

    def outage():  # once, a third into the soak: the proxy refuses and cuts every connection
        if not chaos._stop.wait(SOAK_S / 3):
            proxy.stop()
            chaos.done["db_outage_over_retry_window"] += 1
            chaos._stop.wait(OUTAGE_S)  # cut short if the soak ends first
            proxy.start()
        outage_over.set()

    try:
        threading.Thread(target=outage, daemon=True).start()
        chaos.every(2.0, 5.0, kill_and_restart, "sigkill_restart")
        chaos.every(
            1.0,
            3.0,
            lambda: kill_a_connection(parts, parts.path.lstrip("/"), chaos.rng),
            "kill_connection",
        )
        chaos.every(3.0, 8.0, lambda: sim.refuse_for(1.0), "refused_connections")
        # the outage ends inside the soak
        wait_until(lambda: False, max(SOAK_S, SOAK_S / 3 + OUTAGE_S + 5))
        chaos.stop()
        assert outage_over.wait(OUTAGE_S + 10)
    finally:
        chaos.stop()
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
            p.log.close()
    sim.state.set_faults(**NO_FAULTS)
    final = envios("send", "--once", env=env, cwd=tmp_path, timeout=180)  # drains the journals
    ledger = sim.state.ledger
    sim.stop()
    proxy.stop()
    outcomes = sim.state.stats()["outcomes"]
    faults = dict(chaos.done) | {
        "sends_received": sim.state.sends_received,
        "timeouts_delivered": outcomes.get("slow", 0) + outcomes.get("dropped", 0),
        "timeouts_not_delivered": outcomes.get("stalled", 0),
    }
    assert final.returncode in (0, 1), final.stderr[-2000:]
    return tally(db_url, ledger, QUOTA), faults, stuck_seen_by_watcher(db_url)


def stuck_seen_by_watcher(db_url: str) -> int:
    import copy

    raw = config_module.validate(copy.deepcopy(config_module.DEFAULTS))
    cfg = config_module.Config(raw).with_overrides(
        {"database.url": db_url, "monitor.stuck_after_s": 1, "monitor.autopause.enabled": False}
    )
    watcher = Watcher(cfg)
    # The final pass may itself leave an unknown under load (a send timing out on a busy
    # machine): let every claim be older than stuck_after_s before the watcher reads.
    time.sleep(2.5)
    try:
        assert watcher.refresh() is True
        text = watcher.exposition().decode()
    finally:
        watcher.refresher.stop()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("envios_stuck_sending{")
        )
    )


def run_baseline(order: str, db_url: str, tmp_path) -> dict:
    seed(db_url, ROWS // 3, QUOTA)
    sim = SimulatorServer(port=0, seed=12).start()
    sim.state.set_faults(**FAULTS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    chaos = Schedule(seed=7)

    def spawn(cid):
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.baselines", order, db_url, sim.base_url, str(cid)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    procs = {cid: spawn(cid) for cid in SESSIONS}

    def kill_and_restart():
        cid = chaos.rng.choice(SESSIONS)
        procs[cid].kill()
        procs[cid].wait(10)
        procs[cid] = spawn(cid)

    chaos.every(1.0, 3.0, kill_and_restart, "sigkill_restart")
    wait_until(lambda: all(p.poll() is not None for p in procs.values()), min(SOAK_S, 20))
    chaos.stop()
    for p in procs.values():
        p.kill()
        p.wait(10)
    ledger = sim.state.ledger
    sim.stop()
    return tally(db_url, ledger, QUOTA)


def test_chaos_soak(databases, tmp_path, capsys):
    envios_table, faults, watched_stuck = run_envios(databases(), tmp_path / "envios")
    tables = {
        "envios": envios_table,
        "legacy": run_baseline("legacy", databases(), tmp_path),
        "naive": run_baseline("naive", databases(), tmp_path),
    }
    with capsys.disabled():
        print("\n" + render(tables, faults))
    assert envios_table["phantom"] == 0
    assert envios_table["duplicate"] == 0
    assert envios_table["lost"] == 0
    assert envios_table["over_quota"] == 0
    assert envios_table["no_history"] == 0
    assert watched_stuck == envios_table["unknown"]  # every unknown row is counted by the watcher
    assert faults.get("sigkill_restart", 0) > 0 and faults.get("kill_connection", 0) > 0
    assert faults["timeouts_delivered"] > 0 and faults["timeouts_not_delivered"] > 0
