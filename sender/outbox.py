"""Every SQL statement the sender runs, named, with the dialect differences kept here.

The loop (`sender.loop`, `sender.session_worker`) and `envios reconcile` call
these functions and contain no SQL. All values are parameters (`%s` on both
backends, see `sender.db`); "now" and "today" always come from Python
(`sender.clock`), never the database server's clock functions; stored times are on the
database's clock (`Clock.db_now`), days and windows on the configured zone's. State changes of a row are not here:
they go through `sender.states.transition`, the only writer of `estado`.

Dialect differences:

- insert-if-missing: MySQL `INSERT IGNORE`, SQLite `INSERT OR IGNORE`;
- the daily-count row is locked with `SELECT ... FOR UPDATE` on MySQL; SQLite
  needs nothing (`BEGIN IMMEDIATE` already serialises writers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from envios.domain import NAME_MAX, TEXT_MAX
from envios.store import fit
from envios.store.connector import MYSQL, Connection, placeholders

# -- dialect pieces ------------------------------------------------------------------

_INSERT_IGNORE = {MYSQL: "INSERT IGNORE", "sqlite": "INSERT OR IGNORE"}
_FOR_UPDATE = {MYSQL: " FOR UPDATE", "sqlite": ""}


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min)
    return start, start + dt.timedelta(days=1)


# -- schedules -------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "p.id AS programacion_id, p.campania_id, p.cliente_id, p.dias_semana, p.hora_inicio, p.hora_fin,"
    " p.cupo_diario, p.fecha_inicio, p.fecha_fin, p.estado AS programacion_estado,"
    " p.delay_min_s, p.delay_max_s, p.locked_at, p.locked_by, c.estado AS campania_estado"
)

# Approved schedules of campaigns in progress whose date range contains `today`.
# The weekly window (days, hours) is checked in Python: `sender.eligibility`.
ACTIVE_SCHEDULES = (
    f"SELECT {SCHEDULE_COLUMNS}"  # noqa: S608 - safe: a fixed column list
    " FROM ll_programaciones p JOIN ll_campanias_whatsapp c ON c.id = p.campania_id"
    " WHERE p.estado = 'aprobada' AND c.estado = 'en_progreso'"
    " AND p.fecha_inicio <= %s AND (p.fecha_fin IS NULL OR p.fecha_fin >= %s)"
)


def active_schedules(conn: Connection, today: dt.date, cliente_id: int | None = None) -> list[dict]:
    sql, params = ACTIVE_SCHEDULES, [today, today]
    if cliente_id is not None:
        sql += " AND p.cliente_id = %s"
        params.append(cliente_id)
    return conn.query(sql + " ORDER BY p.cliente_id, p.id", params)


# One schedule and its campaign as they are now (re-read inside every claim).
SCHEDULE_NOW = (
    f"SELECT {SCHEDULE_COLUMNS}"  # noqa: S608 - safe: a fixed column list
    " FROM ll_programaciones p JOIN ll_campanias_whatsapp c ON c.id = p.campania_id WHERE p.id = %s"
)


def schedule_now(conn: Connection, programacion_id: int) -> dict | None:
    return conn.query_one(SCHEDULE_NOW, (programacion_id,))


# -- pending work and quota --------------------------------------------------------------

_READY_ROWS = "estado = 'pendiente' AND (next_attempt_at IS NULL OR next_attempt_at <= %s)"


def pending_by_campaign(conn: Connection, campania_ids: Iterable[int], now: dt.datetime) -> dict[int, int]:
    """Rows ready to be claimed now (pendiente, not waiting for a retry), per campaign."""
    ids = sorted(set(campania_ids))
    if not ids:
        return {}
    # safe: only %s placeholders are interpolated; the ids are parameters.
    sql = (f"SELECT campania_id, COUNT(*) AS n FROM ll_envios_whatsapp WHERE {_READY_ROWS}"  # noqa: S608
           f" AND campania_id IN ({placeholders(len(ids))}) GROUP BY campania_id")
    return {int(r["campania_id"]): int(r["n"]) for r in conn.query(sql, [now, *ids])}


def sent_today(conn: Connection, programacion_ids: Iterable[int], day: dt.date) -> dict[int, int]:
    ids = sorted(set(programacion_ids))
    if not ids:
        return {}
    # safe: only %s placeholders are interpolated.
    sql = (f"SELECT programacion_id, enviados FROM ll_programacion_envios_diarios"  # noqa: S608
           f" WHERE fecha = %s AND programacion_id IN ({placeholders(len(ids))})")
    return {int(r["programacion_id"]): int(r["enviados"]) for r in conn.query(sql, [day, *ids])}


def in_flight_today(conn: Connection, programacion_ids: Iterable[int], day: dt.date,
                    shift: dt.timedelta = dt.timedelta(0)) -> dict[int, int]:
    """Rows in `enviando` claimed today under each schedule: they count against its quota.

    `day` is the configured zone's; `shift` (database clock minus configured zone's,
    now) moves its bounds onto the database clock `claimed_at` is written in.
    """
    ids = sorted(set(programacion_ids))
    if not ids:
        return {}
    start, end = (bound + shift for bound in day_bounds(day))
    # safe: only %s placeholders are interpolated.
    sql = (f"SELECT claim_programacion_id AS pid, COUNT(*) AS n FROM ll_envios_whatsapp"  # noqa: S608
           f" WHERE claim_programacion_id IN ({placeholders(len(ids))}) AND estado = 'enviando'"
           " AND claimed_at >= %s AND claimed_at < %s GROUP BY claim_programacion_id")
    return {int(r["pid"]): int(r["n"]) for r in conn.query(sql, [*ids, start, end])}


ENSURE_DAILY = "{insert} INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados) VALUES (%s, %s, 0)"
LOCK_DAILY = "SELECT enviados FROM ll_programacion_envios_diarios WHERE programacion_id = %s AND fecha = %s{lock}"


def lock_daily_count(conn: Connection, programacion_id: int, day: dt.date) -> int:
    """Create the schedule's row for `day` if missing and lock it; returns `enviados`.

    Inside a transaction this serialises every claim and every count of one
    schedule's day, on any number of sender processes.
    """
    conn.execute(ENSURE_DAILY.format(insert=_INSERT_IGNORE[conn.dialect]), (programacion_id, day))
    return int(conn.scalar(LOCK_DAILY.format(lock=_FOR_UPDATE[conn.dialect]), (programacion_id, day)) or 0)


COUNT_SENT = (
    "UPDATE ll_programacion_envios_diarios SET enviados = enviados + 1, actualizado_en = %s"
    " WHERE programacion_id = %s AND fecha = %s"
)


def count_sent(conn: Connection, programacion_id: int, day: dt.date, now: dt.datetime) -> None:
    """One more send on `day` (call after lock_daily_count, in the transaction that writes enviado)."""
    conn.execute(COUNT_SENT, (now, programacion_id, day))


# -- rows ----------------------------------------------------------------------------------

ROW_COLUMNS = (
    "id, campania_id, telefono_wapp, nombre_destino, mensaje_final, estado, attempts, message_id,"
    " claimed_at, claimed_by, claim_programacion_id, next_attempt_at, last_error, fecha_envio"
)

NEXT_PENDING = (
    f"SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp"  # noqa: S608 - safe: fixed column list
    f" WHERE campania_id = %s AND {_READY_ROWS}"
)


def next_pending(conn: Connection, campania_id: int, now: dt.datetime, skip: Sequence[int] = ()) -> dict | None:
    """The oldest row of the campaign ready to be claimed (not among `skip`)."""
    sql, params = NEXT_PENDING, [campania_id, now]
    if skip:
        sql += f" AND id NOT IN ({placeholders(len(skip))})"
        params.extend(skip)
    return conn.query_one(sql + " ORDER BY id LIMIT 1", params)


GET_ROW = f"SELECT {ROW_COLUMNS} FROM ll_envios_whatsapp WHERE id = %s"  # noqa: S608 - safe: fixed columns


def get_row(conn: Connection, envio_id: int) -> dict | None:
    return conn.query_one(GET_ROW, (envio_id,))


NOTE_UNKNOWN = "UPDATE ll_envios_whatsapp SET last_error = %s WHERE id = %s AND estado = 'enviando'"


def note_on_stuck_row(conn: Connection, envio_id: int, text: str) -> None:
    """Why a row stays `enviando` (an unknown outcome): for `envios reconcile list`."""
    fitted = fit.fit_to(conn, fit.OUTBOX, "last_error", text[:TEXT_MAX])
    conn.execute(NOTE_UNKNOWN, (fitted, envio_id))


SET_MISSING_MESSAGE_ID = (
    "UPDATE ll_envios_whatsapp SET message_id = %s"
    " WHERE id = %s AND estado = 'enviado' AND message_id IS NULL"
)
AUDIT_INSERT = (
    "INSERT INTO envios_audit (creado_en, accion, campania_id, programacion_id, motivo, detalle, origen)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
)


def set_missing_message_id(conn: Connection, envio_id: int, message_id: str) -> bool:
    """Record the id of a row sent without one; False if it is not such a row any more.

    Not a state change (the row stays enviado), so it is audited in envios_audit.
    """
    return conn.execute(SET_MISSING_MESSAGE_ID, (message_id, envio_id)) == 1


def audit(conn: Connection, now: dt.datetime, action: str, *, campania_id: int | None, reason: str,
          detail: str, origin: str, programacion_id: int | None = None) -> None:
    conn.execute(AUDIT_INSERT, (now, action, campania_id, programacion_id, reason,
                                detail[:TEXT_MAX], origin[:NAME_MAX]))


STUCK_ROWS = (
    "SELECT e.id, e.campania_id, e.telefono_wapp, e.estado, e.claimed_at, e.claimed_by,"
    " e.claim_programacion_id, e.attempts, e.last_error, e.message_id, e.fecha_envio"
    " FROM ll_envios_whatsapp e WHERE e.estado = 'enviando' AND (e.claimed_at IS NULL OR e.claimed_at < %s)"
    " ORDER BY e.claimed_at, e.id"
)
SENT_WITHOUT_ID = (
    "SELECT e.id, e.campania_id, e.telefono_wapp, e.estado, e.claimed_at, e.claimed_by,"
    " e.claim_programacion_id, e.attempts, e.last_error, e.message_id, e.fecha_envio"
    " FROM ll_envios_whatsapp e WHERE e.estado = 'enviado' AND e.message_id IS NULL"
    " AND e.claimed_at IS NOT NULL ORDER BY e.fecha_envio, e.id"
)


def stuck_rows(conn: Connection, claimed_before: dt.datetime) -> list[dict]:
    """`enviando` rows whose claim is older than `claimed_before`: unknown outcomes."""
    return conn.query(STUCK_ROWS, (claimed_before,))


def sent_without_message_id(conn: Connection) -> list[dict]:
    """Rows this system marked enviado without a message id (legacy rows, never claimed, excluded)."""
    return conn.query(SENT_WITHOUT_ID)


# -- session leases ---------------------------------------------------------------------------
#
# One row per WhatsApp session being worked, keyed by its cliente_id. A gateway with ONE
# session for every client (`gateway.sessions: single`, the venom build's "admin" session)
# has one lease for all of them, under this reserved key (no client has id 0).
SINGLE_SESSION_LEASE = 0

LEASE_INSERT = (
    "{insert} INTO envios_session_leases (cliente_id, owner, acquired_at, expires_at) VALUES (%s, %s, %s, %s)"
)
LEASE_TAKE = (
    "UPDATE envios_session_leases SET owner = %s, acquired_at = %s, expires_at = %s"
    " WHERE cliente_id = %s AND owner <> %s AND expires_at < %s"
)
LEASE_EXTEND = "UPDATE envios_session_leases SET expires_at = %s WHERE cliente_id = %s AND owner = %s"
LEASE_OWNER = "SELECT owner, acquired_at, expires_at FROM envios_session_leases WHERE cliente_id = %s"
LEASE_RELEASE = "DELETE FROM envios_session_leases WHERE cliente_id = %s AND owner = %s"
LEASES_ALL = "SELECT cliente_id, owner, acquired_at, expires_at FROM envios_session_leases ORDER BY cliente_id"


def lease_acquire(conn: Connection, cliente_id: int, owner: str, now: dt.datetime, expires: dt.datetime) -> bool:
    """Take the session's lease when free or expired, or extend it when already ours.

    Call inside a transaction. The final SELECT decides (MySQL reports changed,
    not matched, rows, so an UPDATE count cannot).
    """
    conn.execute(LEASE_INSERT.format(insert=_INSERT_IGNORE[conn.dialect]), (cliente_id, owner, now, expires))
    conn.execute(LEASE_TAKE, (owner, now, expires, cliente_id, owner, now))
    conn.execute(LEASE_EXTEND, (expires, cliente_id, owner))
    return lease_owner(conn, cliente_id) == owner


def lease_renew(conn: Connection, cliente_id: int, owner: str, now: dt.datetime, expires: dt.datetime) -> bool:
    """Extend a lease we hold (even if it just expired, as long as nobody took it)."""
    conn.execute(LEASE_EXTEND, (expires, cliente_id, owner))
    return lease_owner(conn, cliente_id) == owner


def lease_owner(conn: Connection, cliente_id: int) -> str | None:
    row = conn.query_one(LEASE_OWNER, (cliente_id,))
    return None if row is None else row["owner"]


def lease_holds(conn: Connection, cliente_id: int, owner: str, now: dt.datetime) -> bool:
    """The lease is ours and not expired (checked inside every claim)."""
    row = conn.query_one(LEASE_OWNER, (cliente_id,))
    return row is not None and row["owner"] == owner and row["expires_at"] >= now


def lease_release(conn: Connection, cliente_id: int, owner: str) -> None:
    conn.execute(LEASE_RELEASE, (cliente_id, owner))


def leases(conn: Connection) -> list[dict]:
    return conn.query(LEASES_ALL)
