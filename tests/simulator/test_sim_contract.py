"""The session-manager contract (DESIGN.md section 9) as the simulator speaks it."""

from __future__ import annotations

import re
import time

import pytest
import requests
from envios.simulator.server import SimulatorServer

NUMBER = "5491123456789"
MESSAGE_ID = re.compile(r"^true_5491123456789@c\.us_3EB0[0-9A-F]{16}$")


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


# ----- GET /status -------------------------------------------------------------------


def test_status_by_header_and_by_query(sim):
    r = requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=5)
    assert r.status_code == 200
    assert r.json() == {"state": "READY", "connected": True, "cliente_id": 51}
    r = requests.get(f"{sim.base_url}/status", params={"cliente_id": "52"}, timeout=5)
    assert r.json() == {"state": "READY", "connected": True, "cliente_id": 52}


def test_status_without_cliente_id_is_400(sim):
    r = requests.get(f"{sim.base_url}/status", timeout=5)
    assert r.status_code == 400
    assert r.json()["code"] == "VALIDATION_ERROR"


def test_status_reflects_each_session_separately(sim):
    sim.state.set_session(52, "AWAITING_QR")
    s51 = requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=5).json()
    s52 = requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "52"}, timeout=5).json()
    assert (s51["state"], s51["connected"]) == ("READY", True)
    assert (s52["state"], s52["connected"]) == ("AWAITING_QR", False)


def test_legacy_builds_answer_status_instead_of_state(sim):
    sim.state.set_faults(status_key="status")
    body = requests.get(f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=5).json()
    assert body["status"] == "READY" and "state" not in body


def test_sessions_start_in_the_configured_state():
    with SimulatorServer(
        port=0, seed=1, sessions={52: "DISCONNECTED"}, default_state="CONNECTING"
    ) as s:

        def get(cid):
            url = f"{s.base_url}/status"
            return requests.get(url, headers={"X-Cliente-Id": str(cid)}, timeout=5).json()

        assert get(52)["state"] == "DISCONNECTED"
        assert get(99)["state"] == "CONNECTING"


# ----- POST /send: 200 -----------------------------------------------------------------


def test_send_ok_returns_message_id_and_lands_in_ledger(sim, send):
    r = send(51, NUMBER, "Hola Ana, tu turno es mañana")
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert MESSAGE_ID.match(body["message_id"])
    [entry] = sim.state.ledger
    assert entry["message_id"] == body["message_id"]
    assert entry["cliente_id"] == 51
    assert entry["to"] == NUMBER
    assert entry["text"] == "Hola Ana, tu turno es mañana"
    assert entry["outcome"] == "ok"
    assert abs(entry["time"] - time.time()) < 60
    assert sim.state.sends_received == 1


def test_message_ids_are_unique(sim, send):
    ids = {send(51, NUMBER, f"m{i}").json()["message_id"] for i in range(50)}
    assert len(ids) == 50
    assert len(sim.state.ledger) == 50


def test_cliente_id_in_body_only_is_accepted(sim):
    r = requests.post(
        f"{sim.base_url}/send", json={"cliente_id": 53, "to": NUMBER, "message": "x"}, timeout=5
    )
    assert r.status_code == 200
    assert sim.state.ledger[0]["cliente_id"] == 53


