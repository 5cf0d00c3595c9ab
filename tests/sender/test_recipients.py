"""Issue 12: one person written three ways gets one message; a text too long is never sent.

Through the real loop, a real loopback gateway, on SQLite and MariaDB.
"""

from __future__ import annotations

import datetime as dt

from envios.sender.loop import run_once
from envios.sender.recipients import RecipientIndex

from envios.domain import OutboxRow
from tests.sender.conftest import add_campaign, add_rows, add_schedule, history, make_config, row

ANA = ["+54 9 11 4010-0001", "5491140100001", "011 15 4010-0001"]  # one person, three spellings
BETO = "+54 9 11 4010-0002"


def test_one_person_written_three_ways_gets_one_message(db_url, upgraded, clock, gateway):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    ids = add_rows(upgraded, 47, 4, phone=lambda i: (ANA + [BETO])[i])
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id="dedup:1")

    assert sorted(gateway.delivered_to().items()) == [("5491140100001", 1), ("5491140100002", 1)]
    assert row(upgraded, ids[0])["estado"] == "enviado"
    for dup in ids[1:3]:
        r = row(upgraded, dup)
        assert r["estado"] == "error"
        assert (
            r["last_error"]
            == f"duplicate of row {ids[0]}: same recipient, number written another way"
        )
        assert history(upgraded, dup) == [("pendiente", "error", "envios-sender")]
    assert row(upgraded, ids[3])["estado"] == "enviado"


def test_an_earlier_row_waiting_for_its_retry_goes_first(db_url, upgraded, clock, gateway):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    first, second = add_rows(upgraded, 47, 2, phone=lambda i: ANA[i])
    # next_attempt_at follows the database's clock
    later = clock.db_now(upgraded) + dt.timedelta(hours=1)
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET next_attempt_at = %s WHERE id = %s", (later, first)
    )
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id="dedup:1")

    assert gateway.sends_received == 0
    assert row(upgraded, first)["estado"] == "pendiente"
    assert row(upgraded, second)["last_error"].startswith(f"duplicate of row {first}:")


def test_two_sessions_of_one_campaign_send_one_message_per_person(db_url, upgraded, clock, gateway):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    add_schedule(upgraded, 48, 47, 52)
    add_rows(upgraded, 47, 3, phone=lambda i: ANA[i])
    add_rows(upgraded, 47, 3, first=10, phone=lambda i: f"+54 9 11 4010-{i:04d}")
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id="dedup:1")

    assert gateway.delivered_to()["5491140100001"] == 1
    assert gateway.sends_received == 4


def outbox_row(conn, envio_id: int) -> OutboxRow:
    return OutboxRow.from_row(row(conn, envio_id))


def test_an_index_notices_rows_that_went_away(db_url, upgraded):
    add_campaign(upgraded, 47)
    first, second = add_rows(upgraded, 47, 2, phone=lambda i: ANA[i])
    index = RecipientIndex()
    upgraded.execute("UPDATE ll_envios_whatsapp SET estado = 'enviado' WHERE id = %s", (first,))
    assert index.duplicate_of(upgraded, outbox_row(upgraded, second), "5491140100001") == first
    upgraded.execute("DELETE FROM ll_envios_whatsapp WHERE id = %s", (first,))
    third = add_rows(upgraded, 47, 1, phone=ANA[2])[0]
    # earlier pendiente
    assert index.duplicate_of(upgraded, outbox_row(upgraded, third), "5491140100001") == second
    # first is gone
    assert index.duplicate_of(upgraded, outbox_row(upgraded, second), "5491140100001") is None


def test_a_text_longer_than_the_gateway_takes_is_an_error_and_never_sent(
    db_url, upgraded, clock, gateway
):
    add_campaign(upgraded, 47)
    add_schedule(upgraded, 47, 47, 51)
    too_long, at_limit = add_rows(upgraded, 47, 2, mensaje="x")
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET mensaje_final = %s WHERE id = %s", ("a" * 60_000, too_long)
    )
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET mensaje_final = %s WHERE id = %s", ("é" * 4096, at_limit)
    )
    run_once(make_config(db_url, gateway.base_url), clock=clock, sender_id="len:1")

    r = row(upgraded, too_long)
    assert r["estado"] == "error"
    assert r["last_error"] == "message too long: 60000 characters, the gateway accepts at most 4096"
    assert history(upgraded, too_long) == [("pendiente", "error", "envios-sender")]
    assert row(upgraded, at_limit)["estado"] == "enviado"
    assert [len(e["text"]) for e in gateway.ledger] == [4096]
