"""Several sender processes on one database and one gateway; one of them killed with SIGKILL.

These are the real thing: `envios send` subprocesses configured only through
ENVIOS_* variables, a loopback gateway that records which sender made each
POST, and faults produced for real (a session answering 409 now and then makes
senders drop and re-take sessions; a process killed with SIGKILL).
"""

from __future__ import annotations

import collections
import datetime as dt
import random
import signal
import time

import pytest

from envios.clock import Clock
from envios.store.connector import Database
from tests.conftest import drop_mysql_database, make_mysql_database
from tests.sender.conftest import (
    add_campaign,
    add_rows,
    add_schedule,
    estados,
    sender_env,
    spawn_sender,
)

TZ = "America/Argentina/Buenos_Aires"


def _stop(procs, sig=signal.SIGTERM, timeout=60):
    codes = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except Exception:
            p.kill()
            codes.append("killed")
        p.log.close()
    return codes


@pytest.fixture
def mysql_url(mysql_server_url):
    url = make_mysql_database(mysql_server_url)
    yield url
    drop_mysql_database(url)


@pytest.mark.mysql
@pytest.mark.slow
def test_four_senders_2000_rows_20_sessions_each_row_sent_exactly_once(
    mysql_url, gateway, tmp_path
):
    from envios.store import schema

    sessions, per_session, cupo, extra = 20, 100, 100, 5
    db = Database(mysql_url)
    with db.connect() as conn:
        schema.upgrade(conn, Clock(TZ).now())
        for k in range(sessions):
            cid = 101 + k
            add_campaign(conn, 1000 + k)
            add_schedule(conn, 1000 + k, 1000 + k, cid, cupo=cupo)
            add_rows(
                conn,
                1000 + k,
                per_session + extra,
                phone=lambda i, k=k: f"+54 9 11 {6000 + k}-{i:04d}",
            )

    rng = random.Random(7)
    # a session blinks now and then: senders drop and re-take it
    gateway.default_behaviour = lambda _cid: (
        (409, {"error": True, "code": "SESSION_NOT_READY", "message": "CONNECTING"})
        if rng.random() < 0.04
        else "ok"
    )
    gateway.send_delay_s = 0.002
    env = sender_env(
        mysql_url, gateway.base_url, ENVIOS_SENDER_TICK_S="0.1", ENVIOS_SENDER_LEASE_TTL_S="10"
    )
    procs = [
        spawn_sender(env=env, cwd=tmp_path, log_path=tmp_path / f"sender{i}.log") for i in range(4)
    ]
    over_quota = []
    try:
        deadline = time.monotonic() + 240
        with db.connect() as conn:
            while time.monotonic() < deadline:
                counts = estados(conn)
                used = conn.query(
                    "SELECT claim_programacion_id AS pid, COUNT(*) AS n FROM ll_envios_whatsapp"
                    " WHERE estado IN ('enviando', 'enviado') GROUP BY claim_programacion_id"
                )
                over_quota += [u for u in used if u["n"] > cupo]
                if counts.get("enviado") == sessions * per_session:
                    break
                assert all(p.poll() is None for p in procs), "a sender died"
                time.sleep(0.5)
    finally:
        codes = _stop(procs)
    logs = "".join((tmp_path / f"sender{i}.log").read_text() for i in range(4))
    assert codes == [0, 0, 0, 0], logs[-3000:]
    assert "Traceback" not in logs

    with db.connect() as conn:
        assert estados(conn) == {"enviado": sessions * per_session, "pendiente": sessions * extra}
        rows = conn.query(
            "SELECT telefono_wapp, message_id, claimed_by FROM ll_envios_whatsapp"
            " WHERE estado = 'enviado'"
        )
        daily = conn.query("SELECT programacion_id, enviados FROM ll_programacion_envios_diarios")
        leases = conn.query("SELECT * FROM envios_session_leases")
    # every row sent exactly once: one delivery per number, and it is the one recorded
    delivered = collections.Counter(e["to"] for e in gateway.ledger)
    assert len(gateway.ledger) == sessions * per_session and max(delivered.values()) == 1
    by_to = {e["to"]: e["message_id"] for e in gateway.ledger}
    assert sorted(r["message_id"] for r in rows) == sorted(by_to.values())
    # quota never exceeded, not even transiently
    assert over_quota == []
    assert sorted(d["enviados"] for d in daily) == [cupo] * sessions
    per_session_sent = collections.Counter(e["cliente_id"] for e in gateway.ledger)
    assert set(per_session_sent.values()) == {cupo}
    # no session worked by two senders at once: never two POSTs of a session in
    # flight together, and a session changes sender only right after a 409 (the
    # previous sender's worker stops there and gives the lease back)
    assert max(gateway.max_in_flight.values()) == 1
    posts = sorted(gateway.posts, key=lambda p: p["t0"])
    last: dict[int, dict] = {}
    for p in posts:
        prev = last.get(p["cliente_id"])
        if prev is not None and prev["sender"] != p["sender"]:
            assert isinstance(prev["behaviour"], tuple) and prev["behaviour"][0] == 409, (prev, p)
        last[p["cliente_id"]] = p
    senders = {p["sender"] for p in posts}
    assert len(senders) >= 2  # the work really was shared
    assert leases == []  # all released on SIGTERM


