"""Fault injection: what the client sees, and what the ledger says really happened."""

from __future__ import annotations

import argparse
import json
import time

import pytest
import requests
from envios.simulator import command
from envios.simulator.server import SimulatorServer

NUMBER = "5491123456789"


def outcome_of(sim, cliente_id, i):
    """What a client observes for one send: a status code, 'garbage', 'no_id' or 'conn'."""
    try:
        r = requests.post(
            f"{sim.base_url}/send",
            json={"cliente_id": cliente_id, "to": f"54911{i:08d}", "message": f"m{i}"},
            headers={"X-Cliente-Id": str(cliente_id)},
            timeout=5,
        )
    except requests.ConnectionError:
        return "conn"
    if r.status_code != 200:
        return r.status_code
    try:
        body = r.json()
    except ValueError:
        return "garbage"
    return body.get("message_id") or "no_id"


MIXED = dict(
    error_5xx_rate=0.15,
    rate_limit_rate=0.1,
    garbage_rate=0.1,
    no_message_id_rate=0.1,
    drop_connection_rate=0.1,
    session_drop_rate=0.05,
    session_drop_s=0.0,  # back at once, so the sequence is not cut short
)


# ----- outcomes that DID deliver -----------------------------------------------------


def test_slow_send_past_client_timeout_still_delivers_exactly_once(sim, send):
    sim.state.set_faults(slow_rate=1.0, slow_s=1.2)
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(51, NUMBER, "llega tarde", timeout=0.3)
    # Delivered before the (late) answer: the sender must treat it as unknown, not retry.
    assert [(e["to"], e["text"], e["outcome"]) for e in sim.state.ledger] == [
        (NUMBER, "llega tarde", "slow")
    ]
    time.sleep(1.3)  # let the late answer go out (to nobody)
    assert len(sim.state.ledger) == 1
    assert sim.state.sends_received == 1


def test_slow_send_within_client_timeout_answers_with_the_id(sim, send):
    sim.state.set_faults(slow_rate=1.0, slow_s=0.2)
    r = send(51, timeout=5)
    assert r.status_code == 200
    assert r.json()["message_id"] == sim.state.ledger[0]["message_id"]


def test_garbage_reply_is_delivered(sim, send):
    sim.state.set_faults(garbage_rate=1.0)
    r = send(51)
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.text)
    assert [e["outcome"] for e in sim.state.ledger] == ["garbage"]


def test_reply_without_message_id_is_delivered(sim, send):
    sim.state.set_faults(no_message_id_rate=1.0)
    r = send(51)
    assert r.status_code == 200
    assert r.json() == {"ok": True}
    [entry] = sim.state.ledger
    assert entry["outcome"] == "no_message_id"
    # WhatsApp did assign an id; only the client never saw it.
    assert entry["message_id"].startswith(f"true_{NUMBER}@c.us_")


def test_dropped_connection_after_delivery_is_in_ledger(sim, send):
    sim.state.set_faults(drop_connection_rate=1.0)
    with requests.Session() as s:
        with pytest.raises(requests.exceptions.ConnectionError):
            send(51, NUMBER, "colgado", session=s)
    [entry] = sim.state.ledger
    assert (entry["to"], entry["text"], entry["outcome"]) == (NUMBER, "colgado", "dropped")
    sim.state.set_faults(drop_connection_rate=0.0)
    assert send(51).status_code == 200  # the gateway itself is fine afterwards


# ----- a timeout that did NOT deliver -----------------------------------------------


def test_stalled_send_times_out_and_is_not_delivered(sim, send):
    sim.state.set_faults(stall_rate=1.0, slow_s=0.6)
    with pytest.raises(requests.exceptions.ReadTimeout):
        send(51, NUMBER, "nunca llega", timeout=0.2)
    with requests.Session() as s:  # a patient client sees the hang-up, still no answer
        with pytest.raises(requests.exceptions.ConnectionError):
            send(51, NUMBER, "nunca llega", session=s, timeout=5)
    assert sim.state.ledger == []
    assert sim.state.stats()["outcomes"] == {"stalled": 2}
    sim.state.set_faults(stall_rate=0.0)
    assert send(51).status_code == 200  # the gateway itself is fine afterwards


def test_stall_rate_through_control_api_and_flag(sim):
    r = requests.post(f"{sim.base_url}/_sim/faults", json={"stall_rate": 0.25}, timeout=5)
    assert r.status_code == 200 and r.json()["stall_rate"] == 0.25
    assert (
        requests.post(
            f"{sim.base_url}/_sim/faults", json={"stall_rate": 1.5}, timeout=5
        ).status_code
        == 400
    )
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.faults_from_args(parser.parse_args(["--stall-rate", "0.3"])).stall_rate == 0.3


def test_latency_setting_still_delivers(sim, send):
    sim.state.set_faults(latency_ms=[1, 5])
    assert send(51).status_code == 200
    assert (
        requests.get(
            f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=5
        ).status_code
        == 200
    )
    assert len(sim.state.ledger) == 1


def test_random_session_drop_is_a_409_and_comes_back(sim, send):
    sim.state.set_faults(session_drop_rate=1.0, session_drop_s=0.3)
    r = send(51)
    assert r.status_code == 409 and r.json()["code"] == "SESSION_NOT_READY"
    assert sim.state.session_state(51) == "DISCONNECTED"
    assert sim.state.ledger == []
    sim.state.set_faults(session_drop_rate=0.0)
    deadline = time.monotonic() + 5
    while sim.state.session_state(51) != "READY" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert send(51).status_code == 200


# ----- determinism ----------------------------------------------------------------------