# ----- POST /send: 400 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "to,message,code",
    [
        (NUMBER, "", "VALIDATION_ERROR"),
        (NUMBER, "   ", "VALIDATION_ERROR"),
        (NUMBER, None, "VALIDATION_ERROR"),
        (None, "hola", "VALIDATION_ERROR"),
        ("+5491123456789", "hola", "INVALID_NUMBER"),
        ("54911-2345-6789", "hola", "INVALID_NUMBER"),
        ("12345", "hola", "INVALID_NUMBER"),
        ("5491123456789012345", "hola", "INVALID_NUMBER"),
    ],
)
def test_bad_requests_are_400_and_never_delivered(sim, to, message, code):
    body = {"cliente_id": 51}
    if to is not None:
        body["to"] = to
    if message is not None:
        body["message"] = message
    r = requests.post(f"{sim.base_url}/send", json=body, headers={"X-Cliente-Id": "51"}, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"] is True
    assert r.json()["code"] == code
    assert sim.state.ledger == []
    assert sim.state.sends_received == 1


def test_non_json_body_is_400(sim):
    r = requests.post(
        f"{sim.base_url}/send", data=b"to=549", headers={"X-Cliente-Id": "51"}, timeout=5
    )
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR"


def test_header_and_body_cliente_id_must_agree(sim):
    r = requests.post(
        f"{sim.base_url}/send",
        json={"cliente_id": 52, "to": NUMBER, "message": "x"},
        headers={"X-Cliente-Id": "51"},
        timeout=5,
    )
    assert r.status_code == 400
    assert sim.state.ledger == []


# ----- POST /send: 409 -----------------------------------------------------------------


@pytest.mark.parametrize("state", ["DISCONNECTED", "AWAITING_QR", "CONNECTING", "ERROR"])
def test_409_when_session_not_ready_and_nothing_delivered(sim, send, state):
    sim.state.set_session(51, state)
    r = send(51)
    assert r.status_code == 409
    assert r.json() == {
        "error": True,
        "code": "SESSION_NOT_READY",
        "message": f"session 51 is {state}",
    }
    assert sim.state.ledger == []
    # another session is not affected
    assert send(52).status_code == 200
    assert [e["cliente_id"] for e in sim.state.ledger] == [52]


def test_timed_drop_comes_back_ready(sim, send):
    sim.state.set_session(51, "DISCONNECTED", for_s=0.4)
    assert send(51).status_code == 409

    def ready():
        return (
            requests.get(
                f"{sim.base_url}/status", headers={"X-Cliente-Id": "51"}, timeout=5
            ).json()["state"]
            == "READY"
        )

    assert wait_until(ready)
    assert send(51).status_code == 200
    assert len(sim.state.ledger) == 1


def test_timed_drop_through_control_api(sim, send):
    r = requests.post(
        f"{sim.base_url}/_sim/session",
        json={"cliente_id": 51, "state": "AWAITING_QR", "for_s": 0.3},
        timeout=5,
    )
    assert r.status_code == 200 and r.json()["state"] == "AWAITING_QR"
    assert send(51).status_code == 409
    assert wait_until(lambda: sim.state.session_state(51) == "READY")
    assert send(51).status_code == 200


# ----- POST /send: 429 and 500 --------------------------------------------------------------


def test_429_when_rate_limited_and_nothing_delivered(sim, send):
    sim.state.set_faults(rate_limit_rate=1.0)
    r = send(51)
    assert r.status_code == 429
    assert r.headers.get("Retry-After") == "1"
    assert sim.state.ledger == []


def test_500_whatsapp_error_and_nothing_delivered(sim, send):
    sim.state.set_faults(error_5xx_rate=1.0)
    r = send(51)
    assert r.status_code == 500
    assert r.json()["code"] == "WHATSAPP_ERROR"
    assert sim.state.ledger == []
    sim.state.set_faults(error_5xx_rate=0.0)
    assert send(51).status_code == 200


# ----- odds and ends ---------------------------------------------------------------------


def test_api_key_when_configured():
    with SimulatorServer(port=0, seed=1, api_key="s3cret") as s:
        body = {"cliente_id": 51, "to": NUMBER, "message": "x"}
        r = requests.post(
            f"{s.base_url}/send", json=body, headers={"X-Cliente-Id": "51"}, timeout=5
        )
        assert r.status_code == 401 and s.state.ledger == []
        r = requests.post(
            f"{s.base_url}/send",
            json=body,
            headers={"X-Cliente-Id": "51", "Authorization": "Bearer s3cret"},
            timeout=5,
        )
        assert r.status_code == 200 and len(s.state.ledger) == 1


def test_unknown_route_is_404(sim):
    assert requests.get(f"{sim.base_url}/nope", timeout=5).status_code == 404
    assert requests.get(f"{sim.base_url}/send", timeout=5).status_code == 405


def test_keep_alive_connection_is_reused(sim, send):
    before = sim.connections_accepted
    with requests.Session() as s:
        for i in range(5):
            assert send(51, message=f"m{i}", session=s).status_code == 200
    assert sim.connections_accepted - before == 1  # HTTP/1.1 keep-alive: one connection, five sends
    assert len(sim.state.ledger) == 5


def test_send_without_any_cliente_id_is_400(sim):
    r = requests.post(f"{sim.base_url}/send", json={"to": NUMBER, "message": "x"}, timeout=5)
    assert r.status_code == 400
    assert r.json()["code"] == "VALIDATION_ERROR" and "cliente_id" in r.json()["message"]
    assert sim.state.ledger == [] and sim.state.sends_received == 1
