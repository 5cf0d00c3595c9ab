"""One message per person per campaign: rows are deduplicated by normalised number at claim time.

The legacy table's unique key (campania_id, telefono_wapp) stops the same text
twice, not the same person written three ways (`+54 9 11 4010-0001`,
`5491140100001`, `011 15 4010-0001`). When a row is about to be claimed,
`duplicate_of` names the row of the same campaign and number that already
stands for that person:

- one that is `enviado` or `enviando` (sent, or in flight), or
- an earlier `pendiente` one (lower id) that can be sent: it goes first.

The claim then moves the row to `error` with "duplicate of row N". Whoever is
claimed first in id order wins, on any number of senders: two rows of one
person never both pass this check unless the first one is in `error`.

Normalising every row of a campaign on every claim would be quadratic, so each
process keeps an index per (database, campaign): number -> row ids, read
incrementally by id (only when a row newer than the index is vetted: rows get
growing ids) and rebuilt when the campaign's row count says rows went away. The
index only proposes candidates; each one is re-read and re-checked in the
claim's own transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable

from envios.sender.messages import personalise

from envios.domain import Estado, OutboxRow
from envios.phones import InvalidPhone, normalise
from envios.store import recipients as statements
from envios.store.connector import Connection

_STANDS_FOR_THE_PERSON = (Estado.ENVIADO.value, Estado.ENVIANDO.value)


class _CampaignIndex:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows = 0
        self.top_id = 0
        self.by_phone: dict[str, list[int]] = {}

    def refresh(self, conn: Connection, campania_id: int) -> None:
        total = int(conn.scalar(statements.CAMPAIGN_ROW_COUNT, {"campania_id": campania_id}) or 0)
        new = conn.query(
            statements.PHONES_AFTER, {"campania_id": campania_id, "after_id": self.top_id}
        )
        if self.rows + len(new) != total:  # rows deleted (or inserted below top_id): start over
            self.rows, self.top_id, self.by_phone = 0, 0, {}
            new = conn.query(statements.PHONES_AFTER, {"campania_id": campania_id, "after_id": 0})
        for found in new:
            self.rows += 1
            self.top_id = max(self.top_id, int(found["id"]))
            try:
                key = normalise(found["telefono_wapp"])
            except InvalidPhone:
                continue
            self.by_phone.setdefault(key, []).append(int(found["id"]))


class RecipientIndex:
    """Per-process cache of campaign indexes; thread-safe (one lock per campaign)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._campaigns: dict[tuple[Hashable, int], _CampaignIndex] = {}

    def duplicate_of(
        self, conn: Connection, row: OutboxRow, to: str, refreshed: set[int] | None = None
    ) -> int | None:
        """The id of the row that already stands for this row's recipient, or None.

        `refreshed`: campaigns whose index this transaction already brought up to date
        (a claim batch vets many rows of one campaign; the index is read once).
        """
        campania_id, own_id = row.campania_id, row.id
        with self._lock:
            index = self._campaigns.setdefault(
                (getattr(conn, "url", id(conn)), campania_id), _CampaignIndex()
            )
        with index.lock:
            # Rows are added with growing ids: an index that already holds this row holds every
            # row that could stand for its recipient before it (its candidates are re-read below).
            if own_id > index.top_id and (refreshed is None or campania_id not in refreshed):
                index.refresh(conn, campania_id)
                if refreshed is not None:
                    refreshed.add(campania_id)
            others = [i for i in index.by_phone.get(to, ()) if i != own_id]
        if not others:
            return None
        found = conn.query(*statements.CANDIDATES.with_lists(ids=others))
        earlier_pending = None
        for other in sorted(found, key=lambda r: int(r["id"])):
            if int(other["campania_id"]) != campania_id or not _same_number(
                other["telefono_wapp"], to
            ):
                continue  # the row changed since it was indexed
            if other["estado"] in _STANDS_FOR_THE_PERSON:
                return int(other["id"])
            if (
                other["estado"] == Estado.PENDIENTE
                and int(other["id"]) < own_id
                and earlier_pending is None
                and personalise(other["mensaje_final"], other["nombre_destino"])
            ):
                earlier_pending = int(other["id"])
        return earlier_pending


def _same_number(raw: object, to: str) -> bool:
    try:
        return normalise(raw) == to
    except InvalidPhone:
        return False


INDEX = RecipientIndex()


def duplicate_problem(
    conn: Connection, row: OutboxRow, to: str, refreshed: set[int] | None = None
) -> str | None:
    """Why the row must not be sent because its recipient already has a row, or None."""
    original = INDEX.duplicate_of(conn, row, to, refreshed)
    if original is None:
        return None
    return f"duplicate of row {original}: same recipient, number written another way"
