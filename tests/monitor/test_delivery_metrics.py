"""Watcher: delivered / read / failed ratios per campaign.

Unknowns settled by evidence vs by a person.
"""

from __future__ import annotations

import pytest

from envios.commands import status as status_command
from tests.monitor.conftest import labels, parse, series


def _acks(conn, campania_id, statuses):
    ids = [
        r["id"]
        for r in conn.query(
            "SELECT id FROM ll_envios_whatsapp WHERE campania_id = %s AND estado = 'enviado'"
            " ORDER BY id",
            (campania_id,),
        )
    ]
    for envio_id, status in zip(ids, statuses, strict=False):
        conn.execute(
            "UPDATE ll_envios_whatsapp SET delivery_status = %s WHERE id = %s", (status, envio_id)
        )


def _left_enviando(conn, build, campania_id, origen, to_state="enviado"):
    build.send(
        campania_id,
        to_state if to_state != "pendiente" else "pendiente",
        claimed_at=build.ago(minutes=30),
    )
    envio_id = conn.scalar("SELECT MAX(id) FROM ll_envios_whatsapp")
    conn.execute(
        "INSERT INTO ll_envios_whatsapp_historial (envio_id, campania_id, estado_anterior,"
        " estado_nuevo, origen, detalle, created_at) VALUES (%s, %s, 'enviando', %s, %s, 'x', %s)",
        (envio_id, campania_id, to_state, origen, build.ago(minutes=5)),
    )


@pytest.fixture
def delivered(build, upgraded):
    build.campaign(1)
    build.campaign(2)
    build.send(
        1,
        "enviado",
        claimed_at=build.ago(minutes=20),
        finished_at=build.ago(minutes=19),
        message_id="auto",
        count=10,
    )
    _acks(upgraded, 1, ["read"] * 4 + ["delivered"] * 3 + ["failed"])
    _left_enviando(upgraded, build, 1, "envios-evidence")
    _left_enviando(upgraded, build, 1, "envios-evidence")
    _left_enviando(upgraded, build, 1, "envios-reconcile", to_state="pendiente")
    _left_enviando(upgraded, build, 1, "manual")  # the application's own manual confirmation
    return build


def test_delivery_ratios_and_settled_unknowns(delivered, config, clock, watchers):
    watcher = watchers(config, clock=clock)
    assert watcher.refresh() is True
    got = parse(watcher.exposition())
    # 13 enviado rows: 10 sent normally, 2 settled by evidence, 1 confirmed by a person in the
    # application
    assert series(got, "envios_delivery_acknowledged") == {
        labels(campania_id=1, status="delivered"): 7,
        labels(campania_id=1, status="read"): 4,
        labels(campania_id=1, status="failed"): 1,
        labels(campania_id=2, status="delivered"): 0,
        labels(campania_id=2, status="read"): 0,
        labels(campania_id=2, status="failed"): 0,
    }
    ratio = series(got, "envios_delivery_ratio")
    assert ratio[labels(campania_id=1, status="delivered")] == pytest.approx(7 / 13)
    assert ratio[labels(campania_id=1, status="read")] == pytest.approx(4 / 13)
    assert ratio[labels(campania_id=1, status="failed")] == pytest.approx(1 / 13)
    assert ratio[labels(campania_id=2, status="delivered")] == 0
    assert series(got, "envios_unknowns_settled") == {
        labels(campania_id=1, by="evidence"): 2,
        labels(campania_id=1, by="person"): 2,
        labels(campania_id=2, by="evidence"): 0,
        labels(campania_id=2, by="person"): 0,
    }


def test_status_shows_delivery_and_settled(delivered, upgraded, config, clock):
    text = status_command.render(upgraded, clock.now(), config)
    line = next(ln for ln in text.splitlines() if ln.lstrip().startswith("1 "))
    assert "7/4/1" in line and "2 auto, 2 person" in line
    assert "DELIVERED/READ/FAILED" in text and "SETTLED" in text
