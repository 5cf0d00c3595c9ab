"""The watcher's reads (and `envios campaign` / `envios status`'s), as typed results.

The statements are `envios.store.watching`'s; this module runs them and shapes the rows.
Datetimes go in as parameters computed by the clock, never the server's clock. The one
dialect difference that leaks through the connector (an aggregate over a DATETIME column
comes back as text from SQLite) is undone in `_as_datetime` here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envios.sender.gateways.base import NO_ID_FROM_GATEWAY

from envios.domain import ESTADOS, FINISHED, SETTLED_BY, CampaniaEstado, Estado, ProgramacionEstado
from envios.store import operating, watching
from envios.store.connector import Connection
from envios.store.schema import Process, ready_for
from envios.store.sql import by_value

IN_CHUNK = 500  # ids per IN (...) list


def _as_datetime(value: Any) -> dt.datetime | None:
    """SQLite returns MIN()/MAX() of a DATETIME column as text."""
    if value is None or isinstance(value, dt.datetime):
        return value
    if isinstance(value, bytes):
        value = value.decode()
    return dt.datetime.fromisoformat(str(value))


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    ids = sorted(ids)
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start : start + IN_CHUNK]


# -- reads of one refresh ------------------------------------------------------


@dataclass(frozen=True)
class CampaignRow:
    id: int
    estado: str
    resumed_at: dt.datetime | None


def campaigns(conn: Connection, include_finished: bool = False) -> dict[int, CampaignRow]:
    """Campaigns whose series the watcher exports (all of them with include_finished)."""
    rows = conn.query(
        watching.CAMPAIGNS_ALL if include_finished else watching.CAMPAIGNS_ACTIVE,
        by_value(CampaniaEstado.FINALIZADO),
    )
    return {
        int(r["id"]): CampaignRow(
            int(r["id"]),
            r["estado"] or CampaniaEstado.PENDIENTE.value,
            _as_datetime(r["resumed_at"]),
        )
        for r in rows
    }


def messages(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Rows per state of the given campaigns; every state present (0 when none)."""
    out = {cid: dict.fromkeys(ESTADOS, 0) for cid in campaign_ids}
    for chunk in _chunks(campaign_ids):
        statement, params = watching.MESSAGES.with_lists(ids=chunk)
        for r in conn.query(statement, params):
            if r["estado"] in ESTADOS:
                out[int(r["campania_id"])][r["estado"]] = int(r["n"])
    return out


@dataclass(frozen=True)
class Stuck:
    count: int
    oldest_claim: dt.datetime | None  # None when only rows without a claim time are stuck


def stuck(conn: Connection, claimed_before: dt.datetime) -> dict[int, Stuck]:
    """Rows in `enviando` claimed before the cutoff (or with no claim time at all), per campaign."""
    return {
        int(r["campania_id"]): Stuck(int(r["n"]), _as_datetime(r["oldest"]))
        for r in conn.query(
            watching.STUCK, {**by_value(Estado.ENVIANDO), "claimed_before": claimed_before}
        )
    }


# The note the sender leaves on a row the gateway confirmed with a placeholder instead of
# an id (sender.gateways.base.NO_ID_FROM_GATEWAY): unverifiable by design, not an id lost.
UNVERIFIABLE_NOTE = NO_ID_FROM_GATEWAY


@dataclass(frozen=True)
class Missing:
    missing: int  # marked enviado by envios (claimed) without a message id: the id was lost
    since_resume: (
        int  # of those, finished after the campaign's last resume (all when never resumed)
    )
    legacy: int  # sent before the upgrade (never claimed): no id by construction
    unverifiable: int = 0  # confirmed with a placeholder: the gateway never gives ids
    unverifiable_since_resume: int = 0


def _missing_params() -> dict[str, str]:
    return {**by_value(Estado.ENVIADO), "unverifiable_note": UNVERIFIABLE_NOTE}


def without_message_id(
    conn: Connection, campaign_ids: Sequence[int]
) -> dict[int, tuple[int, int, int]]:
    """Per campaign: (enviado without a message id, of them legacy, of them unverifiable)."""
    missing = _missing_params()
    counts: dict[int, tuple[int, int, int]] = {}
    for chunk in _chunks(list(campaign_ids)):
        statement, params = watching.MISSING_MESSAGE_ID.with_lists(ids=chunk)
        for r in conn.query(statement, {**params, **missing}):
            counts[int(r["campania_id"])] = (
                int(r["n"]),
                int(r["legacy"] or 0),
                int(r["unverifiable"] or 0),
            )
    return counts


def missing_message_ids(
    conn: Connection,
    campaigns: dict[int, CampaignRow],
    counts: dict[int, tuple[int, int, int]] | None = None,
) -> dict[int, Missing]:
    """`counts`: without_message_id's answer when already known (the watcher's monitor.counts)."""
    if counts is None:
        counts = without_message_id(conn, list(campaigns))
    missing = _missing_params()
    resumed = [
        cid
        for cid, c in campaigns.items()
        if c.resumed_at is not None
        and counts.get(cid, (0, 0, 0))[0] > counts.get(cid, (0, 0, 0))[1]
    ]
    since: dict[int, tuple[int, int]] = {}
    for chunk in _chunks(resumed):
        statement, params = watching.MISSING_SINCE_RESUME.with_lists(ids=chunk)
        for r in conn.query(statement, {**params, **missing}):
            since[int(r["campania_id"])] = (int(r["n"]), int(r["unverifiable"] or 0))
    out = {}
    for cid, camp in campaigns.items():
        total, legacy, unverifiable = counts.get(cid, (0, 0, 0))
        lost = total - legacy - unverifiable
        if camp.resumed_at is None:
            lost_since, unverifiable_since = lost, unverifiable
        else:
            n, u = since.get(cid, (0, 0))
            lost_since, unverifiable_since = n - u, u
        out[cid] = Missing(lost, lost_since, legacy, unverifiable, unverifiable_since)
    return out


