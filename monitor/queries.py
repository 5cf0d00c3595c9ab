"""Every SQL statement the watcher (and `envios campaign` / `envios status`) runs, by name.

The same text runs on MariaDB/MySQL and on SQLite (`%s` placeholders; the
connector adapts them). Datetimes go in as parameters computed by the clock,
never the server's clock. The one dialect difference that leaks through the connector (an
aggregate over a DATETIME column comes back as text from SQLite) is undone in
`_as_datetime` here.

Each read is written for an index of the upgraded schema, so a refresh never
scans all of `ll_envios_whatsapp` (the bench prints the plans on 1M rows):

| query               | table / index                                                        |
|---------------------|----------------------------------------------------------------------|
| campaigns           | ll_campanias_whatsapp (a few hundred rows)                          |
| messages            | ll_envios_whatsapp (campania_id, estado): covering, only campaigns not finalizado |
| stuck               | ll_envios_whatsapp (estado, claimed_at): range over enviando claims  |
| missing_message_id  | ll_envios_whatsapp (estado, message_id, campania_id, claimed_at) (schema v3): range over enviado + NULL id, campaigns not finalizado; reads `last_error` of those rows (the unverifiable note) |
| error_ratio         | ll_envios_whatsapp_historial (campania_id, created_at, estado_nuevo): covering range over the window; only envios's rows carry campania_id |
| schedules           | ll_programaciones (estado)                                           |
| delivery            | ll_envios_whatsapp (campania_id, estado, delivery_status) (schema v5): covering |
| settled             | ll_envios_whatsapp_historial (campania_id, estado_anterior, origen) (schema v5): covering |
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from envios.sender.gateways.base import NO_ID_FROM_GATEWAY

from envios.domain import ESTADOS, FINISHED, SETTLED_BY, CampaniaEstado, Estado
from envios.store.connector import Connection, placeholders
from envios.store.schema import Process, ready_for

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
        yield ids[start:start + IN_CHUNK]


# -- reads of one refresh ------------------------------------------------------

@dataclass(frozen=True)
class CampaignRow:
    id: int
    estado: str
    resumed_at: dt.datetime | None


SQL_CAMPAIGNS_ACTIVE = (
    "SELECT c.id, c.estado, c.resumed_at FROM ll_campanias_whatsapp c"
    " WHERE (c.estado IS NULL OR c.estado <> 'finalizado')"
)
SQL_CAMPAIGNS_ALL = "SELECT c.id, c.estado, c.resumed_at FROM ll_campanias_whatsapp c"


def campaigns(conn: Connection, include_finished: bool = False) -> dict[int, CampaignRow]:
    """Campaigns whose series the watcher exports (all of them with include_finished)."""
    rows = conn.query(SQL_CAMPAIGNS_ALL if include_finished else SQL_CAMPAIGNS_ACTIVE)
    return {
        int(r["id"]): CampaignRow(int(r["id"]), r["estado"] or CampaniaEstado.PENDIENTE.value,
                                  _as_datetime(r["resumed_at"]))
        for r in rows
    }


SQL_MESSAGES = (
    "SELECT campania_id, estado, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE campania_id IN ({ids}) GROUP BY campania_id, estado"
)


def messages(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Rows per state of the given campaigns; every state present (0 when none)."""
    out = {cid: dict.fromkeys(ESTADOS, 0) for cid in campaign_ids}
    for chunk in _chunks(campaign_ids):
        # safe: only "%s" placeholders are interpolated; the ids are parameters.
        sql = SQL_MESSAGES.format(ids=placeholders(len(chunk)))  # noqa: S608
        for r in conn.query(sql, chunk):
            if r["estado"] in ESTADOS:
                out[int(r["campania_id"])][r["estado"]] = int(r["n"])
    return out


SQL_STUCK = (
    "SELECT campania_id, COUNT(*) AS n, MIN(claimed_at) AS oldest FROM ll_envios_whatsapp"
    " WHERE estado = 'enviando' AND (claimed_at < %s OR claimed_at IS NULL)"
    " GROUP BY campania_id"
)


