"""The recipient index's reads (`envios.sender.recipients`): one message per person per campaign."""

from __future__ import annotations

from envios.store.sql import Statement

CAMPAIGN_ROW_COUNT = Statement(
    "recipients.campaign_row_count",
    "SELECT COUNT(*) AS n FROM ll_envios_whatsapp WHERE campania_id = %(campania_id)s",
)
# Read incrementally by id: only rows added since the index last looked.
PHONES_AFTER = Statement(
    "recipients.phones_after",
    "SELECT id, telefono_wapp FROM ll_envios_whatsapp"
    " WHERE campania_id = %(campania_id)s AND id > %(after_id)s ORDER BY id",
)
# `{ids}`: an IN list (Statement.with_lists).
CANDIDATES = Statement(
    "recipients.candidates",
    "SELECT id, campania_id, telefono_wapp, nombre_destino, mensaje_final, estado"
    " FROM ll_envios_whatsapp WHERE id IN ({ids})",
)
