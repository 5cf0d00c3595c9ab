"""The watcher's incremental per-campaign counts: outbox rows read by their change time.

`cambiado_en` (schema v6) is kept by the database on every change, whoever makes
it (MariaDB `ON UPDATE`, SQLite triggers), so the rows changed since the last read
are exactly those with a later `cambiado_en` (index idx_envios_cambiado_en).
The note is the placeholder the sender writes for a gateway that gives no ids.
"""

from __future__ import annotations

from envios.store.sql import Statement

_ROW_FACTS = (
    "SELECT id, campania_id, estado, message_id IS NULL AS no_id,"
    " claimed_at IS NULL AS never_claimed,"
    " CASE WHEN last_error = %(note)s THEN 1 ELSE 0 END AS unverifiable, cambiado_en"
    " FROM ll_envios_whatsapp"
)

# Every row, `n` at a time in id order: the first read, and the periodic full read that
# also notices deleted rows.
ALL_ROW_FACTS = Statement(
    "all_row_facts", _ROW_FACTS + " WHERE id > %(after)s ORDER BY id LIMIT %(n)s"
)

# Rows changed at or after `since` (the newest change seen, minus a margin for
# transactions that committed after a later one was read).
CHANGED_ROW_FACTS = Statement(
    "changed_row_facts",
    _ROW_FACTS + " WHERE cambiado_en >= %(since)s",
)
