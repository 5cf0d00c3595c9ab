"""The watcher's incremental counts stay exact: after any writer's change, equal to a recount."""

from __future__ import annotations

from envios.monitor import counts as counts_module
from envios.monitor import queries as q
from envios.monitor.counts import OutboxCounts
from envios.sender.gateways.base import NO_ID_FROM_GATEWAY


def _recount(conn, ids):
    return q.messages(conn, ids), q.without_message_id(conn, ids)


def _incremental(counts, conn, ids, refresh):
    counts.up_to_date(conn, refresh)
    return counts.messages(ids), counts.without_message_id(ids)


def test_incremental_counts_follow_direct_updates_inserts_and_every_kind_of_missing_id(
    upgraded, build
):
    for cid in (1, 2):
        build.campaign(cid)
    build.send(1, "pendiente", count=4)
    build.send(
        1,
        "enviado",
        claimed_at=build.ago(minutes=5),
        finished_at=build.ago(minutes=4),
        message_id="auto",
        count=2,
    )
    build.send(2, "enviado", legacy=True, count=3)
    build.send(2, "error", claimed_at=build.ago(minutes=3), finished_at=build.ago(minutes=2))
    ids = [1, 2]
    counts = OutboxCounts()
    assert _incremental(counts, upgraded, ids, "first") == _recount(upgraded, ids)
    assert counts.rows_read == 10  # the first read takes every row

    # The original application's own statements, straight on the table (no envios code):
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviado' WHERE campania_id = 1"
        " AND estado = 'pendiente' AND id IN (SELECT id FROM (SELECT MIN(id) AS id"
        " FROM ll_envios_whatsapp WHERE campania_id = 1 AND estado = 'pendiente') x)"
    )
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'enviado', claimed_at = %s, last_error = %s"
        " WHERE campania_id = 1 AND estado = 'pendiente' AND id IN (SELECT id FROM"
        " (SELECT MAX(id) AS id FROM ll_envios_whatsapp WHERE campania_id = 1"
        " AND estado = 'pendiente') x)",
        (build.ago(minutes=1), NO_ID_FROM_GATEWAY),
    )
    upgraded.execute(
        "UPDATE ll_envios_whatsapp SET estado = 'pendiente' WHERE campania_id = 2"
        " AND estado = 'error'"
    )
    build.send(2, "pendiente", count=2)
    got = _incremental(counts, upgraded, ids, "second")
    assert got == _recount(upgraded, ids)
    assert got[0][1]["enviado"] == 4 and got[0][2]["pendiente"] == 3
    assert got[1][1] == (2, 1, 1)  # one legacy-style (never claimed), one unverifiable
    assert counts.rows_read < 20  # only the rows changed lately, not the whole table again


def test_a_full_read_takes_deleted_rows_out_of_the_counts(upgraded, build, monkeypatch):
    build.campaign(1)
    build.send(1, "pendiente", count=3)
    counts = OutboxCounts()
    _incremental(counts, upgraded, [1], "first")
    upgraded.execute(
        "DELETE FROM ll_envios_whatsapp WHERE campania_id = 1 AND id IN"
        " (SELECT id FROM (SELECT MIN(id) AS id FROM ll_envios_whatsapp) x)"
    )
    monkeypatch.setattr(counts_module, "FULL_EVERY_S", 0.0)  # the periodic full read is due
    assert _incremental(counts, upgraded, [1], "second") == _recount(upgraded, [1])
    assert counts.messages([1])[1]["pendiente"] == 2
