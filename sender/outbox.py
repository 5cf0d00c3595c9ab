"""The sender's store API: claims, records, daily counts, leases (DESIGN.md section 4).

The engine (`sender.loop`, `sender.session_worker`) and `envios reconcile` call these
functions; the SQL they run is `envios.store.sending`'s named statements. "Now" and
"today" always come from Python (`envios.clock`), never the database server's clock
functions; stored times are on the database's clock (`Clock.db_now`), days and windows
on the configured zone's. State changes of a row are not here: they go through
`envios.store.transitions.transition`, the only writer of `estado`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from envios.domain import (
    TEXT_MAX,
    CampaniaEstado,
    Estado,
    ProgramacionEstado,
    SendingSchedule,
    opening_days,
)
from envios.store import fit, sending
from envios.store.connector import Connection
from envios.store.sql import by_value


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min)
    return start, start + dt.timedelta(days=1)


# -- schedules -------------------------------------------------------------------------


def active_schedules(
    conn: Connection, now: dt.datetime, cliente_id: int | None = None
) -> list[SendingSchedule]:
    """Approved schedules of campaigns in progress that may be open at `now` (configured zone).

    The date filter is bounded by the days a window open at `now` can have opened on
    (`envios.domain.opening_days`); the caller decides each with `schedule_window`.
    """
    earliest, latest = opening_days(now)
    params = {
        **by_value(ProgramacionEstado.APROBADA, CampaniaEstado.EN_PROGRESO),
        "earliest_opening": earliest,
        "latest_opening": latest,
    }
    if cliente_id is None:
        rows = conn.query(sending.ACTIVE_SCHEDULES, params)
    else:
        rows = conn.query(sending.ACTIVE_SCHEDULES_OF_CLIENT, {**params, "cliente_id": cliente_id})
    return [SendingSchedule.from_row(row) for row in rows]


# -- pending work and quota --------------------------------------------------------------


def pending_by_campaign(
    conn: Connection, campania_ids: Iterable[int], now: dt.datetime
) -> dict[int, int]:
    """Rows ready to be claimed now (pendiente, not waiting for a retry), per campaign."""
    ids = sorted(set(campania_ids))
    if not ids:
        return {}
    statement, lists = sending.PENDING_BY_CAMPAIGN.with_lists(ids=ids)
    params = {**lists, **by_value(Estado.PENDIENTE), "now": now}
    return {int(r["campania_id"]): int(r["n"]) for r in conn.query(statement, params)}


def sent_today(conn: Connection, programacion_ids: Iterable[int], day: dt.date) -> dict[int, int]:
    ids = sorted(set(programacion_ids))
    if not ids:
        return {}
    statement, lists = sending.SENT_ON_DAY.with_lists(ids=ids)
    rows = conn.query(statement, {**lists, "day": day})
    return {int(r["programacion_id"]): int(r["enviados"]) for r in rows}


def in_flight_today(
    conn: Connection,
    programacion_ids: Iterable[int],
    day: dt.date,
    shift: dt.timedelta = dt.timedelta(0),
) -> dict[int, int]:
    """Rows in `enviando` claimed today under each schedule: they count against its quota.

    `day` is the configured zone's; `shift` (database clock minus configured zone's,
    now) moves its bounds onto the database clock `claimed_at` is written in.
    """
    ids = sorted(set(programacion_ids))
    if not ids:
        return {}
    start, end = (bound + shift for bound in day_bounds(day))
    statement, lists = sending.IN_FLIGHT.with_lists(ids=ids)
    params = {**lists, **by_value(Estado.ENVIANDO), "start": start, "end": end}
    return {int(r["pid"]): int(r["n"]) for r in conn.query(statement, params)}


def lock_daily_count(conn: Connection, programacion_id: int, day: dt.date) -> int:
    """Create the schedule's row for `day` if missing and lock it; returns `enviados`.

    Inside a transaction this serialises every claim and every count of one
    schedule's day, on any number of sender processes.
    """
    params = {"programacion_id": programacion_id, "day": day}
    conn.execute(sending.ENSURE_DAILY, params)
    return int(conn.scalar(sending.LOCK_DAILY, params) or 0)


def count_sent(conn: Connection, programacion_id: int, day: dt.date, now: dt.datetime) -> None:
    """One more send on `day`.

    Call after lock_daily_count, in the transaction that writes enviado.
    """
    conn.execute(sending.COUNT_SENT, {"programacion_id": programacion_id, "day": day, "now": now})


# -- rows ----------------------------------------------------------------------------------


def get_row(conn: Connection, envio_id: int) -> dict | None:
    return conn.query_one(sending.GET_ROW, {"envio_id": envio_id})


def note_on_stuck_row(conn: Connection, envio_id: int, text: str) -> None:
    """Why a row stays `enviando` (an unknown outcome): for `envios reconcile list`."""
    note = fit.fit_to(conn, fit.OUTBOX, "last_error", text[:TEXT_MAX])
    conn.execute(
        sending.NOTE_UNKNOWN, {**by_value(Estado.ENVIANDO), "note": note, "envio_id": envio_id}
    )


def set_missing_message_id(conn: Connection, envio_id: int, message_id: str) -> bool:
    """Record the id of a row sent without one; False if it is not such a row any more.

    Not a state change (the row stays enviado), so it is audited in envios_audit.
    """
    params = {**by_value(Estado.ENVIADO), "message_id": message_id, "envio_id": envio_id}
    return conn.execute(sending.SET_MISSING_MESSAGE_ID, params) == 1


def stuck_rows(conn: Connection, claimed_before: dt.datetime) -> list[dict]:
    """`enviando` rows whose claim is older than `claimed_before`: unknown outcomes."""
    return conn.query(
        sending.STUCK_ROWS, {**by_value(Estado.ENVIANDO), "claimed_before": claimed_before}
    )


def sent_without_message_id(conn: Connection) -> list[dict]:
    """Rows this system marked enviado without a message id (never-claimed legacy rows excluded)."""
    return conn.query(sending.SENT_WITHOUT_ID, by_value(Estado.ENVIADO))


# -- session leases ---------------------------------------------------------------------------
#
# One row per WhatsApp session being worked, keyed by its cliente_id. A gateway with ONE
# session for every client (`gateway.sessions: single`, the venom build's "admin" session)
# has one lease for all of them, under this reserved key (no client has id 0).
SINGLE_SESSION_LEASE = 0


def lease_acquire(
    conn: Connection, cliente_id: int, owner: str, now: dt.datetime, expires: dt.datetime
) -> bool:
    """Take the session's lease when free or expired, or extend it when already ours.

    Call inside a transaction. The final SELECT decides (MySQL reports changed,
    not matched, rows, so an UPDATE count cannot).
    """
    params = {"cliente_id": cliente_id, "owner": owner, "now": now, "expires": expires}
    conn.execute(sending.LEASE_INSERT, params)
    conn.execute(sending.LEASE_TAKE, params)
    conn.execute(sending.LEASE_EXTEND, params)
    return lease_owner(conn, cliente_id) == owner


def lease_renew(
    conn: Connection, cliente_id: int, owner: str, now: dt.datetime, expires: dt.datetime
) -> bool:
    """Extend a lease we hold (even if it just expired, as long as nobody took it)."""
    conn.execute(
        sending.LEASE_EXTEND, {"cliente_id": cliente_id, "owner": owner, "expires": expires}
    )
    return lease_owner(conn, cliente_id) == owner


def lease_owner(conn: Connection, cliente_id: int) -> str | None:
    row = conn.query_one(sending.LEASE_OWNER, {"cliente_id": cliente_id})
    return None if row is None else row["owner"]


def lease_holds(conn: Connection, cliente_id: int, owner: str, now: dt.datetime) -> bool:
    """The lease is ours and not expired."""
    row = conn.query_one(sending.LEASE_OWNER, {"cliente_id": cliente_id})
    return lease_is_live(row, owner, now)


def lease_is_live(row: dict | None, owner: str, now: dt.datetime) -> bool:
    """A lease row (owner, expires_at) names `owner` and has not expired at `now` (checked
    inside every claim batch, on the lease rows it locked)."""
    return row is not None and row["owner"] == owner and row["expires_at"] >= now


def lease_release(conn: Connection, cliente_id: int, owner: str) -> None:
    conn.execute(sending.LEASE_RELEASE, {"cliente_id": cliente_id, "owner": owner})


def leases(conn: Connection) -> list[dict]:
    return conn.query(sending.LEASES_ALL)
