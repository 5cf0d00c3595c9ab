"""The sender's recovery reads (`envios.sender.journal_recovery`): rows a sender left in flight."""

from __future__ import annotations

from envios.store.sql import Statement

_CLAIMED_BY = (
    "SELECT id, claimed_at FROM ll_envios_whatsapp"
    " WHERE estado = %(enviando)s AND claimed_by = %(sender)s"
)
CLAIMED_BY = Statement("recovery.claimed_by", _CLAIMED_BY)
CLAIMED_BY_BEFORE = Statement(
    "recovery.claimed_by_before", _CLAIMED_BY + " AND claimed_at < %(before)s"
)