@dataclass(frozen=True)
class Stuck:
    count: int
    oldest_claim: dt.datetime | None  # None when only rows without a claim time are stuck


def stuck(conn: Connection, claimed_before: dt.datetime) -> dict[int, Stuck]:
    """Rows in `enviando` claimed before the cutoff (or with no claim time at all), per campaign."""
    return {
        int(r["campania_id"]): Stuck(int(r["n"]), _as_datetime(r["oldest"]))
        for r in conn.query(SQL_STUCK, (claimed_before,))
    }


# The note the sender leaves on a row the gateway confirmed with a placeholder instead of
# an id (sender.gateways.base.NO_ID_FROM_GATEWAY): unverifiable by design, not an id lost.
UNVERIFIABLE_NOTE = NO_ID_FROM_GATEWAY

# On (estado, message_id, campania_id, claimed_at) (schema v3): legacy sends (claimed_at
# NULL) are told apart by the index; the unverifiable ones by their note (a row read each).
SQL_MISSING_MESSAGE_ID = (
    "SELECT campania_id, COUNT(*) AS n, SUM(CASE WHEN claimed_at IS NULL THEN 1 ELSE 0 END) AS legacy,"
    " SUM(CASE WHEN claimed_at IS NOT NULL AND last_error = %s THEN 1 ELSE 0 END) AS unverifiable"
    " FROM ll_envios_whatsapp"
    " WHERE estado = 'enviado' AND message_id IS NULL AND campania_id IN ({ids})"
    " GROUP BY campania_id"
)
# Only for campaigns that were resumed; reads the rows envios sent without an id.
SQL_MISSING_SINCE_RESUME = (
    "SELECT e.campania_id, COUNT(*) AS n,"
    " SUM(CASE WHEN e.last_error = %s THEN 1 ELSE 0 END) AS unverifiable"
    " FROM ll_envios_whatsapp e JOIN ll_campanias_whatsapp c ON c.id = e.campania_id"
    " WHERE e.estado = 'enviado' AND e.message_id IS NULL AND e.claimed_at IS NOT NULL"
    " AND e.campania_id IN ({ids})"
    " AND COALESCE(e.fecha_envio, e.claimed_at) > c.resumed_at"
    " GROUP BY e.campania_id"
)


@dataclass(frozen=True)
class Missing:
    missing: int  # marked enviado by envios (claimed) without a message id: the id was lost
    since_resume: int  # of those, finished after the campaign's last resume (all when never resumed)
    legacy: int  # sent before the upgrade (never claimed): no id by construction
    unverifiable: int = 0  # confirmed with a placeholder: the gateway never gives ids
    unverifiable_since_resume: int = 0