def test_a_killed_senders_sessions_are_taken_over_after_the_lease_expires(
    db_url, upgraded, gateway, tmp_path
):
    ttl = 2
    for k in range(3):
        add_campaign(upgraded, 10 + k)
        add_schedule(upgraded, 10 + k, 10 + k, 31 + k)
        add_rows(upgraded, 10 + k, 20)
    gateway.send_delay_s = 0.02
    env = sender_env(
        db_url,
        gateway.base_url,
        ENVIOS_SENDER_TICK_S="0.2",
        ENVIOS_SENDER_LEASE_TTL_S=str(ttl),
        ENVIOS_SENDER_DELAY_MIN_S="0.05",
        ENVIOS_SENDER_DELAY_MAX_S="0.1",
    )
    first = spawn_sender(env=env, cwd=tmp_path, log_path=tmp_path / "a.log")
    second = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len({p["cliente_id"] for p in gateway.posts}) < 3:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)  # no cleanup of any kind
        first.wait(timeout=10)
        killed_at = Clock(TZ).now()
        leases = {r["cliente_id"]: r for r in upgraded.query("SELECT * FROM envios_session_leases")}
        assert set(leases) == {31, 32, 33}
        owner_a = {r["owner"] for r in leases.values()}
        assert len(owner_a) == 1
        assert estados(upgraded).get("pendiente", 0) > 0  # killed mid-run

        second = spawn_sender(env=env, cwd=tmp_path, log_path=tmp_path / "b.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and estados(upgraded).get("pendiente", 0):
            time.sleep(0.1)
    finally:
        codes = _stop([p for p in (first, second) if p is not None], timeout=30)
    assert codes[-1] == 0
    assert estados(upgraded).get("pendiente", 0) == 0

    a = owner_a.pop()
    claims = upgraded.query(
        "SELECT p.cliente_id, e.claimed_by, MIN(e.claimed_at) AS first_claim"
        " FROM ll_envios_whatsapp e JOIN ll_programaciones p ON p.id = e.claim_programacion_id"
        " WHERE e.claimed_by <> %s GROUP BY p.cliente_id, e.claimed_by",
        (a,),
    )
    assert {c["cliente_id"] for c in claims} == {31, 32, 33}  # B took over every session of A
    for c in claims:
        if isinstance(c["first_claim"], str):  # SQLite: MIN() loses the column's type
            c["first_claim"] = dt.datetime.fromisoformat(c["first_claim"])
        # leases are on the configured zone's clock, claims on the database's
        expired = Clock(TZ).to_db(upgraded, leases[c["cliente_id"]]["expires_at"])
        assert c["first_claim"] >= expired  # not before A's lease expired...
        # ...and soon after (bounded)
        assert c["first_claim"] <= expired + dt.timedelta(seconds=ttl + 8)
        assert expired <= Clock(TZ).to_db(upgraded, killed_at) + dt.timedelta(seconds=ttl + 1)

    # nothing sent twice; at most the one in-flight row per session is left enviando (unknown),
    # claimed by A
    assert max(gateway.delivered_to().values()) == 1
    stuck = upgraded.query(
        "SELECT claimed_by, claim_programacion_id FROM ll_envios_whatsapp WHERE estado = 'enviando'"
    )
    assert all(s["claimed_by"] == a for s in stuck)
    assert len(stuck) == len({s["claim_programacion_id"] for s in stuck}) <= 3
    assert estados(upgraded)["enviado"] == 60 - len(stuck)
    assert upgraded.query("SELECT * FROM envios_session_leases") == []
