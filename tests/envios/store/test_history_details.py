"""What the sender writes beside each state change.

The history detail, the error text, the day's count.
"""

from __future__ import annotations

from envios.sender.loop import run_once

from tests.sender.conftest import add_campaign, add_rows, add_schedule, make_config

SENDER = "sender-under-test"


def details(conn):
    return [
        (r["envio_id"], r["estado_anterior"], r["estado_nuevo"], r["detalle"])
        for r in conn.query(
            "SELECT envio_id, estado_anterior, estado_nuevo, detalle"
            " FROM ll_envios_whatsapp_historial ORDER BY id"
        )
    ]


def test_history_detail_and_last_error_of_each_outcome(db_url, upgraded, clock, gateway):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    (sent,) = add_rows(upgraded, 47, 1)
    (unsendable,) = add_rows(upgraded, 47, 1, phone="123")
    rejected, failed = add_rows(upgraded, 47, 2, first=2)
    gateway.plan(
        51,
        "ok",
        (400, {"error": True, "code": "INVALID_NUMBER", "message": "not on WhatsApp"}),
        (500, {"error": True, "code": "WHATSAPP_ERROR", "message": "send failed"}),
    )
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id=SENDER)
    errors = {
        r["id"]: r["last_error"]
        for r in upgraded.query("SELECT id, last_error FROM ll_envios_whatsapp")
    }
    assert errors[sent] is None
    assert "too short" in errors[unsendable] and "INVALID_NUMBER" in errors[rejected]
    assert "WHATSAPP_ERROR" in errors[failed]
    claimed = f"claimed by {SENDER}"
    # the history says why, in the words last_error keeps (the adapter's text, never the phone
    # number)
    assert details(upgraded) == [
        (sent, "pendiente", "enviando", claimed),
        (sent, "enviando", "enviado", "sent"),
        (unsendable, "pendiente", "error", f"not sendable: {errors[unsendable]}"),
        (rejected, "pendiente", "enviando", claimed),
        (rejected, "enviando", "error", f"rejected: {errors[rejected]}"),
        (failed, "pendiente", "enviando", claimed),
        (failed, "enviando", "pendiente", f"gateway_error: {errors[failed]}"),
    ]
    day = upgraded.query_one(
        "SELECT enviados, actualizado_en FROM ll_programacion_envios_diarios"
        " WHERE programacion_id = 47"
    )
    assert day == {"enviados": 1, "actualizado_en": clock.db_now(upgraded)}  # the database's clock


def test_the_log_says_what_the_gateway_confirmed_and_warns_on_doubt(
    db_url, upgraded, clock, gateway, caplog
):
    """A confirmed send is logged (event=gateway_confirmed, with its id) before it is recorded:
    if the database write is lost, that line is the record. A send without an id and an unknown
    outcome are warnings; a definite failure is not a confirmation."""
    import logging

    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    with_id, without_id, rejected, unknown = add_rows(upgraded, 47, 4)
    gateway.hang_s = 2.0
    gateway.plan(51, "ok", "no_id", (400, {"error": True, "code": "INVALID_NUMBER"}), "timeout")
    with caplog.at_level(logging.INFO, logger="envios.sender"):
        run_once(
            make_config(db_url, gateway.base_url, **{"gateway.send_timeout_s": 0.5}), clock=clock
        )
    confirmed = [m for m in caplog.messages if m.startswith("event=gateway_confirmed")]
    assert len(confirmed) == 2, confirmed
    assert confirmed[0].startswith(
        f"event=gateway_confirmed envio_id={with_id} outcome=sent message_id=true_"
    )
    assert (
        confirmed[1]
        == f"event=gateway_confirmed envio_id={without_id} outcome=sent_without_id message_id=-"
    )
    levels = {
        r.getMessage().split(" envio_id=")[1].split(" ")[0]: (r.levelname, r.getMessage())
        for r in caplog.records
        if r.getMessage().startswith("event=state_change")
        and " to=" in r.getMessage()
        and "from=enviando" in r.getMessage()
    }
    assert levels[str(with_id)][0] == "INFO"
    assert levels[str(without_id)][0] == "WARNING"
    assert levels[str(without_id)][1].endswith('note="gateway confirmed without a message id"')
    assert levels[str(rejected)][0] == "INFO"
    assert levels[str(unknown)][0] == "WARNING"
    assert "outcome unknown: row stays enviando, never retried" in levels[str(unknown)][1]