def without_message_id(conn: Connection, campaign_ids: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    """Per campaign: (enviado without a message id, of them legacy, of them unverifiable), counted."""
    counts: dict[int, tuple[int, int, int]] = {}
    for chunk in _chunks(list(campaign_ids)):
        # safe: only "%s" placeholders are interpolated; the ids are parameters.
        sql = SQL_MISSING_MESSAGE_ID.format(ids=placeholders(len(chunk)))  # noqa: S608
        for r in conn.query(sql, [UNVERIFIABLE_NOTE, *chunk]):
            counts[int(r["campania_id"])] = (int(r["n"]), int(r["legacy"] or 0), int(r["unverifiable"] or 0))
    return counts


def missing_message_ids(conn: Connection, campaigns: dict[int, CampaignRow],
                        counts: dict[int, tuple[int, int, int]] | None = None) -> dict[int, Missing]:
    """`counts`: without_message_id's answer when already known (the watcher's monitor.counts)."""
    if counts is None:
        counts = without_message_id(conn, list(campaigns))
    resumed = [cid for cid, c in campaigns.items() if c.resumed_at is not None
               and counts.get(cid, (0, 0, 0))[0] > counts.get(cid, (0, 0, 0))[1]]
    since: dict[int, tuple[int, int]] = {}
    for chunk in _chunks(resumed):
        # safe: only "%s" placeholders are interpolated; the ids are parameters.
        sql = SQL_MISSING_SINCE_RESUME.format(ids=placeholders(len(chunk)))  # noqa: S608
        for r in conn.query(sql, [UNVERIFIABLE_NOTE, *chunk]):
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


SQL_FINISHED_IN_WINDOW = (
    "SELECT h.campania_id, h.estado_nuevo, COUNT(*) AS n"
    " FROM ll_campanias_whatsapp c"
    " JOIN ll_envios_whatsapp_historial h ON h.campania_id = c.id"
    " WHERE (c.estado IS NULL OR c.estado <> 'finalizado')"
    " AND h.created_at >= %s AND h.created_at <= %s"
    " AND h.estado_nuevo IN ('enviado', 'error')"
    " AND (c.resumed_at IS NULL OR h.created_at > c.resumed_at)"
    " GROUP BY h.campania_id, h.estado_nuevo"
)


@dataclass(frozen=True)
class Finished:
    finished: int  # transitions to enviado or error in the window (after the last resume)
    errors: int

    @property
    def ratio(self) -> float:
        return self.errors / self.finished if self.finished else 0.0


def finished_in_window(conn: Connection, since: dt.datetime, until: dt.datetime) -> dict[int, Finished]:
    """Finished sends per campaign not finalizado, from the history table.

    The window starts at `since` or at the campaign's `resumed_at`, whichever is
    later: sends finished before an operator resumed do not count again.
    """
    counts: dict[int, dict[str, int]] = {}
    for r in conn.query(SQL_FINISHED_IN_WINDOW, (since, until)):
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


SQL_SCHEDULES = (
    "SELECT p.id, p.campania_id, p.cliente_id, p.estado, p.paused_reason, p.paused_at, p.paused_by"
    " FROM ll_programaciones p JOIN ll_campanias_whatsapp c ON c.id = p.campania_id"
    " WHERE p.estado IN ('aprobada', 'pausada') AND (c.estado IS NULL OR c.estado <> 'finalizado')"
    " ORDER BY p.id"
)
SQL_SCHEDULES_ALL = (
    "SELECT p.id, p.campania_id, p.cliente_id, p.estado, p.paused_reason, p.paused_at, p.paused_by"
    " FROM ll_programaciones p ORDER BY p.id"
)


def _schedule(r: dict[str, Any]) -> ScheduleRow:
    return ScheduleRow(int(r["id"]), int(r["campania_id"]), int(r["cliente_id"]), r["estado"],
                       r["paused_reason"], _as_datetime(r["paused_at"]), r["paused_by"])


def schedules(conn: Connection, include_all: bool = False) -> list[ScheduleRow]:
    """Approved and paused schedules of campaigns not finalizado (every schedule with include_all)."""
    return [_schedule(r) for r in conn.query(SQL_SCHEDULES_ALL if include_all else SQL_SCHEDULES)]


SQL_CAMPAIGN_NAMES = "SELECT id, nombre, estado FROM ll_campanias_whatsapp ORDER BY id"


def campaign_names(conn: Connection) -> dict[int, tuple[str, str]]:
    """id -> (nombre, estado), for the terminal only (never a label)."""
    return {int(r["id"]): (r["nombre"] or "", r["estado"] or CampaniaEstado.PENDIENTE.value)
            for r in conn.query(SQL_CAMPAIGN_NAMES)}


def schema_ready(conn: Connection) -> bool:
    """True when `envios db upgrade` has applied the versions the watcher reads."""
    return ready_for(Process.WATCHER, conn)


# -- pause / resume (monitor.campaigns) ------------------------------------------

SQL_CAMPAIGN_EXISTS = "SELECT id FROM ll_campanias_whatsapp WHERE id = %s"
SQL_SCHEDULE_IDS_IN_STATE = (
    "SELECT id, paused_by FROM ll_programaciones WHERE campania_id = %s AND estado = %s ORDER BY id"
)
# Schedules the original scheduler has locked (locked_at set, locked_by not envios's): is it still running?
SQL_LEGACY_LOCKS = (
    "SELECT id AS programacion_id, campania_id, locked_at, locked_by FROM ll_programaciones"
    " WHERE estado = 'aprobada' AND locked_at IS NOT NULL ORDER BY id"
)
# Conditional: a second watcher (or an operator) that got there first leaves 0 rows to change.
SQL_PAUSE_SCHEDULE = (
    "UPDATE ll_programaciones SET estado = 'pausada', paused_reason = %s, paused_at = %s,"
    " paused_by = %s WHERE id = %s AND estado = 'aprobada'"
)
SQL_RESUME_SCHEDULE = (
    "UPDATE ll_programaciones SET estado = 'aprobada', paused_reason = NULL, paused_at = NULL,"
    " paused_by = NULL WHERE id = %s AND estado = 'pausada'"
)
SQL_CAMPAIGN_RESUMED_AT = "SELECT resumed_at FROM ll_campanias_whatsapp WHERE id = %s"


def resumed_at(conn: Connection, campania_id: int) -> dt.datetime | None:
    return _as_datetime(conn.scalar(SQL_CAMPAIGN_RESUMED_AT, (campania_id,)))


SQL_MARK_RESUMED = "UPDATE ll_campanias_whatsapp SET resumed_at = %s WHERE id = %s"
SQL_AUDIT = (
    "INSERT INTO envios_audit (creado_en, accion, campania_id, programacion_id, motivo, detalle, origen)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)
SQL_LAST_PAUSE_AUDIT = (
    "SELECT detalle, origen, creado_en FROM envios_audit"
    " WHERE campania_id = %s AND programacion_id = %s AND accion IN ('autopause', 'pause')"
    " ORDER BY creado_en DESC, id DESC LIMIT 1"
)
SQL_STUCK_OF_CAMPAIGN = (
    "SELECT COUNT(*) FROM ll_envios_whatsapp"
    " WHERE estado = 'enviando' AND (claimed_at < %s OR claimed_at IS NULL) AND campania_id = %s"
)


# -- delivery acknowledgements and unknowns settled (schema v5) ----------------------------

DELIVERY_STATUSES = ("delivered", "read", "failed")

SQL_DELIVERY = (
    "SELECT campania_id, delivery_status, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE campania_id IN ({ids}) AND estado = 'enviado' GROUP BY campania_id, delivery_status"
)


@dataclass(frozen=True)
class Delivery:
    sent: int  # enviado rows: the denominator
    delivered: int  # delivered or read (a read message was delivered)
    read: int
    failed: int

    def ratio(self, status: str) -> float:
        return getattr(self, status) / self.sent if self.sent else 0.0


def delivery(conn: Connection, campania_ids: Sequence[int]) -> dict[int, Delivery]:
    """Per campaign: enviado rows and how many the gateway acknowledged as delivered, read, failed."""
    counts: dict[int, dict[str | None, int]] = {}
    for chunk in _chunks(list(campania_ids)):
        sql = SQL_DELIVERY.format(ids=placeholders(len(chunk)))  # noqa: S608 - only placeholders
        for r in conn.query(sql, chunk):
            counts.setdefault(int(r["campania_id"]), {})[r["delivery_status"]] = int(r["n"])
    out = {}
    for cid in campania_ids:
        c = counts.get(cid, {})
        out[cid] = Delivery(sum(c.values()), c.get("delivered", 0) + c.get("read", 0), c.get("read", 0),
                            c.get("failed", 0))
    return out


SQL_SETTLED = (
    "SELECT campania_id, origen, COUNT(*) AS n FROM ll_envios_whatsapp_historial"
    " WHERE campania_id IN ({ids}) AND estado_anterior = 'enviando' AND origen IN ({origins})"
    " GROUP BY campania_id, origen"
)


def settled_unknowns(conn: Connection, campania_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per campaign: rows that left enviando by evidence (automatically) or by a person (reconcile, manual)."""
    out = {cid: {"evidence": 0, "person": 0} for cid in campania_ids}
    origins = list(SETTLED_BY)
    for chunk in _chunks(list(campania_ids)):
        sql = SQL_SETTLED.format(ids=placeholders(len(chunk)), origins=placeholders(len(origins)))  # noqa: S608
        for r in conn.query(sql, [*chunk, *origins]):
            out[int(r["campania_id"])][SETTLED_BY[r["origen"]]] += int(r["n"])
    return out
