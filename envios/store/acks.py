"""Delivery acknowledgements and unknown outcomes settled by evidence (`envios.sender.delivery`).

A row is read locked (`FOR UPDATE` on MariaDB/MySQL; SQLite's transaction already holds
the database's write lock) before an acknowledgement changes it.
"""

from __future__ import annotations

from envios.store.sql import Statement

_ROW = (
    "SELECT id, campania_id, telefono_wapp, nombre_destino, mensaje_final, estado, message_id,"
    " claimed_at, claim_programacion_id, delivery_status, delivered_at, read_at, delivery_error"
    " FROM ll_envios_whatsapp"
)


def _locked(name: str, where: str) -> Statement:
    return Statement(name, mysql=f"{_ROW} {where} FOR UPDATE", sqlite=f"{_ROW} {where}")


ROW_BY_MESSAGE_ID_LOCKED = _locked(
    "acks.row_by_message_id_locked", "WHERE message_id = %(message_id)s"
)
ROW_LOCKED = _locked("acks.row_locked", "WHERE id = %(envio_id)s")
ROW = Statement("acks.row", f"{_ROW} WHERE id = %(envio_id)s")
# Unknown outcomes without an id: an ack naming only the recipient and the text may be theirs.
UNKNOWN_WITHOUT_ID_LOCKED = _locked(
    "acks.unknown_without_id_locked", "WHERE estado = %(enviando)s AND message_id IS NULL"
)

FORGET_OLD_UNMATCHED = Statement(
    "acks.forget_old_unmatched",
    "DELETE FROM envios_unmatched_acks WHERE received_at < %(before)s",
)
KEEP_UNMATCHED = Statement(
    "acks.keep_unmatched",
    "INSERT INTO envios_unmatched_acks (message_id, kind, status, error, received_at)"
    " VALUES (%(message_id)s, %(kind)s, %(status)s, %(error)s, %(now)s)",
)
UNMATCHED_FOR = Statement(
    "acks.unmatched_for",
    "SELECT status, error FROM envios_unmatched_acks WHERE message_id = %(message_id)s",
)
FORGET_UNMATCHED_FOR = Statement(
    "acks.forget_unmatched_for",
    "DELETE FROM envios_unmatched_acks WHERE message_id = %(message_id)s",
)

SET_DELIVERY = Statement(
    "acks.set_delivery",
    "UPDATE ll_envios_whatsapp SET delivery_status = %(delivery_status)s,"
    " delivered_at = %(delivered_at)s, read_at = %(read_at)s, delivery_error = %(delivery_error)s"
    " WHERE id = %(envio_id)s",
)
# An ack for a send still in flight: its id is kept so a lost answer can be settled later.
KEEP_ID = Statement(
    "acks.keep_id",
    "UPDATE ll_envios_whatsapp SET message_id = %(message_id)s"
    " WHERE id = %(envio_id)s AND estado = %(enviando)s AND message_id IS NULL",
)

# Acknowledged while the send was in flight, and the send's own answer never came.
ACKNOWLEDGED_IN_FLIGHT = Statement(
    "acks.acknowledged_in_flight",
    f"{_ROW}"
    " WHERE estado = %(enviando)s AND message_id IS NOT NULL"
    " AND delivery_status IN ('sent', 'delivered', 'read')"
    " AND claimed_at < %(before)s",
)

# Unknown outcomes to ask the gateway about, with the client whose session sent them.
UNKNOWN_WITH_CLAIM = Statement(
    "acks.unknown_with_claim",
    "SELECT e.id, e.telefono_wapp, e.nombre_destino, e.mensaje_final, e.claimed_at,"
    " e.claim_programacion_id, p.cliente_id"
    " FROM ll_envios_whatsapp e LEFT JOIN ll_programaciones p ON p.id = e.claim_programacion_id"
    " WHERE e.estado = %(enviando)s AND e.message_id IS NULL AND e.claimed_at IS NOT NULL"
    " ORDER BY e.id",
)
ROWS_WITH_MESSAGE_ID = Statement(
    "acks.rows_with_message_id",
    "SELECT COUNT(*) FROM ll_envios_whatsapp WHERE message_id = %(message_id)s",
)
