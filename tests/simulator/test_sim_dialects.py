"""The simulator speaking WAHA, Evolution and Cloud API.

It sends their webhooks to `envios webhooks`.

End to end on both backends: the sender sends through the simulator in each dialect,
some answers are lost after delivery, the simulator's acknowledgements (and, for
Evolution, its message lookup) settle those rows, and the ledger is the truth.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from envios.sender.gateways import build_gateway
from envios.sender.gateways.base import Outcome
from envios.sender.loop import run_once
from envios.sender.webhooks import WebhookApp, serve
from envios.simulator.dialects import Notifier

from envios.store.connector import Database
from tests.sender.conftest import estados, make_config, row, seed_session

SECRET, APP_SECRET = "hook-secret", "app-secret"
KINDS = ["waha", "evolution", "cloud_api"]


def config_for(db_url, sim, kind, **more):
    return make_config(
        db_url,
        sim.base_url,
        **{
            "gateway.kind": kind,
            "gateway.session": "default",
            "gateway.phone_number_id": "1234567890",
            **more,
        },
    )


@pytest.mark.parametrize("kind", KINDS)
def test_each_adapter_speaks_to_the_simulator(sim, kind):
    gateway = build_gateway(config_for("sqlite:///x.db", sim, kind))
    assert gateway.status(1).ready
    result = gateway.send_row(1, "5491100000001", "Hola Ana", 9)
    assert result.outcome is Outcome.SENT and result.message_id
    assert [e["to"] for e in sim.state.ledger] == ["5491100000001"]
    sim.state.set_session(1, "DISCONNECTED")
    if kind != "cloud_api":
        assert gateway.status(1).state == "DISCONNECTED"
    assert gateway.send_row(1, "5491100000002", "Hola", 10).outcome in (
        Outcome.SESSION_NOT_READY,
        Outcome.GATEWAY_ERROR,
    )
    assert len(sim.state.ledger) == 1


@pytest.mark.parametrize("kind", ["waha", "evolution"])
def test_the_simulators_lookup_is_evidence(sim, kind):
    gateway = build_gateway(config_for("sqlite:///x.db", sim, kind))
    sim.state.set_faults(drop_connection_rate=1.0)
    assert gateway.send(1, "5491100000001", "Hola Ana").outcome is Outcome.UNKNOWN
    found = gateway.find_sent(1, "5491100000001", "Hola Ana", 0)
    assert found is not None and found.message_id


@pytest.fixture
def hooks(db_url, upgraded, clock):
    app = WebhookApp(
        Database(db_url), clock, secret=SECRET, app_secret=APP_SECRET, verify_token="v"
    )
    server = serve(app, "127.0.0.1", 0)
    app.url = server.url
    yield app
    server.stop()
    app.close()


@pytest.mark.parametrize("kind", KINDS)
def test_acknowledgements_arrive_and_lost_answers_are_settled(
    db_url, upgraded, clock, sim, hooks, kind
):
    sim.state.set_faults(drop_connection_rate=0.3)
    ids = seed_session(upgraded, rows=12, cliente_id=1, campania_id=47)
    notifier = Notifier(
        sim.state,
        sim.dialects,
        f"{hooks.url}/webhooks/{kind}",
        kind,
        secret=SECRET,
        app_secret=APP_SECRET,
        read_share=1.0,
    )
    for _ in range(20):
        run_once(config_for(db_url, sim, kind), clock=clock)
        notifier.flush()
        clock.advance(10)  # the next pass comes after the sends' in-flight time
        if not estados(upgraded).get("pendiente") and not estados(upgraded).get("enviando"):
            break
    ledger = sim.state.ledger
    dropped = [e for e in ledger if e["outcome"] == "dropped"]
    assert dropped, "the run had no lost answer"
    assert notifier.failed == 0 and notifier.posted == 3 * len(ledger)
    assert len({e["to"] for e in ledger}) == len(ledger) == 12  # each row delivered exactly once
    assert estados(upgraded) == {"enviado": 12}
    for envio_id in ids:
        r = row(upgraded, envio_id)
        assert r["delivery_status"] == "read" and r["delivered_at"] and r["read_at"]
    settled = upgraded.scalar(
        "SELECT COUNT(*) FROM ll_envios_whatsapp_historial WHERE origen = 'envios-evidence'"
    )
    assert settled == len(dropped)


def test_the_simulator_imports_nothing_from_envios():
    for path in (Path(__file__).resolve().parents[2] / "simulator").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] not in ("sender", "monitor"), path
            if isinstance(node, ast.Import):
                assert all(a.name.split(".")[0] not in ("sender", "monitor") for a in node.names), (
                    path
                )