@dataclass(frozen=True)
class Finished:
    finished: int  # transitions to enviado or error in the window (after the last resume)
    errors: int

    @property
    def ratio(self) -> float:
        return self.errors / self.finished if self.finished else 0.0


def finished_in_window(
    conn: Connection, since: dt.datetime, until: dt.datetime
) -> dict[int, Finished]:
    """Finished sends per campaign not finalizado, from the history table.

    The window starts at `since` or at the campaign's `resumed_at`, whichever is
    later: sends finished before an operator resumed do not count again.
    """
    counts: dict[int, dict[str, int]] = {}
    params = {
        **by_value(Estado.ENVIADO, Estado.ERROR, CampaniaEstado.FINALIZADO),
        "since": since,
        "until": until,
    }
    for r in conn.query(watching.FINISHED_IN_WINDOW, params):
        counts.setdefault(int(r["campania_id"]), {})[r["estado_nuevo"]] = int(r["n"])
    errors = Estado.ERROR.value
    return {
        campania_id: Finished(sum(c.get(estado, 0) for estado in FINISHED), c.get(errors, 0))
        for campania_id, c in counts.items()
    }


@dataclass(frozen=True)
class ScheduleRow:
    id: int
    campania_id: int
    cliente_id: int
    estado: str
    paused_reason: str | None
    paused_at: dt.datetime | None
    paused_by: str | None


def _schedule(r: dict[str, Any]) -> ScheduleRow:
    return ScheduleRow(
        int(r["id"]),
        int(r["campania_id"]),
        int(r["cliente_id"]),
        r["estado"],
        r["paused_reason"],
        _as_datetime(r["paused_at"]),
        r["paused_by"],
    )


def schedules(conn: Connection, include_all: bool = False) -> list[ScheduleRow]:
    """Approved and paused schedules of campaigns not finalizado.

    With include_all: every schedule.
    """
    if include_all:
        return [_schedule(r) for r in conn.query(watching.SCHEDULES_ALL)]
    open_states = by_value(
        ProgramacionEstado.APROBADA, ProgramacionEstado.PAUSADA, CampaniaEstado.FINALIZADO
    )
    return [_schedule(r) for r in conn.query(watching.SCHEDULES, open_states)]


def campaign_names(conn: Connection) -> dict[int, tuple[str, str]]:
    """id -> (nombre, estado), for the terminal only (never a label)."""
    return {
        int(r["id"]): (r["nombre"] or "", r["estado"] or CampaniaEstado.PENDIENTE.value)
        for r in conn.query(operating.CAMPAIGN_NAMES)
    }


def schema_ready(conn: Connection) -> bool:
    """True when `envios db upgrade` has applied the versions the watcher reads."""
    return ready_for(Process.WATCHER, conn)


# -- pause / resume (monitor.campaigns) ------------------------------------------


def resumed_at(conn: Connection, campania_id: int) -> dt.datetime | None:
    return _as_datetime(conn.scalar(watching.CAMPAIGN_RESUMED_AT, {"campania_id": campania_id}))


# -- delivery acknowledgements and unknowns settled (schema v5) ----------------------------

DELIVERY_STATUSES = ("delivered", "read", "failed")


@dataclass(frozen=True)
class Delivery:
    sent: int  # enviado rows: the denominator
    delivered: int  # delivered or read (a read message was delivered)
    read: int
    failed: int

    def ratio(self, status: str) -> float:
        return getattr(self, status) / self.sent if self.sent else 0.0


def delivery(conn: Connection, campania_ids: Sequence[int]) -> dict[int, Delivery]:
    """Per campaign: enviado rows, and how many the gateway acknowledged.

    Acknowledged as delivered, read or failed.
    """
    counts: dict[int, dict[str | None, int]] = {}
    for chunk in _chunks(list(campania_ids)):
        statement, params = watching.DELIVERY.with_lists(ids=chunk)
        for r in conn.query(statement, {**params, **by_value(Estado.ENVIADO)}):
            counts.setdefault(int(r["campania_id"]), {})[r["delivery_status"]] = int(r["n"])
    out = {}
    for cid in campania_ids:
        c = counts.get(cid, {})
        out[cid] = Delivery(
            sum(c.values()),
            c.get("delivered", 0) + c.get("read", 0),
            c.get("read", 0),
            c.get("failed", 0),
        )
    return out


def settled_unknowns(conn: Connection, campania_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per campaign: rows that left enviando by evidence or by a person.

    By evidence: automatically; by a person: reconcile, or the application's manual change.
    """
    out = {cid: {"evidence": 0, "person": 0} for cid in campania_ids}
    origins = list(SETTLED_BY)
    for chunk in _chunks(list(campania_ids)):
        statement, params = watching.SETTLED.with_lists(ids=chunk, origins=origins)
        for r in conn.query(statement, {**params, **by_value(Estado.ENVIANDO)}):
            out[int(r["campania_id"])][SETTLED_BY[r["origen"]]] += int(r["n"])
    return out
