"""The sender's statements: schedules, claims, records, daily counts and session leases.

Run by `envios.sender.outbox` (the API the engine and `envios reconcile` call). Every
value is a parameter: "now" and days come from Python (`envios.clock`); send states and
schedule/campaign states are parameters named by their value (`%(enviando)s`, see
`envios.store.sql.by_value`); `{ids}` / `{skip}` are IN lists (`Statement.with_lists`).
State changes of a row are not here: `envios.store.transitions.transition` is the only
writer of `estado`.

Dialect differences, side by side in the statements:

- insert-if-missing: MySQL `INSERT IGNORE`, SQLite `INSERT OR IGNORE`;
- the daily-count row is locked with `SELECT ... FOR UPDATE` on MySQL; SQLite
  needs nothing (`BEGIN IMMEDIATE` already serialises writers).
"""

from __future__ import annotations

from envios.store.sql import Statement

# -- schedules -------------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "p.id AS programacion_id, p.campania_id, p.cliente_id, p.dias_semana, p.hora_inicio,"
    " p.hora_fin, p.cupo_diario, p.fecha_inicio, p.fecha_fin, p.estado AS programacion_estado,"
    " p.delay_min_s, p.delay_max_s, p.locked_at, p.locked_by, c.estado AS campania_estado"
)
_SCHEDULES = (
    "SELECT "  # noqa: S608 - fixed fragments
    + SCHEDULE_COLUMNS
    + " FROM ll_programaciones p JOIN ll_campanias_whatsapp c ON c.id = p.campania_id"
)

# Approved schedules of campaigns in progress whose date range holds a day their window
# can have opened on (`envios.domain.opening_days`: yesterday for the small hours of an
# overnight window, or today). The exact window is the domain's `schedule_window`.
_ACTIVE = (
    _SCHEDULES + " WHERE p.estado = %(aprobada)s AND c.estado = %(en_progreso)s"
    " AND p.fecha_inicio <= %(latest_opening)s"
    " AND (p.fecha_fin IS NULL OR p.fecha_fin >= %(earliest_opening)s)"
)
ACTIVE_SCHEDULES = Statement(
    "sending.active_schedules",
    _ACTIVE + " ORDER BY p.cliente_id, p.id",
)
ACTIVE_SCHEDULES_OF_CLIENT = Statement(
    "sending.active_schedules_of_client",
    _ACTIVE + " AND p.cliente_id = %(cliente_id)s ORDER BY p.cliente_id, p.id",
)


# -- pending work and the daily quota ------------------------------------------------------

# Ready to be claimed: pendiente and not waiting for a retry.
_READY_ROWS = "estado = %(pendiente)s AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s)"

PENDING_BY_CAMPAIGN = Statement(
    "sending.pending_by_campaign",
    "SELECT campania_id, COUNT(*) AS n FROM ll_envios_whatsapp"  # noqa: S608 - fixed fragments
    " WHERE " + _READY_ROWS + " AND campania_id IN ({ids}) GROUP BY campania_id",
)

SENT_ON_DAY = Statement(
    "sending.sent_on_day",
    "SELECT programacion_id, enviados FROM ll_programacion_envios_diarios"
    " WHERE fecha = %(day)s AND programacion_id IN ({ids})",
)

# Rows in `enviando` claimed within [start, end) under each schedule: they use its quota.
IN_FLIGHT = Statement(
    "sending.in_flight",
    "SELECT claim_programacion_id AS pid, COUNT(*) AS n FROM ll_envios_whatsapp"
    " WHERE claim_programacion_id IN ({ids}) AND estado = %(enviando)s"
    " AND claimed_at >= %(start)s AND claimed_at < %(end)s GROUP BY claim_programacion_id",
)

_DAILY_ROW = (
    " INTO ll_programacion_envios_diarios (programacion_id, fecha, enviados)"
    " VALUES (%(programacion_id)s, %(day)s, 0)"
)
ENSURE_DAILY = Statement(
    "sending.ensure_daily",
    mysql="INSERT IGNORE" + _DAILY_ROW,
    sqlite="INSERT OR IGNORE" + _DAILY_ROW,
)

_LOCK_DAILY = (
    "SELECT enviados FROM ll_programacion_envios_diarios"
    " WHERE programacion_id = %(programacion_id)s AND fecha = %(day)s"
)
LOCK_DAILY = Statement(
    "sending.lock_daily",
    mysql=_LOCK_DAILY + " FOR UPDATE",
    sqlite=_LOCK_DAILY,
)

