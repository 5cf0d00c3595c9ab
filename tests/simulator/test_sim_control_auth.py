"""Issue 12: with an API key set, the control endpoints (full numbers and texts) need it too."""

from __future__ import annotations

import pytest
import requests
from envios.simulator.server import SimulatorServer

ROUTES = [
    ("GET", "/_sim/ledger"),
    ("GET", "/_sim/stats"),
    ("GET", "/_sim/faults"),
    ("POST", "/_sim/faults"),
    ("GET", "/_sim/sessions"),
    ("POST", "/_sim/session"),
    ("POST", "/_sim/reset"),
    ("POST", "/_sim/refuse"),
]


@pytest.fixture
def keyed():
    with SimulatorServer(port=0, seed=1, api_key="s3cret") as sim:
        body = {"cliente_id": 51, "to": "5491140100001", "message": "Hola Ana"}
        sent = requests.post(
            f"{sim.base_url}/send", json=body, headers={"X-Api-Key": "s3cret"}, timeout=5
        )
        assert sent.status_code == 200
        yield sim


@pytest.mark.parametrize("method,path", ROUTES)
def test_control_routes_refuse_a_missing_or_wrong_key(keyed, method, path):
    for headers in ({}, {"X-Api-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        r = requests.request(method, keyed.base_url + path, json={}, headers=headers, timeout=5)
        assert r.status_code == 401, (path, headers)
        assert "5491140100001" not in r.text and "Hola Ana" not in r.text
    assert len(keyed.state.ledger) == 1  # /_sim/reset did not run
    assert keyed.listening  # /_sim/refuse did not run


def test_control_routes_answer_with_the_key(keyed):
    for headers in ({"X-Api-Key": "s3cret"}, {"Authorization": "Bearer s3cret"}):
        r = requests.get(f"{keyed.base_url}/_sim/ledger", headers=headers, timeout=5)
        assert r.status_code == 200 and r.json()["count"] == 1
    r = requests.post(f"{keyed.base_url}/_sim/reset", headers={"X-Api-Key": "s3cret"}, timeout=5)
    assert r.status_code == 200 and keyed.state.ledger == []


def test_without_a_key_the_control_routes_stay_open(sim):
    assert requests.get(f"{sim.base_url}/_sim/ledger", timeout=5).status_code == 200
