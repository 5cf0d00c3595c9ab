"""Living next to the original application (DESIGN.md section 10), on each real schema (MariaDB).

After `envios db upgrade`, every statement the application runs on these tables
(../shared/legacy/app_statements.sql, the part for that schema) still succeeds;
the recipient row it inserted is then sent by envios like any other; and
envios's readers (reconcile list, status, the watcher) take the application's
history rows ('scheduler' | 'manual' | 'sistema' origins, 'no_incluido', NULL
detalle) in their stride.
"""

from __future__ import annotations

import datetime as dt

import pytest
from envios.monitor.watcher import Watcher
from envios.sender import reconcile
from envios.sender.loop import run_once

from envios.clock import FixedClock
from envios.commands import status
from envios.store import schema
from envios.store.connector import split_statements
from tests.conftest import TZ, legacy_file, load_legacy
from tests.sender.conftest import make_config

LATER_ONLY = "-- == schema_2026-02-27.sql only =="
# the app's new schedule: from 2026-03-01, mon..fri 09-18
MONDAY_IN_WINDOW = dt.datetime(2026, 3, 2, 10, 0)
JULIA = "5491160001234"


def app_statements(schema_name: str) -> list[str]:
    """The application's statements for a schema, in order.

    LAST_INSERT_ID() chains on one connection.
    """
    text = legacy_file("app_statements.sql").read_text(encoding="utf-8")
    lines = text.splitlines()
    # the line itself, not its mention
    cut = [i for i, line in enumerate(lines) if line.strip() == LATER_ONLY]
    assert len(cut) == 1, f"one line {LATER_ONLY!r} expected in app_statements.sql"
    common, later = "\n".join(lines[: cut[0]]), "\n".join(lines[cut[0] + 1 :])
    return split_statements(common) + (
        split_statements(later) if schema_name == "2026-02-27" else []
    )


@pytest.mark.mysql_only
@pytest.mark.parametrize("schema_name", ["2026-02", "2026-02-27"])
def test_the_applications_statements_run_and_its_row_is_sent_by_envios(
    db_url, conn, sim, schema_name
):
    load_legacy(conn, schema_name)
    schema.upgrade(conn, MONDAY_IN_WINDOW)
    for statement in app_statements(schema_name):
        conn.execute(statement)  # any failure here is the application broken by the upgrade
    campaign = conn.query_one(
        "SELECT estado FROM ll_campanias_whatsapp WHERE nombre = 'Campaña marzo'"
    )
    assert campaign == {"estado": "en_progreso"}
    new_schedule = conn.query_one(
        "SELECT estado, aprobado_por FROM ll_programaciones WHERE fecha_inicio = '2026-03-01'"
    )
    assert new_schedule == {"estado": "aprobada", "aprobado_por": "admin"}
    julia = conn.query_one(
        "SELECT id, estado FROM ll_envios_whatsapp WHERE telefono_wapp = %s", (JULIA,)
    )
    assert julia["estado"] == "pendiente"

    clock = FixedClock(TZ, MONDAY_IN_WINDOW)
    report = run_once(make_config(db_url, sim.base_url), clock=clock)
    assert report.sent >= 1
    sent = conn.query_one(
        "SELECT estado, message_id, fecha_envio FROM ll_envios_whatsapp WHERE id = %s",
        (julia["id"],),
    )
    delivered = [e for e in sim.state.ledger if e["to"] == JULIA]
    assert [e["text"] for e in delivered] == ["Hola Julia, tenemos novedades"]
    assert sent == {
        "estado": "enviado",
        "message_id": delivered[0]["message_id"],
        "fecha_envio": clock.db_now(conn),
    }
    mine = conn.query(
        "SELECT estado_anterior, estado_nuevo, origen, created_at FROM ll_envios_whatsapp_historial"
        " WHERE envio_id = %s ORDER BY id",
        (julia["id"],),
    )
    assert [(h["estado_anterior"], h["estado_nuevo"], h["origen"]) for h in mine] == [
        ("pendiente", "enviando", "envios-sender"),
        ("enviando", "enviado", "envios-sender"),
    ]
    assert {h["created_at"] for h in mine} == {clock.db_now(conn)}
    # rows the application had marked are left alone
    assert conn.scalar("SELECT estado FROM ll_envios_whatsapp WHERE id = 4820") == "error"
    if schema_name == "2026-02-27":
        assert conn.query_one(
            "SELECT estado, message_id FROM ll_envios_whatsapp WHERE id = 4823"
        ) == {"estado": "enviado", "message_id": "true_5491123456823@c.us_3EB0FFEE0011223344"}


@pytest.mark.mysql_only
@pytest.mark.parametrize("schema_name", ["2026-02", "2026-02-27"])
def test_envios_readers_understand_the_applications_history(db_url, conn, schema_name):
    load_legacy(conn, schema_name)
    clock = FixedClock(TZ, MONDAY_IN_WINDOW)
    schema.upgrade(conn, clock.now())
    for statement in app_statements(schema_name):
        conn.execute(statement)
    config = make_config(db_url, "http://127.0.0.1:9")

    doubtful = reconcile.list_doubtful(conn, clock, 300)
    # the app's sends are not envios's doubts
    assert doubtful.stuck == [] and doubtful.sent_without_id == []
    text = status.render(conn, clock.db_now(conn), config, local=clock.now())
    assert "Haby" in text and "Campaña marzo" in text

    watcher = Watcher(config, clock=clock)
    try:
        assert watcher.refresh()
        snap = watcher.refresher.state.snapshot
        assert snap is not None and set(snap.fresh) >= {"messages", "error_ratio", "stuck"}
        # the application's own 'error' marks (origen 'sistema' / 'scheduler') are not envios's
        # sends:
        # they never make an error ratio that would auto-pause the campaign
        assert snap.campaigns[47].finished == 0 and snap.campaigns[47].error_ratio == 0
    finally:
        watcher.stop()