COUNT_SENT = Statement(
    "sending.count_sent",
    "UPDATE ll_programacion_envios_diarios SET enviados = enviados + 1, actualizado_en = %(now)s"
    " WHERE programacion_id = %(programacion_id)s AND fecha = %(day)s",
)

# -- rows ----------------------------------------------------------------------------------------

ROW_COLUMNS = (
    "id, campania_id, telefono_wapp, nombre_destino, mensaje_final, estado, attempts, message_id,"
    " claimed_at, claimed_by, claim_programacion_id, next_attempt_at, last_error, fecha_envio"
)

GET_ROW = Statement(
    "sending.get_row",
    "SELECT "  # noqa: S608 - fixed fragments
    + ROW_COLUMNS
    + " FROM ll_envios_whatsapp WHERE id = %(envio_id)s",
)

# Why a row stays `enviando` (an unknown outcome): for `envios reconcile list`.
NOTE_UNKNOWN = Statement(
    "sending.note_unknown",
    "UPDATE ll_envios_whatsapp SET last_error = %(note)s"
    " WHERE id = %(envio_id)s AND estado = %(enviando)s",
)

SET_MISSING_MESSAGE_ID = Statement(
    "sending.set_missing_message_id",
    "UPDATE ll_envios_whatsapp SET message_id = %(message_id)s"
    " WHERE id = %(envio_id)s AND estado = %(enviado)s AND message_id IS NULL",
)

_DOUBTFUL_COLUMNS = (
    "SELECT e.id, e.campania_id, e.telefono_wapp, e.estado, e.claimed_at, e.claimed_by,"
    " e.claim_programacion_id, e.attempts, e.last_error, e.message_id, e.fecha_envio"
    " FROM ll_envios_whatsapp e"
)
# `enviando` rows claimed before the cutoff, or never given a claim time: unknown outcomes.
STUCK_ROWS = Statement(
    "sending.stuck_rows",
    _DOUBTFUL_COLUMNS + " WHERE e.estado = %(enviando)s"
    " AND (e.claimed_at IS NULL OR e.claimed_at < %(claimed_before)s)"
    " ORDER BY e.claimed_at, e.id",
)
# Rows this system marked enviado without a message id (legacy rows, never claimed, excluded).
SENT_WITHOUT_ID = Statement(
    "sending.sent_without_id",
    _DOUBTFUL_COLUMNS + " WHERE e.estado = %(enviado)s AND e.message_id IS NULL"
    " AND e.claimed_at IS NOT NULL ORDER BY e.fecha_envio, e.id",
)

# -- session leases --------------------------------------------------------------------------------
#
# One row per WhatsApp session being worked, keyed by its cliente_id (or the single-session
# key, `envios.sender.outbox.SINGLE_SESSION_LEASE`).

_LEASE_ROW = (
    " INTO envios_session_leases (cliente_id, owner, acquired_at, expires_at)"
    " VALUES (%(cliente_id)s, %(owner)s, %(now)s, %(expires)s)"
)
LEASE_INSERT = Statement(
    "sending.lease_insert",
    mysql="INSERT IGNORE" + _LEASE_ROW,
    sqlite="INSERT OR IGNORE" + _LEASE_ROW,
)
# Someone else's lease that has expired becomes ours.
LEASE_TAKE = Statement(
    "sending.lease_take",
    "UPDATE envios_session_leases SET owner = %(owner)s, acquired_at = %(now)s,"
    " expires_at = %(expires)s"
    " WHERE cliente_id = %(cliente_id)s AND owner <> %(owner)s AND expires_at < %(now)s",
)
LEASE_EXTEND = Statement(
    "sending.lease_extend",
    "UPDATE envios_session_leases SET expires_at = %(expires)s"
    " WHERE cliente_id = %(cliente_id)s AND owner = %(owner)s",
)
LEASE_OWNER = Statement(
    "sending.lease_owner",
    "SELECT owner, acquired_at, expires_at FROM envios_session_leases"
    " WHERE cliente_id = %(cliente_id)s",
)
LEASE_RELEASE = Statement(
    "sending.lease_release",
    "DELETE FROM envios_session_leases WHERE cliente_id = %(cliente_id)s AND owner = %(owner)s",
)
LEASES_ALL = Statement(
    "sending.leases_all",
    "SELECT cliente_id, owner, acquired_at, expires_at FROM envios_session_leases"
    " ORDER BY cliente_id",
)
