"""What the sender writes beside each state change: the history detail, the error text, the day's count."""

from __future__ import annotations

from sender.loop import run_once
from tests.sender.conftest import add_campaign, add_rows, add_schedule, make_config

SENDER = "sender-under-test"


def details(conn):
    return [(r["envio_id"], r["estado_anterior"], r["estado_nuevo"], r["detalle"]) for r in conn.query(
        "SELECT envio_id, estado_anterior, estado_nuevo, detalle FROM ll_envios_whatsapp_historial ORDER BY id")]


def test_history_detail_and_last_error_of_each_outcome(db_url, upgraded, clock, gateway):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    sent, = add_rows(upgraded, 47, 1)
    unsendable, = add_rows(upgraded, 47, 1, phone="123")
    rejected, failed = add_rows(upgraded, 47, 2, first=2)
    gateway.plan(51, "ok", (400, {"error": True, "code": "INVALID_NUMBER", "message": "not on WhatsApp"}),
                 (500, {"error": True, "code": "WHATSAPP_ERROR", "message": "send failed"}))
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id=SENDER)
    errors = {r["id"]: r["last_error"] for r in upgraded.query("SELECT id, last_error FROM ll_envios_whatsapp")}
    assert errors[sent] is None
    assert "too short" in errors[unsendable] and "INVALID_NUMBER" in errors[rejected]
    assert "WHATSAPP_ERROR" in errors[failed]
    claimed = f"claimed by {SENDER}"
    # the history says why, in the words last_error keeps (the adapter's text, never the phone number)
    assert details(upgraded) == [
        (sent, "pendiente", "enviando", claimed),
        (sent, "enviando", "enviado", "sent"),
        (unsendable, "pendiente", "error", f"not sendable: {errors[unsendable]}"),
        (rejected, "pendiente", "enviando", claimed),
        (rejected, "enviando", "error", f"rejected: {errors[rejected]}"),
        (failed, "pendiente", "enviando", claimed),
        (failed, "enviando", "pendiente", f"gateway_error: {errors[failed]}"),
    ]
    day = upgraded.query_one("SELECT enviados, actualizado_en FROM ll_programacion_envios_diarios"
                             " WHERE programacion_id = 47")
    assert day == {"enviados": 1, "actualizado_en": clock.now()}