def run_sequence(seed, n=60, cliente_ids=(51,)):
    with SimulatorServer(port=0, seed=seed, faults=MIXED) as s:
        seen = [outcome_of(s, cid, i) for i in range(n) for cid in cliente_ids]
        return seen, [e["message_id"] for e in s.state.ledger]


def test_same_seed_same_requests_same_faults():
    first, ids1 = run_sequence(7)
    second, ids2 = run_sequence(7)
    assert first == second
    assert ids1 == ids2
    kinds = {o if isinstance(o, int) or o in ("garbage", "no_id", "conn") else "ok" for o in first}
    # the mix really was exercised
    assert {"ok", 500, 429, 409, "garbage", "no_id", "conn"} <= kinds
    other, _ = run_sequence(8)
    assert other != first


def test_one_sessions_faults_do_not_depend_on_other_sessions_traffic():
    alone, _ = run_sequence(7, n=40, cliente_ids=(51,))
    mixed, _ = run_sequence(7, n=40, cliente_ids=(51, 52))
    assert mixed[0::2] == alone


def test_reset_rewinds_the_sequence(sim):
    sim.state.set_faults(**MIXED)
    first = [outcome_of(sim, 51, i) for i in range(30)]
    sim.state.reset()
    assert sim.state.ledger == [] and sim.state.sends_received == 0
    sim.state.set_faults(**MIXED)
    assert [outcome_of(sim, 51, i) for i in range(30)] == first


def test_ledger_matches_what_clients_were_told(sim):
    sim.state.set_faults(**MIXED)
    seen = [outcome_of(sim, 51, i) for i in range(60)]
    # delivered: an id, "garbage", "no_id" or "conn" (dropped after delivery)
    delivered = [o for o in seen if isinstance(o, str)]
    assert len(sim.state.ledger) == len(delivered)
    told_ids = [o for o in seen if isinstance(o, str) and o.startswith("true_")]
    assert told_ids == [e["message_id"] for e in sim.state.ledger if e["outcome"] == "ok"]


# ----- refused connections, stop/start ----------------------------------------------------------


def wait_for_answer(url, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return requests.get(url, headers={"X-Cliente-Id": "51"}, timeout=2)
        except requests.ConnectionError:
            time.sleep(0.05)
    return None


def test_refuse_for_gives_connection_refused_then_works_again(sim, send, refused):
    with requests.Session() as s:
        assert send(51, session=s).status_code == 200  # an open keep-alive connection
        sim.refuse_for(0.8)
        with pytest.raises(requests.ConnectionError) as exc_info:
            send(51, session=s)
        assert refused(exc_info.value)
        with pytest.raises(requests.ConnectionError) as exc_info:
            requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=2)
        assert refused(exc_info.value)
    r = wait_for_answer(f"{sim.base_url}/status")
    assert r is not None and r.json()["state"] == "READY"
    assert send(51).status_code == 200
    assert len(sim.state.ledger) == 2  # the refused attempt never arrived


def test_refuse_through_control_api(sim, refused):
    r = requests.post(f"{sim.base_url}/_sim/refuse", json={"for_s": 0.8}, timeout=5)
    assert r.status_code == 200
    with pytest.raises(requests.ConnectionError) as exc_info:
        requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=2)
    assert refused(exc_info.value)
    assert wait_for_answer(f"{sim.base_url}/status") is not None


def test_stop_then_start_on_the_same_port(sim, send, refused):
    port = sim.port
    sim.stop()
    with pytest.raises(requests.ConnectionError) as exc_info:
        send(51)
    assert refused(exc_info.value)
    sim.start()
    assert sim.port == port
    assert send(51).status_code == 200


# ----- control API ------------------------------------------------------------------------------


def test_control_api_faults_validation_leaves_settings_alone(sim):
    url = f"{sim.base_url}/_sim/faults"
    for bad in (
        {"error_5xx_rate": 2},
        {"nonsense": 1},
        {"error_5xx_rate": 0.6, "rate_limit_rate": 0.6},
        {"latency_ms": [9, 1]},
    ):
        r = requests.post(url, json=bad, timeout=5)
        assert r.status_code == 400, bad
    assert requests.get(url, timeout=5).json()["error_5xx_rate"] == 0.0
    r = requests.post(url, json={"error_5xx_rate": 0.25, "latency_ms": [5, 20]}, timeout=5)
    assert r.status_code == 200
    assert sim.state.faults.error_5xx_rate == 0.25 and sim.state.faults.latency_ms == (5.0, 20.0)


def test_control_api_ledger_stats_and_reset(sim, send):
    send(51, "5491100000001", "a")
    send(52, "5491100000002", "b")
    sim.state.set_session(53, "DISCONNECTED")
    send(53)
    ledger = requests.get(
        f"{sim.base_url}/_sim/ledger", params={"cliente_id": 52}, timeout=5
    ).json()
    assert ledger["count"] == 1 and ledger["entries"][0]["to"] == "5491100000002"
    stats = requests.get(f"{sim.base_url}/_sim/stats", timeout=5).json()
    assert stats["seed"] == 1
    assert stats["sends_received"] == 3 and stats["delivered"] == 2
    assert stats["outcomes"] == {"ok": 2, "not_ready": 1}
    assert stats["sessions"]["53"]["state"] == "DISCONNECTED"
    assert requests.post(f"{sim.base_url}/_sim/reset", timeout=5).json() == {"ok": True}
    assert requests.get(f"{sim.base_url}/_sim/ledger", timeout=5).json()["count"] == 0
    assert sim.state.session_state(53) == "READY"


def test_control_api_rejects_bad_session_change(sim):
    r = requests.post(
        f"{sim.base_url}/_sim/session", json={"cliente_id": 51, "state": "ASLEEP"}, timeout=5
    )
    assert r.status_code == 400
    assert sim.state.session_state(51) == "READY"
